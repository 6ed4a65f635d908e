//! CircleCI's OIDC token traded for a role's credentials, for as long as the deploy takes: the
//! role is assumed again, with a token valid at that time, before each session expires.

mod token;

use std::sync::atomic::{AtomicI32, Ordering};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};

use crate::env_vars;
use crate::error::Error;
use token::Tokens;

/// The role to assume with CircleCI's OIDC tokens, when berth must do it itself:
/// `AWS_ROLE_ARN` set and no `AWS_WEB_IDENTITY_TOKEN_FILE` (with one, the default chain trades
/// that file's token).
pub struct CircleCiOidc {
    pub role_arn: String,
    pub session_name: String,
    tokens: Tokens,
}

impl CircleCiOidc {
    /// Where the first token comes from: a variable's name, or the command that mints one.
    pub fn token_source(&self) -> &'static str {
        self.tokens.source()
    }
}

/// The role and its tokens when `AWS_ROLE_ARN` asks berth to assume it. A role with no way to a
/// token (no `CIRCLE_OIDC_TOKEN_V2` or `CIRCLE_OIDC_TOKEN`, no `circleci` on PATH) is an error:
/// falling back to other credentials could act in another account.
pub fn circleci_oidc(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<CircleCiOidc>, Error> {
    let Some(role_arn) = var(env_vars::AWS_ROLE_ARN).filter(|arn| !arn.is_empty()) else {
        return Ok(None);
    };
    if var(env_vars::AWS_WEB_IDENTITY_TOKEN_FILE).is_some() {
        return Ok(None);
    }
    let Some(tokens) = Tokens::find(var) else {
        return Err(Error::OidcToken {
            role_arn,
            problem: token::none(),
        });
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
        tokens,
    }))
}

/// The token is a secret: never printed.
impl std::fmt::Debug for CircleCiOidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircleCiOidc")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("tokens", &self.tokens)
            .finish()
    }
}

/// One hour: what every role allows (IAM's least `MaxSessionDuration`).
const ONE_HOUR: i32 = 3600;

/// The longest session STS grants.
const MAX_SESSION: i32 = 12 * 3600;

/// How long the assumed role's session should last: the deploy's rollout and migration
/// timeouts and an hour besides (lock wait, build, push). A role that allows less gets shorter
/// sessions, and berth assumes it again before each one expires.
pub fn session_seconds(timeouts: &crate::settings::Timeouts) -> i32 {
    let wanted = (timeouts.rollout + timeouts.migration).as_secs() + ONE_HOUR as u64;
    i32::try_from(wanted)
        .unwrap_or(MAX_SESSION)
        .clamp(ONE_HOUR, MAX_SESSION)
}

/// The next shorter session to ask for after a role refused `seconds` as longer than its
/// `MaxSessionDuration`: the whole hour below, down to one hour (every role allows that). STS
/// does not say the limit, so it is found an hour at a time, once per run.
fn shorter(seconds: i32) -> Option<i32> {
    (seconds > ONE_HOUR).then(|| ((seconds - 1) / ONE_HOUR * ONE_HOUR).max(ONE_HOUR))
}

type AssumeError = aws_smithy_runtime_api::client::result::SdkError<
    aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError,
    aws_smithy_runtime_api::client::orchestrator::HttpResponse,
>;

/// Credentials for `AWS_ROLE_ARN` from CircleCI's OIDC tokens. The SDK's identity cache asks
/// again shortly before they expire; each time the role is assumed with a token valid then.
/// Tokens stay in memory; nothing is written to disk.
#[derive(Debug)]
pub(super) struct OidcCredentials {
    sts: aws_sdk_sts::Client,
    oidc: CircleCiOidc,
    /// The session length asked for: the wanted one until the role refuses it, then what it
    /// took (so the role's limit is learnt, and said, once).
    seconds: AtomicI32,
}

impl OidcCredentials {
    pub(super) fn new(sts: aws_sdk_sts::Client, oidc: CircleCiOidc, seconds: i32) -> Self {
        Self {
            sts,
            oidc,
            seconds: AtomicI32::new(seconds),
        }
    }

    async fn assume(
        &self,
        token: &str,
        seconds: i32,
    ) -> Result<
        aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityOutput,
        AssumeError,
    > {
        self.sts
            .assume_role_with_web_identity()
            .role_arn(&self.oidc.role_arn)
            .role_session_name(&self.oidc.session_name)
            .web_identity_token(token)
            .duration_seconds(seconds)
            .send()
            .await
    }

    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        use aws_smithy_runtime_api::client::result::SdkError;
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;

        let token = self.oidc.tokens.token().await.map_err(|problem| {
            CredentialsError::provider_error(OidcNoToken {
                role_arn: self.oidc.role_arn.clone(),
                problem,
            })
        })?;
        let wanted = self.seconds.load(Ordering::Relaxed);
        let mut seconds = wanted;
        let mut answer = self.assume(&token.value, seconds).await;
        // A role allows sessions up to its MaxSessionDuration (one hour unless raised).
        while let Err(SdkError::ServiceError(error)) = &answer
            && error.err().code() == Some("ValidationError")
            && error
                .err()
                .message()
                .is_some_and(|m| m.contains("MaxSessionDuration"))
            && let Some(next) = shorter(seconds)
        {
            seconds = next;
            answer = self.assume(&token.value, seconds).await;
        }
        if answer.is_ok() && seconds != wanted {
            self.seconds.store(seconds, Ordering::Relaxed);
            tracing::info!(
                "role `{}` allows sessions shorter than {} minutes (its MaxSessionDuration): berth asks for {} minutes and assumes the role again before each one expires",
                self.oidc.role_arn,
                wanted / 60,
                seconds / 60
            );
        }
        let output = answer.map_err(|error| match &error {
            SdkError::ServiceError(service) => CredentialsError::provider_error(OidcRefused {
                role_arn: self.oidc.role_arn.clone(),
                token_var: token.source,
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
        tracing::info!(
            "assumed role `{}` with the OIDC token from `{}` until {}",
            self.oidc.role_arn,
            token.source,
            given.expiration()
        );
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

/// No token could be had for the role (`circleci run oidc get` failed, or there is none).
#[derive(Debug, thiserror::Error)]
#[error("no OIDC token for role `{role_arn}`: {problem}")]
pub(super) struct OidcNoToken {
    pub(super) role_arn: String,
    pub(super) problem: String,
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

#[cfg(test)]
mod tests {
    /// From the wanted length down an hour at a time to one hour, where every role says yes.
    #[test]
    fn a_refused_session_is_asked_again_an_hour_shorter() {
        let rows = [
            (3960, Some(3600)),
            (7200, Some(3600)),
            (7201, Some(7200)),
            (12 * 3600, Some(11 * 3600)),
            (3600, None),
            (900, None),
        ];
        for (asked, next) in rows {
            assert_eq!(super::shorter(asked), next, "{asked}");
        }
    }
}
