//! ECR: the repository, the image digest, registry credentials and the environment tag.

use aws_sdk_ecr::Client;
use aws_sdk_ecr::types::ImageIdentifier;
use base64::Engine;
use serde::Serialize;

use crate::aws::failed;
use crate::error::Error;
use crate::settings::Settings;

/// Our repository as ECR names it.
#[derive(Debug, Clone)]
pub struct Repository {
    pub name: String,
    /// `<account>.dkr.ecr.<region>.amazonaws.com/<name>`, as ECR names it: where the image is
    /// pushed, and how task definitions name it.
    pub uri: String,
}

impl Repository {
    pub fn host(&self) -> &str {
        self.uri.split('/').next().unwrap_or_default()
    }

    /// The image pinned by digest, as a task definition should name it.
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}@{digest}", self.uri)
    }
}

/// The image a deploy runs, as ECR knows it.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// `repo@sha256:…`, as the task definitions name it.
    pub uri: String,
}

/// Credentials for `docker push`, decoded from `GetAuthorizationToken`. Never printed.
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
    /// The registry they are for (`proxyEndpoint` without its scheme): they go to no other host.
    pub host: String,
}

impl RegistryLogin {
    /// The login as the engine takes it, for a push, a pull or a build.
    pub fn docker_credentials(&self) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(self.host.clone()),
            ..Default::default()
        }
    }
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("username", &self.username)
            .field("password", &"***")
            .field("host", &self.host)
            .finish()
    }
}

/// Finds the repository; creates it only when `create_repository` is set.
pub async fn repository(ecr: &Client, settings: &Settings) -> Result<Repository, Error> {
    let name = &settings.repository;
    let described = ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await;
    let uri = match described {
        Ok(output) => output
            .repositories()
            .first()
            .and_then(|repo| repo.repository_uri())
            .map(str::to_owned),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_repository_not_found_exception()) =>
        {
            if !settings.create_repository {
                return Err(Error::Mismatch {
                    problem: format!(
                        "ECR repository `{name}` does not exist in `{}`",
                        settings.region
                    ),
                    hint: "create it, or set `create_repository = true` in berth.toml".to_owned(),
                });
            }
            let created = ecr
                .create_repository()
                .repository_name(name)
                .send()
                .await
                .map_err(|e| failed(format!("creating ECR repository `{name}`"), e))?;
            created
                .repository()
                .and_then(|repo| repo.repository_uri())
                .map(str::to_owned)
        }
        Err(error) => return Err(failed(format!("looking up ECR repository `{name}`"), error)),
    };
    let uri = uri.ok_or_else(|| Error::Mismatch {
        problem: format!("ECR did not say where repository `{name}` lives"),
        hint: "check the repository in the ECR console".to_owned(),
    })?;
    Ok(Repository {
        name: name.clone(),
        uri,
    })
}

/// The digest ECR holds for `tag`, if the tag is there.
pub async fn digest_of(
    ecr: &Client,
    repo: &Repository,
    tag: &str,
) -> Result<Option<String>, Error> {
    let id = ImageIdentifier::builder().image_tag(tag).build();
    find(ecr, repo, id, &format!("tag `{tag}`")).await
}

/// `digest` itself, if ECR still has that image in `repo`.
pub async fn has_digest(
    ecr: &Client,
    repo: &Repository,
    digest: &str,
) -> Result<Option<String>, Error> {
    let id = ImageIdentifier::builder().image_digest(digest).build();
    find(ecr, repo, id, &format!("image `{digest}`")).await
}

/// The digest of the image `id` names, if ECR has it; `what` names it in an error.
async fn find(
    ecr: &Client,
    repo: &Repository,
    id: ImageIdentifier,
    what: &str,
) -> Result<Option<String>, Error> {
    let described = ecr
        .describe_images()
        .repository_name(&repo.name)
        .image_ids(id)
        .send()
        .await;
    match described {
        Ok(output) => Ok(output
            .image_details()
            .first()
            .and_then(|image| image.image_digest())
            .map(str::to_owned)),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_image_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(error) => Err(failed(
            format!("looking up {what} in ECR repository `{}`", repo.name),
            error,
        )),
    }
}

