//! The one place that connects to the Docker engine.

use std::time::Duration;

use bollard::Docker;

use crate::env_vars;
use crate::error::Error;

/// Docker's own default: the local engine's Unix socket.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long the engine gets to answer its first request before we call it unreachable.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the engine at `DOCKER_HOST` (default: the local Unix socket) and agrees on an API
/// version with it, so an unreachable engine fails here rather than halfway through a build.
pub async fn connect() -> Result<Docker, Error> {
    let host = env_vars::var(env_vars::DOCKER_HOST).unwrap_or_else(|| DEFAULT_HOST.to_owned());
    connect_to(host).await
}

async fn connect_to(host: String) -> Result<Docker, Error> {
    let unreachable = |source| Error::DockerUnreachable {
        host: host.clone(),
        source,
    };
    let docker = Docker::connect_with_host(&host).map_err(unreachable)?;
    let docker = tokio::time::timeout(HANDSHAKE_TIMEOUT, docker.negotiate_version())
        .await
        .unwrap_or(Err(bollard::errors::Error::RequestTimeoutError))
        .map_err(unreachable)?;
    tracing::debug!(%host, version = ?docker.client_version(), "connected to Docker");
    Ok(docker)
}

#[cfg(test)]
mod tests {
    use crate::error::{Error, ExitStatus};

    #[tokio::test]
    async fn a_missing_engine_is_an_environment_error_naming_the_host() {
        let host = "unix:///nonexistent/berth-test/docker.sock";
        let Err(error) = super::connect_to(host.to_owned()).await else {
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
}
