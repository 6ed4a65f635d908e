//! The push step's Docker part: push the built image, already tagged for the registry.
//!
//! Progress is coarse: one line per layer as it finishes, then a summary with the digest. The
//! engine's per-layer ids are not in bollard's typed push messages, so layers are counted rather
//! than named. Credentials go to the engine in the `X-Registry-Auth` header and are never reported
//! or logged.

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::PushImageInfo;
use bollard::query_parameters::PushImageOptionsBuilder;
use futures_util::StreamExt;

use crate::report::Reporter;

/// What the registry now holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushedImage {
    /// `sha256:…` of the manifest, when the engine reported it.
    pub digest: Option<String>,
    /// Layers uploaded by this push.
    pub layers_pushed: usize,
    /// Layers the registry already had (or mounted from another repository).
    pub layers_existing: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The engine or the registry refused the push: no such local image, auth, quota, network.
    #[error("push of `{reference}` rejected: {message}")]
    Rejected { reference: String, message: String },

    #[error("cannot push `{reference}`")]
    Docker {
        reference: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl PushError {
    /// A refusal worth another push a moment later: the registry lost a race between two pushes
    /// of the same layers (a blob one upload committed while the other linked it), or answered
    /// with a server error. A push is content-addressed, so pushing again is safe.
    pub fn is_transient(&self) -> bool {
        const TRANSIENT: [&str; 8] = [
            "blob unknown",
            "digest invalid",
            "blob upload unknown",
            "500 internal server error",
            "502 bad gateway",
            "503 service unavailable",
            "504 gateway timeout",
            "connection reset",
        ];
        match self {
            Self::Rejected { message, .. } => {
                let message = message.to_lowercase();
                TRANSIENT.iter().any(|known| message.contains(known))
            }
            Self::Docker { .. } => false,
        }
    }
}

/// Pushes of one image before its failure is the caller's.
const PUSH_ATTEMPTS: u32 = 3;

/// Pushes the local image `repository:tag` (for example `127.0.0.1:5055/berth-example` and
/// `abc123`) to its registry. Two deploys of one commit (stg and prd together) push the same
/// layers at once, and a registry may lose that race: a refusal that [`PushError::is_transient`]
/// calls so is pushed again, a second later, then two, up to 3 pushes in all. Pushing again is
/// safe: the image is content-addressed.
pub async fn push_image(
    docker: &Docker,
    repository: &str,
    tag: &str,
    credentials: DockerCredentials,
    reporter: &dyn Reporter,
) -> Result<PushedImage, PushError> {
    let mut attempt = 1;
    loop {
        match push_once(docker, repository, tag, credentials.clone(), reporter).await {
            Err(error) if error.is_transient() && attempt < PUSH_ATTEMPTS => {
                reporter.info(&format!(
                    "the registry refused the push ({}); pushing again ({} of {PUSH_ATTEMPTS})",
                    crate::text::with_causes(&error).replace('\n', " "),
                    attempt + 1
                ));
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
                attempt += 1;
            }
            pushed => return pushed,
        }
    }
}

/// One push of `repository:tag`.
async fn push_once(
    docker: &Docker,
    repository: &str,
    tag: &str,
    credentials: DockerCredentials,
    reporter: &dyn Reporter,
) -> Result<PushedImage, PushError> {
    let reference = format!("{repository}:{tag}");
    reporter.info(&format!("pushing `{reference}`"));
    let options = PushImageOptionsBuilder::default().tag(tag).build();
    let mut stream = docker.push_image(repository, Some(options), Some(credentials));

    let mut progress = Progress::new(tag);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(line) = progress.take(&info) {
                    reporter.info(&line);
                }
            }
            Err(
                bollard::errors::Error::DockerStreamError { error: message }
                | bollard::errors::Error::DockerResponseServerError { message, .. },
            ) => {
                return Err(PushError::Rejected {
                    reference,
                    message: message.trim().to_owned(),
                });
            }
            Err(source) => return Err(PushError::Docker { reference, source }),
        }
    }

    let pushed = progress.pushed;
    reporter.info(&format!(
        "pushed `{reference}`{}: {} layer{} uploaded, {} already in the registry",
        pushed
            .digest
            .as_ref()
            .map_or_else(String::new, |digest| format!(" ({digest})")),
        pushed.layers_pushed,
        if pushed.layers_pushed == 1 { "" } else { "s" },
        pushed.layers_existing,
    ));
    Ok(pushed)
}

