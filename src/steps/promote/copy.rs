//! An image copied from one registry to another by digest, without a Docker engine: its
//! manifest (and an index's manifests), then each blob the target does not have, streamed from
//! the source, then the manifest under the tag. Each registry gets its own ECR login. The
//! manifest goes last and byte for byte, so the target's digest is the source's, and a copy cut
//! short leaves blobs only: a rerun skips them and finishes.

use futures_util::TryStreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::aws::ecr::RegistryLogin;

/// The manifest types berth copies: Docker's and OCI's, single images and indexes.
const MANIFESTS: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// What a copy moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Copied {
    /// Blobs (layers and configs) sent, and their bytes.
    pub blobs_copied: usize,
    pub bytes_copied: u64,
    /// Blobs the target had already.
    pub blobs_present: usize,
    /// Manifests written (an index and each of its images, or one image).
    pub manifests: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{what}: {source}")]
    Registry {
        what: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("the manifest read from `{reference}` is not `{digest}`")]
    Digest { reference: String, digest: String },
    #[error("the manifest of `{reference}` is not JSON berth reads: {reason}")]
    Manifest { reference: String, reason: String },
}

impl CopyError {
    /// What the registry said, in its own words when it gave some.
    pub fn registry_words(&self) -> String {
        match self {
            Self::Registry {
                source: OciDistributionError::RegistryError { envelope, .. },
                ..
            } => (envelope.errors.iter())
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
            Self::Registry { source, .. } => source.to_string(),
            other => other.to_string(),
        }
    }

    /// Whether the registry refused the caller: no login, or a repository policy that does not
    /// allow it.
    pub fn is_refusal(&self) -> bool {
        use oci_client::errors::OciErrorCode;
        let Self::Registry { source, .. } = self else {
            return false;
        };
        match source {
            OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::UnauthorizedError { .. } => true,
            OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
            OciDistributionError::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Denied | OciErrorCode::Unauthorized)),
            _ => false,
        }
    }
}

/// One end of a copy: `<registry>/<repository>` and the login for that registry.
pub struct End<'a> {
    pub repository: &'a str,
    pub login: &'a RegistryLogin,
}

impl End<'_> {
    fn split(&self) -> (String, String) {
        let (host, name) = self
            .repository
            .split_once('/')
            .unwrap_or(("", self.repository));
        (host.to_owned(), name.to_owned())
    }

    fn at(&self, digest: &str) -> Reference {
        let (host, name) = self.split();
        Reference::with_digest(host, name, digest.to_owned())
    }
}

/// A client for both registries: HTTPS, except for a registry on the loopback interface (as
/// Docker treats 127.0.0.0/8), which is plain HTTP.
pub async fn client(ends: [&End<'_>; 2]) -> Client {
    let loopback: Vec<String> = ends
        .iter()
        .map(|end| end.split().0)
        .filter(|host| host.starts_with("127.") || host.starts_with("localhost"))
        .collect();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(loopback),
        use_monolithic_push: true,
        ..ClientConfig::default()
    });
    for end in ends {
        let auth = RegistryAuth::Basic(end.login.username.clone(), end.login.password.clone());
        client.store_auth_if_needed(&end.split().0, &auth).await;
    }
    client
}

/// Whether `from`'s registry lets its login read the manifest `digest`: the pull a task would
/// make, without its layers.
pub async fn readable(from: &End<'_>, digest: &str) -> Result<(), CopyError> {
    let client = client([from, from]).await;
    let reference = from.at(digest);
    let auth = basic(from.login);
    client
        .pull_manifest_raw(&reference, &auth, &MANIFESTS)
        .await
        .map(|_| ())
        .map_err(registry(format!("reading `{reference}`")))
}

/// Copies the image `digest` from `from` to `to`, tagged `tag` there.
pub async fn copy(
    from: &End<'_>,
    to: &End<'_>,
    digest: &str,
    tag: &str,
) -> Result<Copied, CopyError> {
    let client = client([from, to]).await;
    let mut copied = Copied::default();
    let run = Run {
        dry: false,
        copied: &mut copied,
    };
    copy_manifest(&client, (from, to), digest, Some(tag), run).await?;
    Ok(copied)
}

/// What [`copy`] would move, read without writing: the blobs `to` lacks and their bytes, the
/// blobs it has, the manifests it would write.
pub async fn survey(from: &End<'_>, to: &End<'_>, digest: &str) -> Result<Copied, CopyError> {
    let client = client([from, to]).await;
    let mut copied = Copied::default();
    let run = Run {
        dry: true,
        copied: &mut copied,
    };
    copy_manifest(&client, (from, to), digest, None, run).await?;
    Ok(copied)
}

/// A copy, or only its survey (`dry`), and what it moved.
struct Run<'a> {
    dry: bool,
    copied: &'a mut Copied,
}

