//! The one place that configures the AWS SDK.

pub mod arn;
pub mod ecr;
pub mod services;
pub mod wire;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};

use crate::env_vars;
use crate::error::Error;
use crate::settings::Settings;

/// Attempts per AWS call, first try included; throttling and 5xx are retried with backoff.
/// `AWS_MAX_ATTEMPTS` and `AWS_RETRY_MODE`, when set, win (read by the SDK).
const MAX_ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Every item of a listing whose API has no SDK paginator (EventBridge's, and answers read as
/// raw JSON): `page(token)` fetches one page, its items and the next token; pages are read until
/// a page has no next token.
pub async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, Error>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), Error>>,
{
    let mut items = Vec::new();
    let mut next = None;
    loop {
        let (found, token) = page(next).await?;
        items.extend(found);
        match token {
            Some(token) => next = Some(token),
            None => return Ok(items),
        }
    }
}

/// SDK configuration for the deploy's region and profile. Credentials come from the default chain
/// (environment, profile, SSO, web identity, container and instance roles), or from CircleCI's
/// OIDC token when [`circleci_oidc`] finds one to trade; `AWS_ENDPOINT_URL` and its per-service
/// forms are honoured by the SDK itself, which is how the sandbox is reached.
pub async fn sdk_config(settings: &Settings) -> Result<SdkConfig, Error> {
    sdk_config_for(
        &settings.region,
        settings.profile.as_deref(),
        session_seconds(&settings.timeouts),
    )
    .await
}

/// As [`sdk_config`], before there are settings (`berth init`): a region, a profile, and how
/// long an assumed role's session should last.
pub async fn sdk_config_for(
    region: &str,
    profile: Option<&str>,
    session: i32,
) -> Result<SdkConfig, Error> {
    // The standard variables configure retries when set; berth's default otherwise.
    let configured = [env_vars::AWS_MAX_ATTEMPTS, env_vars::AWS_RETRY_MODE]
        .iter()
        .any(|name| env_vars::var(name).is_some());
    let loader = || {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if !configured {
            loader = loader.retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        }
        loader
    };
    let mut main = loader();
    if let Some(profile) = profile {
        main = main.profile_name(profile);
    }
    if let Some(oidc) = circleci_oidc(&env_vars::var)? {
        // STS takes the token itself as the credential: its client needs none.
        let sts = aws_sdk_sts::Client::new(&loader().no_credentials().load().await);
        main = main.credentials_provider(OidcCredentials {
            sts,
            oidc,
            seconds: session,
        });
    }
    Ok(main.load().await)
}

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
struct OidcCredentials {
    sts: aws_sdk_sts::Client,
    oidc: CircleCiOidc,
    seconds: i32,
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
struct OidcUnreachable {
    role_arn: String,
    detail: String,
}

/// STS would not trade CircleCI's token for the role's credentials.
#[derive(Debug, thiserror::Error)]
#[error("STS refused `{token_var}` for role `{role_arn}`: {detail}")]
struct OidcRefused {
    role_arn: String,
    token_var: &'static str,
    detail: String,
}

/// A failure worth another look a moment later, once the SDK's own retries gave up: throttling,
/// a server error, no answer. A wait tolerates these and looks again at its next poll.
pub fn is_transient(error: &Error) -> bool {
    matches!(
        error,
        Error::Aws {
            transient: true,
            ..
        }
    )
}

/// The AWS regions this berth knows (commercial, GovCloud, China, European Sovereign Cloud). A
/// region missing here still works; it only lets berth name the region when AWS fails there.
const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eusc-de-east-1",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// The first AWS calls failed: when the region is not one AWS has, that is the likelier cause,
/// and a settings error (exit 2) naming it.
pub fn blame_unknown_region(error: Error, region: &str) -> Error {
    match error {
        Error::Aws { .. } if !KNOWN_REGIONS.contains(&region) => Error::Mismatch {
            problem: format!(
                "region `{region}` is not an AWS region berth knows, and AWS failed there: {}",
                crate::text::with_causes(&error)
            ),
            hint: "check `region` in berth.toml, `--region` or `AWS_REGION`".to_owned(),
        },
        other => other,
    }
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

pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::new(config)
}

pub fn sts_client(config: &SdkConfig) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(config)
}

pub fn tagging_client(config: &SdkConfig) -> aws_sdk_resourcegroupstagging::Client {
    aws_sdk_resourcegroupstagging::Client::new(config)
}