/// Folds the engine's push messages into a few lines.
#[derive(Debug)]
struct Progress {
    /// `abc123: digest: ` opens the engine's final message.
    digest_prefix: String,
    pushed: PushedImage,
}

impl Progress {
    fn new(tag: &str) -> Self {
        Self {
            digest_prefix: format!("{tag}: digest: "),
            pushed: PushedImage::default(),
        }
    }

    /// The line worth reporting for one message, if any.
    fn take(&mut self, info: &PushImageInfo) -> Option<String> {
        let status = info.status.as_deref()?.trim();
        let layers = self.pushed.layers_pushed + self.pushed.layers_existing + 1;
        match status {
            "Pushed" => {
                self.pushed.layers_pushed += 1;
                Some(format!("layer {layers} pushed"))
            }
            "Layer already exists" => {
                self.pushed.layers_existing += 1;
                Some(format!("layer {layers} already in the registry"))
            }
            _ if status.starts_with("Mounted from ") => {
                self.pushed.layers_existing += 1;
                Some(format!("layer {layers} {}", status.to_lowercase()))
            }
            _ if status.starts_with(&self.digest_prefix) => {
                // `abc123: digest: sha256:… size: 528`
                let rest = &status[self.digest_prefix.len()..];
                self.pushed.digest = rest.split_whitespace().next().map(str::to_owned);
                None
            }
            // Byte counts and waiting states would flood the output.
            "Preparing" | "Waiting" | "Pushing" => None,
            _ if status.starts_with("The push refers to") => None,
            _ => Some(status.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry's race between two pushes of the same layers, and server errors, are worth
    /// another push; a refusal of the credentials or of the image is not.
    #[test]
    fn a_lost_race_in_the_registry_is_pushed_again() {
        let rejected = |message: &str| PushError::Rejected {
            reference: "repo:tag".to_owned(),
            message: message.to_owned(),
        };
        for transient in [
            "errors:\ndigest invalid\nmanifest blob unknown: blob unknown to registry",
            "received unexpected HTTP status: 503 Service Unavailable",
        ] {
            assert!(rejected(transient).is_transient(), "{transient}");
        }
        for lasting in [
            "denied: Your authorization token has expired. Reauthenticate and try again.",
            "tag invalid: The image tag 'x' already exists in the 'repo' repository and cannot be overwritten because the repository is immutable.",
            "An image does not exist locally with the tag: repo",
        ] {
            assert!(!rejected(lasting).is_transient(), "{lasting}");
        }
    }

    fn status(text: &str) -> PushImageInfo {
        PushImageInfo {
            status: Some(text.to_owned()),
            ..PushImageInfo::default()
        }
    }

    #[test]
    fn push_progress_is_one_line_per_finished_layer_and_a_digest() {
        let mut progress = Progress::new("abc123");
        let lines: Vec<String> = [
            "The push refers to repository [127.0.0.1:5055/berth-example]",
            "Preparing",
            "Preparing",
            "Waiting",
            "Pushing",
            "Pushing",
            "Layer already exists",
            "Pushed",
            "abc123: digest: sha256:0f1e size: 739",
        ]
        .into_iter()
        .filter_map(|text| progress.take(&status(text)))
        .collect();
        assert_eq!(lines, ["layer 1 already in the registry", "layer 2 pushed"]);
        assert_eq!(
            progress.pushed,
            PushedImage {
                digest: Some("sha256:0f1e".to_owned()),
                layers_pushed: 1,
                layers_existing: 1,
            }
        );
    }

    #[test]
    fn unknown_states_such_as_retries_are_reported() {
        let mut progress = Progress::new("v1");
        assert_eq!(
            progress.take(&status("Retrying in 5 seconds")).as_deref(),
            Some("Retrying in 5 seconds")
        );
    }
}
