//! CircleCI's OIDC token traded for a role's credentials, for as long as the deploy may take.

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};

use crate::env_vars;
use crate::error::Error;

/// CircleCI's OIDC token and the role to trade it for, when berth must do the trade itself:
/// `AWS_ROLE_ARN` set, `CIRCLE_OIDC_TOKEN_V2` (else `CIRCLE_OIDC_TOKEN`) present, and no
/// `AWS_WEB_IDENTITY_TOKEN_FILE` (with one, the default chain trades that file's token).
pub struct CircleCiOidc {
    pub role_arn: String,
    pub session_name: String,
    /// The variable the token came from.
    pub token_var: &'static str,
    token: String,
}

pub fn circleci_oidc(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<CircleCiOidc>, Error> {
    let Some(role_arn) = var(env_vars::AWS_ROLE_ARN) else {
        return Ok(None);
    };
    if var(env_vars::AWS_WEB_IDENTITY_TOKEN_FILE).is_some() {
        return Ok(None);
    }
    let Some((token_var, token)) = [env_vars::CIRCLE_OIDC_TOKEN_V2, env_vars::CIRCLE_OIDC_TOKEN]
        .into_iter()
        .find_map(|name| var(name).map(|token| (name, token)))
    else {
        return Ok(None);
    };
    let session_name = match var(env_vars::AWS_ROLE_SESSION_NAME) {
        Some(name) => name,
        None => match var(env_vars::CIRCLE_BUILD_NUM)
            .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        {
            Some(number) => format!("berth-{number}"),
            None => "berth".to_owned(),
        },
    };
    // STS takes `[\w+=,.@-]{2,64}`.
    let valid = (2..=64).contains(&session_name.len())
        && session_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if !valid {
        return Err(Error::Mismatch {
            problem: format!(
                "`{}` is `{session_name}`, which STS does not take as a role session name",
                env_vars::AWS_ROLE_SESSION_NAME
            ),
            hint: "use 2 to 64 letters, digits and `_+=,.@-`, or unset it".to_owned(),
        });
    }
    Ok(Some(CircleCiOidc {
        role_arn,
        session_name,
        token_var,
        token,
    }))
}

/// The token is a secret: never printed.
impl std::fmt::Debug for CircleCiOidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircleCiOidc")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("token_var", &self.token_var)
            .finish_non_exhaustive()
    }
}

/// One hour: what every role allows, and the most the SDK's own web identity provider asks for.
const ONE_HOUR: i32 = 3600;

/// The longest session STS grants.
const MAX_SESSION: i32 = 12 * 3600;

/// How long the assumed role's session should last: long enough for a deploy that takes its
/// whole rollout and migration timeouts and an hour besides (lock wait, build, push). CircleCI's
/// token lives an hour from the job's start, so the credentials cannot be renewed with it later;
/// they must outlast the deploy from the first call.
pub fn session_seconds(timeouts: &crate::settings::Timeouts) -> i32 {
    let wanted = (timeouts.rollout + timeouts.migration).as_secs() + ONE_HOUR as u64;
    i32::try_from(wanted)
        .unwrap_or(MAX_SESSION)
        .clamp(ONE_HOUR, MAX_SESSION)
}

/// Credentials for `AWS_ROLE_ARN` from CircleCI's OIDC token, asked of STS once for the whole
/// deploy. The token stays in memory; nothing is written to disk.
#[derive(Debug)]
pub(super) struct OidcCredentials {
    pub(super) sts: aws_sdk_sts::Client,
    pub(super) oidc: CircleCiOidc,
    pub(super) seconds: i32,
}

impl OidcCredentials {
    async fn assume(
        &self,
        seconds: i32,
    ) -> Result<
        aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityOutput,
        aws_smithy_runtime_api::client::result::SdkError<
            aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    > {
        self.sts
            .assume_role_with_web_identity()
            .role_arn(&self.oidc.role_arn)
            .role_session_name(&self.oidc.session_name)
            .web_identity_token(&self.oidc.token)
            .duration_seconds(seconds)
            .send()
            .await
    }

    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        use aws_smithy_runtime_api::client::result::SdkError;
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;

        let mut answer = self.assume(self.seconds).await;
        // A role allows sessions up to its MaxSessionDuration (one hour unless raised).
        if let Err(SdkError::ServiceError(error)) = &answer
            && self.seconds > ONE_HOUR
            && error.err().code() == Some("ValidationError")
            && error
                .err()
                .message()
                .is_some_and(|m| m.contains("MaxSessionDuration"))
        {
            tracing::warn!(
                "role `{}` allows sessions of less than {} minutes (its MaxSessionDuration): berth asks for one hour, and a deploy that runs longer fails when the credentials expire",
                self.oidc.role_arn,
                self.seconds / 60
            );
            answer = self.assume(ONE_HOUR).await;
        }
        let output = answer.map_err(|error| match &error {
            SdkError::ServiceError(service) => CredentialsError::provider_error(OidcRefused {
                role_arn: self.oidc.role_arn.clone(),
                token_var: self.oidc.token_var,
                detail: format!(
                    "{}: {}",
                    service.err().code().unwrap_or("error"),
                    service.err().message().unwrap_or("no message")
                ),
            }),
            _ => CredentialsError::provider_error(OidcUnreachable {
                role_arn: self.oidc.role_arn.clone(),
                detail: aws_smithy_types::error::display::DisplayErrorContext(&error).to_string(),
            }),
        })?;
        let given = output.credentials().ok_or_else(|| {
            CredentialsError::unhandled(
                "STS answered AssumeRoleWithWebIdentity without credentials",
            )
        })?;
        let expiry = std::time::SystemTime::try_from(*given.expiration()).ok();
        Ok(Credentials::new(
            given.access_key_id(),
            given.secret_access_key(),
            Some(given.session_token().to_owned()),
            expiry,
            "CircleCiOidc",
        ))
    }
}

impl ProvideCredentials for OidcCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.credentials())
    }
}

/// STS gave no answer (unreachable, timed out) to the trade of CircleCI's token.
#[derive(Debug, thiserror::Error)]
#[error("STS did not answer for role `{role_arn}`: {detail}")]
pub(super) struct OidcUnreachable {
    pub(super) role_arn: String,
    pub(super) detail: String,
}

/// STS would not trade CircleCI's token for the role's credentials.
#[derive(Debug, thiserror::Error)]
#[error("STS refused `{token_var}` for role `{role_arn}`: {detail}")]
pub(super) struct OidcRefused {
    pub(super) role_arn: String,
    pub(super) token_var: &'static str,
    pub(super) detail: String,
}
