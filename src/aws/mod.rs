//! The one place that configures the AWS SDK.

pub mod arn;
pub mod ecr;
mod errors;
mod oidc;
pub mod services;
pub mod wire;

use std::time::Duration;

use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::env_vars;
use crate::error::Error;
use crate::settings::Settings;
pub use errors::{blame_unknown_region, denied_action, failed, is_transient};
use oidc::OidcCredentials;
pub use oidc::{CircleCiOidc, circleci_oidc, session_seconds};

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
        // An explicit profile wins over keys in the environment, as with the AWS CLI, and one
        // that is not defined is an error, not a fall back to the default chain.
        let provider = ProfileFileCredentialsProvider::builder()
            .profile_name(profile)
            .build();
        check_profile(profile).await?;
        main = main.profile_name(profile).credentials_provider(provider);
    } else if let Some(oidc) = circleci_oidc(&env_vars::var)? {
        // STS takes the token itself as the credential: its client needs none.
        let sts = aws_sdk_sts::Client::new(&loader().no_credentials().load().await);
        main = main.credentials_provider(OidcCredentials::new(sts, oidc, session));
    }
    Ok(main.load().await)
}

/// Refuses a profile (`--profile`) the AWS config files do not define, read as the SDK reads
/// them. A file that cannot be read or parsed is left to the first AWS call to report.
async fn check_profile(profile: &str) -> Result<(), Error> {
    use aws_runtime::env_config::file::EnvConfigFiles;
    use aws_types::os_shim_internal::{Env, Fs};
    let files = EnvConfigFiles::default();
    let Ok(set) = aws_config::profile::load(&Fs::real(), &Env::real(), &files, None).await else {
        return Ok(());
    };
    if set.get_profile(profile).is_some() {
        return Ok(());
    }
    Err(Error::Mismatch {
        problem: format!(
            "AWS profile `{profile}` (`--profile`) is not defined in the AWS config files"
        ),
        hint: format!(
            "`aws configure list-profiles` lists the profiles; `{}` and `{}` name other files than `~/.aws/config` and `~/.aws/credentials`",
            env_vars::AWS_CONFIG_FILE,
            env_vars::AWS_SHARED_CREDENTIALS_FILE
        ),
    })
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
                    .map(|oidc| (oidc.token_source(), oidc.session_name.as_str())),
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
            poll: std::time::Duration::from_secs(1),
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
