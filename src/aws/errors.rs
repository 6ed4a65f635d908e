//! What a failed AWS call means: no credentials, access denied (and the IAM action), a
//! transient failure worth another look, a settings error, or the deploy's failure, in AWS's own
//! words.

use aws_credential_types::provider::error::CredentialsError;

use super::oidc::{OidcNoToken, OidcRefused, OidcUnreachable};
use crate::error::Error;

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

/// S3 does not name the action it denies (`Access Denied`): the caller, who knows the call, does.
pub fn denied_action(error: Error, iam: &str) -> Error {
    match error {
        Error::AccessDenied {
            action,
            iam_action: None,
            source,
        } => Error::AccessDenied {
            action,
            iam_action: Some(iam.to_owned()),
            source,
        },
        other => other,
    }
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
    if let Some(none) = source.and_then(|source| source.downcast_ref::<OidcNoToken>()) {
        return Error::OidcToken {
            role_arn: none.role_arn.clone(),
            problem: none.problem.clone(),
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