/// Registry credentials for a push to `repo`, from ECR. They are for the registry that ECR's
/// `proxyEndpoint` names; a repository elsewhere gets none.
pub async fn login(ecr: &Client, repo: &Repository) -> Result<RegistryLogin, Error> {
    let login = token(ecr).await?;
    if login.host != repo.host() {
        return Err(Error::Mismatch {
            problem: format!(
                "ECR's credentials are for `{}`, but repository `{}` is at `{}`; berth sends ECR credentials to no other host",
                login.host,
                repo.name,
                repo.host()
            ),
            hint:
                "check `AWS_ENDPOINT_URL` and the region: ECR must name the registry it authorizes"
                    .to_owned(),
        });
    }
    Ok(login)
}

/// The caller's ECR login from `ecr`'s region, for another account's registry `host` there: a
/// token stands for the caller, and that registry takes it as far as its repository's policy
/// allows. `host` must come from ECR itself (a deploy record names the registry ECR gave the
/// deploy that pushed there).
pub async fn login_to(ecr: &Client, host: &str) -> Result<RegistryLogin, Error> {
    Ok(RegistryLogin {
        host: host.to_owned(),
        ..token(ecr).await?
    })
}

/// The caller's ECR login, for the registry ECR names (`proxyEndpoint`).
async fn token(ecr: &Client) -> Result<RegistryLogin, Error> {
    let output = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| failed("getting an ECR authorization token", e))?;
    let data = output.authorization_data().first();
    let token = data
        .and_then(|data| data.authorization_token())
        .unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default();
    let (username, password) = decoded.split_once(':').ok_or_else(|| Error::Mismatch {
        problem: "ECR returned an authorization token berth cannot read".to_owned(),
        hint: "check the credentials' permission `ecr:GetAuthorizationToken`".to_owned(),
    })?;
    let endpoint = data
        .and_then(|data| data.proxy_endpoint())
        .unwrap_or_default();
    let host = registry_host(endpoint);
    Ok(RegistryLogin {
        username: username.to_owned(),
        password: password.to_owned(),
        host: host.to_owned(),
    })
}

/// `123.dkr.ecr.us-east-1.amazonaws.com` of `https://123.dkr.ecr.us-east-1.amazonaws.com/`.
fn registry_host(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.split('/').next().unwrap_or_default()
}

/// Points `tag` (such as `stg-latest`) at the image with `digest`, as `aws ecr put-image` does.
pub async fn move_tag(
    ecr: &Client,
    repo: &Repository,
    digest: &str,
    tag: &str,
) -> Result<bool, Error> {
    if digest_of(ecr, repo, tag).await?.as_deref() == Some(digest) {
        return Ok(false);
    }
    let got = ecr
        .batch_get_image()
        .repository_name(&repo.name)
        .image_ids(ImageIdentifier::builder().image_digest(digest).build())
        .send()
        .await
        .map_err(|e| failed(format!("reading image `{digest}`"), e))?;
    let image = got.images().first().ok_or_else(|| Error::Mismatch {
        problem: format!("image `{digest}` is not in ECR repository `{}`", repo.name),
        hint: "rerun the deploy; the image will be pushed again".to_owned(),
    })?;
    let mut put = ecr
        .put_image()
        .repository_name(&repo.name)
        .image_tag(tag)
        .image_manifest(image.image_manifest().unwrap_or_default());
    if let Some(media_type) = image.image_manifest_media_type() {
        put = put.image_manifest_media_type(media_type);
    }
    match put.send().await {
        Ok(_) => Ok(true),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_image_already_exists_exception()) =>
        {
            Ok(false)
        }
        Err(error) => Err(failed(format!("tagging the image `{tag}`"), error)),
    }
}

#[cfg(test)]
mod tests {
    use super::registry_host;

    #[test]
    fn the_registry_host_is_the_proxy_endpoint_without_scheme_or_path() {
        for (endpoint, host) in [
            (
                "https://123.dkr.ecr.us-east-1.amazonaws.com",
                "123.dkr.ecr.us-east-1.amazonaws.com",
            ),
            (
                "https://123.dkr.ecr.us-east-1.amazonaws.com/",
                "123.dkr.ecr.us-east-1.amazonaws.com",
            ),
            ("http://127.0.0.1:5055", "127.0.0.1:5055"),
            ("127.0.0.1:5055", "127.0.0.1:5055"),
        ] {
            assert_eq!(registry_host(endpoint), host, "{endpoint}");
        }
    }
}