/// An AWS call that failed, as berth's error: unreachable AWS and refused credentials are
/// environment errors (exit 4); a call the credentials may not make is [`Error::AccessDenied`]
/// (exit 1), naming the IAM action when AWS does; anything else fails the deploy. The message
/// keeps AWS's own words (`DisplayErrorContext` walks the whole cause chain).
pub fn failed<E, R>(
    action: impl Into<String>,
    error: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Error
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;

    // Credentials are resolved on the first call: none anywhere is one clear line (exit 4), not
    // the SDK's dump of every provider's failure.
    if let Some(missing) = credentials_error(&error) {
        return no_credentials(missing);
    }
    let code = match &error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    };
    // As the SDK's retry classifiers judge it: no answer, a throttling or transient code, or a
    // server error (500, 502, 503, 504).
    let transient = match &error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let status = (service.raw() as &dyn std::any::Any)
                .downcast_ref::<aws_smithy_runtime_api::client::orchestrator::HttpResponse>()
                .map(|raw| raw.status().as_u16());
            code.is_some_and(|code| {
                aws_runtime::retries::classifiers::THROTTLING_ERRORS.contains(&code)
                    || aws_runtime::retries::classifiers::TRANSIENT_ERRORS.contains(&code)
            }) || matches!(status, Some(500 | 502 | 503 | 504))
        }
        _ => false,
    };
    let environment = match &error {
        SdkError::ConstructionFailure(_)
        | SdkError::DispatchFailure(_)
        | SdkError::TimeoutError(_) => true,
        SdkError::ServiceError(_) => matches!(
            code,
            Some(
                "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "ExpiredTokenException"
                    | "InvalidClientTokenId"
            )
        ),
        _ => false,
    };
    let message = aws_words(&error);
    if matches!(
        code,
        Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation")
    ) {
        return Error::AccessDenied {
            action: action.into(),
            iam_action: iam_action_in(&message).map(str::to_owned),
            source: message.into(),
        };
    }
    Error::Aws {
        action: action.into(),
        environment,
        transient,
        source: message.into(),
    }
}

/// No credentials: CircleCI's OIDC token unanswered or refused, or no source had any.
fn no_credentials(missing: &CredentialsError) -> Error {
    let source = std::error::Error::source(missing);
    if let Some(unanswered) = source.and_then(|source| source.downcast_ref::<OidcUnreachable>()) {
        return Error::Aws {
            action: format!(
                "assuming role `{}` with CircleCI's OIDC token",
                unanswered.role_arn
            ),
            environment: true,
            transient: true,
            source: unanswered.detail.clone().into(),
        };
    }
    if let Some(refused) = source.and_then(|source| source.downcast_ref::<OidcRefused>()) {
        return Error::OidcRefused {
            role_arn: refused.role_arn.clone(),
            token_var: refused.token_var,
            detail: refused.detail.clone(),
        };
    }
    tracing::debug!(error = %aws_smithy_types::error::display::DisplayErrorContext(missing), "no credentials");
    Error::NoCredentials {
        detail: match missing {
            CredentialsError::CredentialsNotLoaded(_) => "none of the sources had any".to_owned(),
            other => other.to_string(),
        },
    }
}

/// AWS's own words for a failed call: the code, the message and the request id of an answer,
/// without the SDK's dump of the raw response; the whole cause chain of any other failure.
fn aws_words<E, R>(error: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match error {
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
    }
}

/// The credentials chain's failure, when that is why the call failed (it sits in the cause chain
/// of a dispatch failure).
fn credentials_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a CredentialsError> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(missing) = error.downcast_ref::<CredentialsError>() {
            return Some(missing);
        }
        cause = error.source();
    }
    None
}

