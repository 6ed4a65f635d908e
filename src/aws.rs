//! The one place that configures the AWS SDK.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::settings::Settings;

/// Attempts per AWS call, first try included; throttling and 5xx are retried with backoff.
const MAX_ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// SDK configuration for the deploy's region and profile. Credentials come from the default chain
/// (environment, profile, SSO, web identity, container and instance roles); `AWS_ENDPOINT_URL`
/// and its per-service forms are honoured by the SDK itself, which is how the sandbox is reached.
pub async fn sdk_config(settings: &Settings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    loader.load().await
}

pub fn ecs_client(config: &SdkConfig) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(config)
}

pub fn ecr_client(config: &SdkConfig) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::new(config)
}

pub fn logs_client(config: &SdkConfig) -> aws_sdk_cloudwatchlogs::Client {
    aws_sdk_cloudwatchlogs::Client::new(config)
}

pub fn tagging_client(config: &SdkConfig) -> aws_sdk_resourcegroupstagging::Client {
    aws_sdk_resourcegroupstagging::Client::new(config)
}

/// An AWS call that failed, as berth's error: unreachable AWS and refused credentials are
/// environment errors (exit 4); anything else fails the deploy. The message keeps AWS's own
/// words (`DisplayErrorContext` walks the whole cause chain).
pub fn failed<E, R>(
    action: impl Into<String>,
    error: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> crate::error::Error
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;

    let environment = match &error {
        SdkError::ConstructionFailure(_)
        | SdkError::DispatchFailure(_)
        | SdkError::TimeoutError(_) => true,
        SdkError::ServiceError(service) => matches!(
            service.err().code(),
            Some(
                "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "ExpiredTokenException"
                    | "InvalidClientTokenId"
                    | "AccessDeniedException"
            )
        ),
        _ => false,
    };
    let message = match &error {
        // AWS's own words, without the SDK's dump of the raw response.
        SdkError::ServiceError(service) => {
            let meta = service.err().meta();
            let mut message = format!(
                "{}: {}",
                meta.code().unwrap_or("error"),
                meta.message().unwrap_or("no message")
            );
            if let Some(id) = meta.extra("aws_request_id") {
                message.push_str(&format!(" (request id {id})"));
            }
            message
        }
        other => aws_smithy_types::error::display::DisplayErrorContext(other).to_string(),
    };
    crate::error::Error::Aws {
        action: action.into(),
        environment,
        source: message.into(),
    }
}