/// One manifest, what it names first: an index's manifests, or an image's config and layers.
async fn copy_manifest(
    client: &Client,
    (from, to): (&End<'_>, &End<'_>),
    digest: &str,
    tag: Option<&str>,
    run: Run<'_>,
) -> Result<(), CopyError> {
    let Run { dry, copied } = run;
    let source = from.at(digest);
    let (bytes, _) = client
        .pull_manifest_raw(&source, &basic(from.login), &MANIFESTS)
        .await
        .map_err(registry(format!("reading `{source}`")))?;
    if format!("sha256:{:x}", Sha256::digest(&bytes)) != digest {
        return Err(CopyError::Digest {
            reference: source.to_string(),
            digest: digest.to_owned(),
        });
    }
    let manifest: Value = serde_json::from_slice(&bytes).map_err(|e| CopyError::Manifest {
        reference: source.to_string(),
        reason: e.to_string(),
    })?;
    let media_type = media_type(&manifest);
    if let Some(children) = manifest.get("manifests").and_then(Value::as_array) {
        for child in children.iter().filter_map(descriptor) {
            let run = Run {
                dry,
                copied: &mut *copied,
            };
            Box::pin(copy_manifest(client, (from, to), child.0, None, run)).await?;
        }
    } else {
        let config = manifest.get("config").and_then(descriptor);
        let layers = manifest.get("layers").and_then(Value::as_array);
        let blobs = config
            .into_iter()
            .chain(layers.into_iter().flatten().filter_map(descriptor));
        for (blob, size) in blobs {
            let run = Run {
                dry,
                copied: &mut *copied,
            };
            copy_blob(client, (from, to), (blob, size), run).await?;
        }
    }
    if dry {
        copied.manifests += 1;
        return Ok(());
    }
    let (host, name) = to.split();
    let target = match tag {
        Some(tag) => Reference::with_tag(host, name, tag.to_owned()),
        None => Reference::with_digest(host, name, digest.to_owned()),
    };
    let content_type = media_type.parse().map_err(|_| CopyError::Manifest {
        reference: source.to_string(),
        reason: format!("media type `{media_type}`"),
    })?;
    client
        .push_manifest_raw(&target, bytes, content_type)
        .await
        .map_err(registry(format!("writing the manifest `{target}`")))?;
    copied.manifests += 1;
    Ok(())
}

/// One blob, unless the target has it.
async fn copy_blob(
    client: &Client,
    (from, to): (&End<'_>, &End<'_>),
    (digest, size): (&str, u64),
    run: Run<'_>,
) -> Result<(), CopyError> {
    let Run { dry, copied } = run;
    let target = to.at(digest);
    let present = client
        .blob_exists(&target, digest)
        .await
        .map_err(registry(format!(
            "looking for blob `{digest}` in `{}`",
            to.repository
        )))?;
    if present {
        copied.blobs_present += 1;
        return Ok(());
    }
    if dry {
        copied.blobs_copied += 1;
        copied.bytes_copied += size;
        return Ok(());
    }
    let source = from.at(digest);
    let stream = client
        .pull_blob_stream(&source, digest)
        .await
        .map_err(registry(format!(
            "reading blob `{digest}` of `{}`",
            from.repository
        )))?;
    let stream = stream.stream.map_err(OciDistributionError::from);
    client
        .push_blob_stream(&target, stream, digest, Some(size))
        .await
        .map_err(registry(format!(
            "writing blob `{digest}` to `{}`",
            to.repository
        )))?;
    copied.blobs_copied += 1;
    copied.bytes_copied += size;
    Ok(())
}

/// A descriptor's digest and size.
fn descriptor(value: &Value) -> Option<(&str, u64)> {
    Some((value.get("digest")?.as_str()?, value.get("size")?.as_u64()?))
}

/// The manifest's media type, as it says, else as its shape says.
fn media_type(manifest: &Value) -> String {
    match manifest.get("mediaType").and_then(Value::as_str) {
        Some(media_type) => media_type.to_owned(),
        None if manifest.get("manifests").is_some() => MANIFESTS[3].to_owned(),
        None => MANIFESTS[2].to_owned(),
    }
}

fn basic(login: &RegistryLogin) -> RegistryAuth {
    RegistryAuth::Basic(login.username.clone(), login.password.clone())
}

fn registry(what: String) -> impl FnOnce(OciDistributionError) -> CopyError {
    move |source| CopyError::Registry { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_names_its_type_or_its_shape_does() {
        let rows = [
            (
                r#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#,
                MANIFESTS[0],
            ),
            (r#"{"manifests":[]}"#, MANIFESTS[3]),
            (r#"{"layers":[]}"#, MANIFESTS[2]),
        ];
        for (text, expected) in rows {
            let manifest: Value = serde_json::from_str(text).unwrap();
            assert_eq!(media_type(&manifest), expected, "{text}");
        }
    }
}
