//! Images that come from another environment: the promotion guard (`requires`), which asks the
//! environment that must test an image first whether a deploy of it succeeded there
//! ([`decide`]), before anything is written; and `promote_from`, which brings that very image
//! here by digest, copied into this environment's repository ([`copy`]) or referenced where it
//! is.

pub mod copy;
pub mod decide;

use aws_config::SdkConfig;
use aws_types::region::Region;

use crate::aws::ecr::{self, RegistryLogin, Repository};
use crate::error::Error;
use crate::report::with_heartbeat;
use crate::settings::{Promotion, Upstream};
use crate::state::Lock;
use crate::state::images::{self, Tested};
use crate::state::{self, Place, Store};
use crate::steps::{Ledger, Step};
use crate::text::{short_duration, short_sha};
use copy::Copied;
use decide::Verdict;
use serde::Serialize;
use std::time::Duration;

/// How the guard let the image through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passed {
    /// `upstream`'s deploy that succeeded with it.
    Tested(Tested),
    /// Untested, and `--force` deploys it anyway: the warning to give.
    Forced(String),
}

/// What the output says of an image `upstream` tested: "same image as `stg` deploy `…` (tested
/// 2h ago, commit 0123456)".
pub fn same_image(upstream: &str, tested: &Tested) -> String {
    let ago = Duration::from_secs(state::now().saturating_sub(tested.at));
    format!(
        "same image as `{upstream}` deploy `{}` (tested {} ago, commit {})",
        tested.deploy_id,
        short_duration(ago),
        short_sha(&tested.commit)
    )
}

/// `requires`: the deploy of image `tag` that succeeded in `upstream`, read from its store (in
/// its region; its default bucket named with `account`, this deploy's, when known). Without
/// one the deploy is refused unless `force`.
pub async fn guard(
    config: &SdkConfig,
    (env, upstream): (&str, &Upstream),
    account: Option<&str>,
    tag: &str,
    force: bool,
) -> Result<Passed, Error> {
    let config = config
        .to_builder()
        .region(Region::new(upstream.region.clone()))
        .build();
    let place = Place {
        state: &upstream.state,
        region: &upstream.region,
        env: &upstream.env,
    };
    // The upstream's own account names its default bucket, when berth.toml says it.
    let account = upstream.account.as_deref().or(account);
    let store = Store::locate_in(&config, place, account).await?;
    let verdict = if store.exists().await? {
        decide::judge(&upstream.env, tag, images::find(&store, tag).await?)
    } else {
        Verdict::Untested(format!(
            "`{}`'s state bucket (`{}`) does not exist, so no deploy of it is recorded (when `{}` lives in another account, set its `account` or its `[state] bucket`)",
            upstream.env,
            store.url(""),
            upstream.env
        ))
    };
    match verdict {
        Verdict::Tested(tested) => Ok(Passed::Tested(tested)),
        Verdict::Untested(missing) if force => Ok(Passed::Forced(format!(
            "{missing}: deploying it to `{env}` untested (`--force`)"
        ))),
        Verdict::Untested(missing) => Err(Error::Untested {
            env: env.to_owned(),
            requires: upstream.env.clone(),
            missing,
        }),
    }
}

/// The image `tested` names: its repository (`<registry>/<name>`) and digest.
pub fn source(upstream: &str, tested: &Tested) -> Result<(String, String), Error> {
    match tested.uri.split_once('@') {
        Some((repository, digest)) if digest == tested.digest => {
            Ok((repository.to_owned(), digest.to_owned()))
        }
        _ => Err(Error::Mismatch {
            problem: format!(
                "`{upstream}`'s entry for image `{}` does not say where the image is",
                tested.tag
            ),
            hint: format!(
                "deploy it to `{upstream}` again with this berth (its index then names the repository), or pass `--force` to build it here"
            ),
        }),
    }
}

/// This account's ECR login for the source's registry, from ECR in the source's region.
pub async fn source_login(
    config: &SdkConfig,
    region: &str,
    repository: &str,
) -> Result<RegistryLogin, Error> {
    let config = config
        .to_builder()
        .region(Region::new(region.to_owned()))
        .build();
    let host = repository.split('/').next().unwrap_or_default();
    ecr::login_to(&crate::aws::ecr_client(&config), host).await
}

/// `promotion = "reference"`: this account must be allowed to pull the source's image, which
/// the revisions will name. Checked with the pull a task would make, before any change.
pub async fn check_reference(
    (config, upstream): (&SdkConfig, &Upstream),
    tested: &Tested,
    env: &str,
) -> Result<(), Error> {
    let (repository, digest) = source(&upstream.env, tested)?;
    let login = source_login(config, &upstream.region, &repository).await?;
    let from = copy::End {
        repository: &repository,
        login: &login,
    };
    match copy::readable(&from, &digest).await {
        Ok(()) => Ok(()),
        Err(error) if error.is_refusal() => Err(Error::Mismatch {
            problem: format!(
                "`{env}` may not pull `{repository}@{digest}`: its registry refused this account: {}",
                error.registry_words()
            ),
            hint: format!(
                "give `{repository}` a repository policy that allows this account `ecr:BatchGetImage`, `ecr:GetDownloadUrlForLayer` and `ecr:BatchCheckLayerAvailability` (docs/configuration.md, `promote_from`), or set `promotion = \"copy\"`"
            ),
        }),
        Err(error) => Err(failed(error)),
    }
}

