//! The one place that connects to the Docker engine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;

use crate::env_vars;
use crate::error::Error;

/// Docker's own default: the local engine's Unix socket.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long the engine gets to answer its first request before we call it unreachable.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the engine at `DOCKER_HOST` (default: the local Unix socket), over TLS when
/// `DOCKER_TLS_VERIFY` is set, and agrees on an API version with it, so an unreachable engine
/// fails here rather than halfway through a build.
pub async fn connect() -> Result<Docker, Error> {
    let (host, tls) = address()?;
    connect_to(host, tls).await
}

/// Checks, without connecting, that the certificates `DOCKER_TLS_VERIFY` asks for are there: a
/// deploy checks it before its first AWS call, so that it cannot fail on it halfway.
pub fn check_tls() -> Result<(), Error> {
    address().map(|_| ())
}

/// The engine's address, and its certificates when it is reached over TLS.
fn address() -> Result<(String, Option<Certificates>), Error> {
    let host = env_vars::var(env_vars::DOCKER_HOST).unwrap_or_else(|| DEFAULT_HOST.to_owned());
    let tls = match env_vars::var(env_vars::DOCKER_TLS_VERIFY) {
        Some(_) if host.starts_with("tcp://") || host.starts_with("https://") => {
            Some(Certificates::find()?)
        }
        _ => None,
    };
    Ok((host, tls))
}

/// The files `DOCKER_CERT_PATH` must hold, as the Docker CLI names them.
#[derive(Debug)]
struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certificates {
    /// `DOCKER_CERT_PATH` (default `~/.docker`), with every file there.
    fn find() -> Result<Self, Error> {
        let folder = match env_vars::var(env_vars::DOCKER_CERT_PATH) {
            Some(path) => PathBuf::from(path),
            None => std::env::home_dir().unwrap_or_default().join(".docker"),
        };
        Self::in_folder(&folder)
    }

    fn in_folder(folder: &Path) -> Result<Self, Error> {
        let certificates = Self {
            ca: folder.join("ca.pem"),
            cert: folder.join("cert.pem"),
            key: folder.join("key.pem"),
        };
        let missing: Vec<String> = [&certificates.ca, &certificates.cert, &certificates.key]
            .into_iter()
            .filter(|path| !path.is_file())
            .map(|path| format!("`{}`", path.display()))
            .collect();
        match missing.as_slice() {
            [] => Ok(certificates),
            [one] => Err(Self::missing(&format!("{one} is"))),
            many => Err(Self::missing(&format!("{} are", many.join(", ")))),
        }
    }

    fn missing(what: &str) -> Error {
        Error::DockerTls {
            problem: format!(
                "`{}` is set, but {what} missing",
                env_vars::DOCKER_TLS_VERIFY
            ),
        }
    }
}

async fn connect_to(host: String, tls: Option<Certificates>) -> Result<Docker, Error> {
    let over_tls = tls.is_some();
    let unreachable = |source| Error::DockerUnreachable {
        host: host.clone(),
        tls: over_tls,
        source,
    };
    let docker = match &tls {
        Some(files) => {
            // bollard's rustls asks for the process-wide provider; a second install is a no-op.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            Docker::connect_with_ssl(
                &host,
                &files.key,
                &files.cert,
                &files.ca,
                REQUEST_TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            )
        }
        None => Docker::connect_with_host(&host),
    }
    .map_err(unreachable)?;
    let docker = tokio::time::timeout(HANDSHAKE_TIMEOUT, docker.negotiate_version())
        .await
        .unwrap_or(Err(bollard::errors::Error::RequestTimeoutError))
        .map_err(unreachable)?;
    tracing::debug!(%host, tls = over_tls, version = ?docker.client_version(), "connected to Docker");
    Ok(docker)
}

/// bollard's own default for one request: builds and pushes stream for longer, and are watched
/// by their own heartbeats.
const REQUEST_TIMEOUT_SECS: u64 = 120;

#[cfg(test)]
mod tests {
    use crate::error::{Error, ExitStatus};

    #[tokio::test]
    async fn a_missing_engine_is_an_environment_error_naming_the_host() {
        let host = "unix:///nonexistent/berth-test/docker.sock";
        let Err(error) = super::connect_to(host.to_owned(), None).await else {
            panic!("connected to {host}");
        };
        assert!(
            matches!(error, Error::DockerUnreachable { .. }),
            "{error:?}"
        );
        assert_eq!(error.exit_status(), ExitStatus::Environment);
        let rendered = crate::error::render(&error);
        assert!(rendered.starts_with(&format!(
            "error: cannot reach the Docker engine at `{host}`"
        )));
        assert!(
            rendered.contains("hint: start Docker, or set `DOCKER_HOST`"),
            "{rendered}"
        );
    }

    #[test]
    fn tls_without_its_certificates_is_an_environment_error_naming_them() {
        let folder = tempfile::tempdir().unwrap();
        fs_err::write(folder.path().join("ca.pem"), "").unwrap();
        let error = super::Certificates::in_folder(folder.path()).unwrap_err();
        assert_eq!(error.exit_status(), ExitStatus::Environment);
        let rendered = crate::error::render(&error);
        let cert = folder.path().join("cert.pem");
        let key = folder.path().join("key.pem");
        assert!(
            rendered.starts_with(&format!(
                "error: `DOCKER_TLS_VERIFY` is set, but `{}`, `{}` are missing",
                cert.display(),
                key.display()
            )),
            "{rendered}"
        );
        assert!(
            rendered.contains("hint: `DOCKER_CERT_PATH` must hold `ca.pem`"),
            "{rendered}"
        );
        fs_err::write(&cert, "").unwrap();
        fs_err::write(&key, "").unwrap();
        assert!(super::Certificates::in_folder(folder.path()).is_ok());
    }
}
