//! Raw JSON bodies through the AWS SDK: a response body kept as AWS sent it, a request body sent
//! as berth wrote it. The SDK still signs, retries and finds the endpoint; berth reads and writes
//! whole documents, so a field that AWS added after this build survives a read-modify-write.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::Value;

use crate::error::Error;

/// Keeps a copy of the response body.
#[derive(Debug, Clone, Default)]
pub struct CaptureBody(Arc<Mutex<Option<Vec<u8>>>>);

impl CaptureBody {
    pub fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok()?.take()
    }

    /// The captured body as JSON; `what` names it in the error.
    pub fn json(&self, what: &str) -> Result<Value, Error> {
        let body = self.take().ok_or_else(|| Error::Mismatch {
            problem: format!("no response body for {what}"),
            hint: "retry; this is a bug if it persists".to_owned(),
        })?;
        serde_json::from_slice(&body).map_err(|error| Error::Mismatch {
            problem: format!("{what} is not JSON: {error}"),
            hint: "retry; this is a bug if it persists".to_owned(),
        })
    }
}

impl Intercept for CaptureBody {
    fn name(&self) -> &'static str {
        "berth::CaptureBody"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(bytes), Ok(mut slot)) = (context.response().body().bytes(), self.0.lock()) {
            *slot = Some(bytes.to_vec());
        }
        Ok(())
    }
}

/// Sends its own bytes as the request body, on every attempt.
#[derive(Debug)]
pub struct ReplaceBody(pub bytes::Bytes);

impl ReplaceBody {
    pub fn json(value: &Value) -> Self {
        Self(value.to_string().into())
    }
}

impl Intercept for ReplaceBody {
    fn name(&self) -> &'static str {
        "berth::ReplaceBody"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        *request.body_mut() = SdkBody::from(self.0.clone());
        request
            .headers_mut()
            .insert("content-length", self.0.len().to_string());
        Ok(())
    }
}