/// `promote_from`: what the promotion needs, checked before any change: where the tested image
/// is, and for `promotion = "reference"` that this account may pull it.
pub async fn ready(
    (config, upstream): (&SdkConfig, &Upstream),
    promotion: Option<Promotion>,
    tested: &Tested,
    env: &str,
) -> Result<(), Error> {
    match promotion {
        None => Ok(()),
        Some(Promotion::Copy) => source(&upstream.env, tested).map(|_| ()),
        Some(Promotion::Reference) => check_reference((config, upstream), tested, env).await,
    }
}

/// What a copy of `tested`'s image into `repository` would move: `None` when ECR has it there.
pub async fn survey(
    (config, upstream): (&SdkConfig, &Upstream),
    (ecr_client, repository): (&aws_sdk_ecr::Client, &Repository),
    (tested, looked): (&Tested, Option<Option<String>>),
) -> Result<Option<Copied>, Error> {
    let (source_repository, digest) = source(&upstream.env, tested)?;
    let held = in_ecr((ecr_client, repository), &tested.tag, looked).await?;
    if held.as_deref() == Some(digest.as_str()) {
        return Ok(None);
    }
    let logins = Logins::of(
        (config, upstream),
        (ecr_client, repository),
        &source_repository,
    )
    .await?;
    let (from, to) = logins.ends(&source_repository, repository);
    copy::survey(&from, &to, &digest)
        .await
        .map(Some)
        .map_err(failed)
}

/// What ECR holds for `tag` in `repository`: `looked`, when it was looked up already.
async fn in_ecr(
    (ecr_client, repository): (&aws_sdk_ecr::Client, &Repository),
    tag: &str,
    looked: Option<Option<String>>,
) -> Result<Option<String>, Error> {
    match looked {
        Some(held) => Ok(held),
        None => ecr::digest_of(ecr_client, repository, tag).await,
    }
}

/// This account's logins for both ends of a copy into `repository`: the source's registry,
/// from ECR in the source's region, and this environment's own.
struct Logins {
    source: RegistryLogin,
    target: RegistryLogin,
}

impl Logins {
    async fn of(
        (config, upstream): (&SdkConfig, &Upstream),
        (ecr_client, repository): (&aws_sdk_ecr::Client, &Repository),
        source_repository: &str,
    ) -> Result<Self, Error> {
        Ok(Self {
            source: source_login(config, &upstream.region, source_repository).await?,
            target: ecr::login(ecr_client, repository).await?,
        })
    }

    fn ends<'a>(
        &'a self,
        source_repository: &'a str,
        repository: &'a Repository,
    ) -> (copy::End<'a>, copy::End<'a>) {
        let from = copy::End {
            repository: source_repository,
            login: &self.source,
        };
        let to = copy::End {
            repository: &repository.uri,
            login: &self.target,
        };
        (from, to)
    }
}

/// A copy that failed, as the promote step's error.
fn failed(error: copy::CopyError) -> Error {
    Error::Image {
        step: "promote",
        source: Box::new(error),
    }
}

/// What the promote step did.
#[derive(Debug, Clone, Serialize)]
pub struct Promoted {
    /// The environment and the image it came from, pinned.
    pub from: String,
    pub source: String,
    /// `copy` or `reference`.
    pub promotion: Promotion,
    /// What the copy moved; `None` when nothing was copied (a reference, or the image was here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied: Option<Copied>,
}

/// `promotion = "copy"`: the image `tested` names, copied by digest into `repository` under
/// `tag` unless ECR has it there already. The digest ECR holds for the tag afterwards.
pub async fn run(
    (config, upstream): (&SdkConfig, &Upstream),
    (ecr_client, repository): (&aws_sdk_ecr::Client, &Repository),
    (tested, looked): (&Tested, Option<Option<String>>),
    lock: &Lock,
    ledger: &mut Ledger<'_>,
) -> Result<Promoted, Error> {
    let (source_repository, digest) = source(&upstream.env, tested)?;
    let mut promoted = Promoted {
        from: upstream.env.clone(),
        source: tested.uri.clone(),
        promotion: Promotion::Copy,
        copied: None,
    };
    let tag = &tested.tag;
    let held = in_ecr((ecr_client, repository), tag, looked).await?;
    if held.as_deref() == Some(digest.as_str()) {
        ledger.skip(
            Step::Promote,
            format!(
                "`{}:{}` is in ECR with `{}`'s digest",
                repository.name,
                short(tag),
                upstream.env
            ),
        );
        return Ok(promoted);
    }
    ledger.start(Step::Promote);
    lock.check()?;
    let logins = Logins::of(
        (config, upstream),
        (ecr_client, repository),
        &source_repository,
    )
    .await?;
    let (from, to) = logins.ends(&source_repository, repository);
    ledger.reporter.info(&format!(
        "copying `{source_repository}@{digest}` to `{}:{}`",
        repository.name,
        short(tag)
    ));
    let copied = with_heartbeat(
        copy::copy(&from, &to, &digest, tag),
        ledger.reporter,
        "promote",
        Duration::from_secs(30),
    )
    .await
    .map_err(failed)?;
    let landed = ecr::digest_of(ecr_client, repository, tag).await?;
    if landed.as_deref() != Some(digest.as_str()) {
        return Err(Error::Image {
            step: "promote",
            source: format!(
                "the copy ended but ECR holds {} for `{}:{tag}`, not `{digest}`",
                landed.as_deref().unwrap_or("nothing"),
                repository.name
            )
            .into(),
        });
    }
    ledger.done(format!(
        "{} blobs copied ({} bytes), {} there already, {} manifests",
        copied.blobs_copied, copied.bytes_copied, copied.blobs_present, copied.manifests
    ));
    promoted.copied = Some(copied);
    Ok(promoted)
}

fn short(tag: &str) -> &str {
    &tag[..tag.len().min(17)]
}