/// The IAM action an access-denied message names: `… is not authorized to perform:
/// ecs:UpdateService on resource: …`.
fn iam_action_in(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("not authorized to perform: ")?;
    let action = rest
        .split_whitespace()
        .next()?
        .trim_end_matches([',', '.', ';']);
    action.contains(':').then_some(action)
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::operation::update_service::UpdateServiceError;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::{circleci_oidc, failed, session_seconds};
    use crate::error::ExitStatus;

    /// Which variables make berth trade CircleCI's OIDC token itself, and with what.
    #[test]
    fn circleci_oidc_is_traded_only_with_a_role_a_token_and_no_token_file() {
        let role = ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/deploy");
        let v2 = ("CIRCLE_OIDC_TOKEN_V2", "token-v2");
        let v1 = ("CIRCLE_OIDC_TOKEN", "token-v1");
        let file = ("AWS_WEB_IDENTITY_TOKEN_FILE", "/run/token");
        let job = ("CIRCLE_BUILD_NUM", "4242");
        let session = ("AWS_ROLE_SESSION_NAME", "release");
        // (variables, the token's variable and the session name when traded)
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            (
                &[role, v2, v1, job],
                Some(("CIRCLE_OIDC_TOKEN_V2", "berth-4242")),
            ),
            (&[role, v1], Some(("CIRCLE_OIDC_TOKEN", "berth"))),
            (
                &[role, v2, session, job],
                Some(("CIRCLE_OIDC_TOKEN_V2", "release")),
            ),
            (
                &[role, v2, ("CIRCLE_BUILD_NUM", "12; rm")],
                Some(("CIRCLE_OIDC_TOKEN_V2", "berth")),
            ),
            (&[v2, v1], None),
            (&[role], None),
            (&[role, v2, file], None),
        ];
        for (vars, expected) in cases {
            let var = |name: &str| {
                vars.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            };
            let found = circleci_oidc(&var).unwrap();
            assert_eq!(
                found
                    .as_ref()
                    .map(|oidc| (oidc.token_var, oidc.session_name.as_str())),
                *expected,
                "{vars:?}"
            );
            if let Some(oidc) = found {
                assert_eq!(oidc.role_arn, role.1);
            }
        }
    }

    /// The session outlasts the deploy's waits: one hour at least, twelve at most.
    #[test]
    fn the_role_session_outlasts_the_deploys_timeouts() {
        let timeouts = |rollout: u64, migration: u64| crate::settings::Timeouts {
            rollout: std::time::Duration::from_secs(rollout * 60),
            migration: std::time::Duration::from_secs(migration * 60),
            poll: None,
            heartbeat: std::time::Duration::from_secs(30),
        };
        assert_eq!(session_seconds(&timeouts(30, 30)), 2 * 3600);
        assert_eq!(session_seconds(&timeouts(1, 1)), 3600 + 120);
        assert_eq!(session_seconds(&timeouts(600, 600)), 12 * 3600);
    }

    /// A session name STS would refuse is a settings error, not a refusal of the token.
    #[test]
    fn a_session_name_sts_refuses_is_caught_first() {
        let var = |name: &str| match name {
            "AWS_ROLE_ARN" => Some("arn:aws:iam::123456789012:role/deploy".to_owned()),
            "CIRCLE_OIDC_TOKEN_V2" => Some("header.claims.signature".to_owned()),
            "AWS_ROLE_SESSION_NAME" => Some("deploy by ci".to_owned()),
            _ => None,
        };
        let error = circleci_oidc(&var).unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Usage);
        assert!(
            error
                .to_string()
                .contains("`AWS_ROLE_SESSION_NAME` is `deploy by ci`")
        );
        // The token never shows, not even in debug output.
        let var = |name: &str| match name {
            "AWS_ROLE_SESSION_NAME" => None,
            other => var(other),
        };
        let found = circleci_oidc(&var).unwrap().unwrap();
        assert!(!format!("{found:?}").contains("signature"));
    }

    fn refused(code: &str, message: &str) -> SdkError<UpdateServiceError, HttpResponse> {
        let error = UpdateServiceError::generic(
            ErrorMetadata::builder().code(code).message(message).build(),
        );
        let raw = HttpResponse::new(StatusCode::try_from(400).unwrap(), SdkBody::empty());
        SdkError::service_error(error, raw)
    }

    /// Transient as the SDK's retry classifiers judge it: a wait looks again after these only.
    #[test]
    fn throttling_is_transient_and_a_refusal_is_not() {
        for (code, transient) in [
            ("ThrottlingException", true),
            ("SlowDown", true),
            ("RequestTimeout", true),
            ("ClientException", false),
            ("AccessDeniedException", false),
        ] {
            let error = failed("describing services", refused(code, "no"));
            assert_eq!(super::is_transient(&error), transient, "{code}");
        }
    }

    #[test]
    fn access_denied_names_the_iam_action_and_fails_the_deploy() {
        let rows = [
            (
                "the action named by AWS",
                "AccessDeniedException",
                "User: arn:aws:sts::1:assumed-role/ci/x is not authorized to perform: ecs:UpdateService on resource: arn:aws:ecs:us-east-1:1:service/stg/web because no identity-based policy allows the ecs:UpdateService action",
                ExitStatus::DeployFailed,
                "grant `ecs:UpdateService`",
            ),
            (
                "no action in the message",
                "AccessDeniedException",
                "Access denied",
                ExitStatus::DeployFailed,
                "the IAM action for updating service `web`",
            ),
            (
                "expired credentials are the environment's",
                "ExpiredTokenException",
                "The security token included in the request is expired",
                ExitStatus::Environment,
                "check AWS credentials",
            ),
        ];
        for (case, code, message, status, hint) in rows {
            let error = failed("updating service `web`", refused(code, message));
            assert_eq!(error.exit_status(), status, "{case}");
            assert!(error.hint().contains(hint), "{case}: {}", error.hint());
            let rendered = crate::error::render(&error);
            assert!(
                rendered.contains(message),
                "{case}: AWS's words kept: {rendered}"
            );
        }
    }
}
