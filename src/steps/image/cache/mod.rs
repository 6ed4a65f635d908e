//! The build's layer cache on a fresh machine: which images in ECR the build may take cached
//! layers from, and the cache images berth keeps for the stages the image itself leaves out.
//!
//! # Where the cache comes from
//! 1. The previous image of the environment: the image the first service runs now (pinned by
//!    digest), else `env_tag`, else the newest image of the repository. Its cache metadata
//!    (BuildKit's inline cache, written by berth into every image it builds) covers the steps
//!    of the target stage and of the stages it is built `FROM`.
//! 2. One cache image per stage that the image only copies from (`COPY --from=assets …`),
//!    tagged `berth-cache-<env>-<stage>` in the same repository. The Engine API exports no other
//!    cache than the inline one (no `cache-to`, so no `mode=max` registry cache), so berth builds
//!    such a stage as its own image, with inline cache, and pushes it. It is rebuilt (from the
//!    engine's cache, so quickly) and pushed only when one of its steps ran.
//! 3. `[build] cache_from`, after those.
//!
//! Nothing here fails a deploy: a cache that cannot be read or written makes a slower build,
//! and says so.

mod decide;

use std::collections::HashMap;

use aws_sdk_ecr::Client;
use aws_sdk_ecr::types::{ImageIdentifier, TagStatus};
use serde::Serialize;

use crate::aws::ecr::{self, Repository};
use crate::aws::failed;
use crate::error::Error;
use crate::settings::is_tag;
use crate::steps::image::Setup;
use crate::steps::image::build::{CacheSources, Pulled, StepCounts};
use crate::steps::image::dockerfile::Stages;
use crate::text::code_list;
pub use decide::stale;

/// Every cache image's tag starts so; such an image is never a deploy's image.
pub const TAG_PREFIX: &str = "berth-cache-";

/// The tag of `stage`'s cache image for `env` (which [`is_tag`] checks before it is used).
pub fn stage_tag(env: &str, stage: &str) -> String {
    format!("{TAG_PREFIX}{env}-{}", stage.to_ascii_lowercase())
}

/// A stage kept as its own cache image.
#[derive(Debug, Clone)]
pub struct CacheStage {
    /// The stage's name, in lower case as BuildKit takes it (its build target).
    pub name: String,
    /// It and the stages it is built `FROM`, as BuildKit labels them.
    pub lineage: Vec<String>,
    /// `berth-cache-<env>-<stage>`.
    pub tag: String,
    /// ECR has the tag already.
    pub exists: bool,
}

/// What the build reads its cache from, and which stage images it keeps.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub sources: CacheSources,
    /// Where each source came from, for the narration and the record.
    pub described: Vec<String>,
    pub stages: Vec<CacheStage>,
    /// Lines for the build step: the stages that get no cache image, and why.
    pub notes: Vec<String>,
    /// What ECR would not answer: a source left out.
    pub warnings: Vec<String>,
}

/// The build's cache in `--output json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildReport {
    /// Images the build took cached layers from; empty with `[build] cache = false`.
    pub cache_from: Vec<String>,
    pub steps_cached: u32,
    pub steps_run: u32,
    /// Compressed bytes of cached layers pulled, and the seconds it took.
    pub pulled_bytes: u64,
    pub pulled_seconds: u64,
    /// Stage cache images pushed by this build.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_images: Vec<String>,
}

impl BuildReport {
    pub fn new(plan: Option<&Plan>, steps: StepCounts, pulled: Pulled) -> Self {
        Self {
            cache_from: plan
                .map(|plan| plan.sources.images.clone())
                .unwrap_or_default(),
            steps_cached: steps.cached,
            steps_run: steps.run,
            pulled_bytes: pulled.bytes,
            pulled_seconds: pulled.seconds,
            cache_images: Vec::new(),
        }
    }
}

/// Finds the cache sources of a build of `dockerfile` for the environment `setup.env`. `running` is the image
/// the first service runs now, if it is in our repository; `stage_images` is false for the
/// classic builder, which reuses no stage image's cache metadata. Never fails: what ECR would
/// not answer becomes a warning in [`Plan::warnings`] and one source fewer.
pub async fn plan(
    ecr_client: &Client,
    repository: &Repository,
    setup: Setup<'_>,
    dockerfile: &str,
    running: Option<(&str, &str)>,
    stage_images: bool,
) -> Plan {
    let mut plan = Plan::default();
    image_source(ecr_client, repository, setup, running, &mut plan).await;
    stage_sources(
        ecr_client,
        repository,
        setup,
        dockerfile,
        stage_images,
        &mut plan,
    )
    .await;
    for image in &setup.build.cache_from {
        if !plan.sources.images.contains(image) {
            plan.sources.images.push(image.clone());
            plan.described
                .push(format!("`{image}` (`build.cache_from`)"));
        }
    }
    plan.sources.layer_sizes = layer_sizes(ecr_client, repository, &plan.sources.images).await;
    plan
}

/// The first source: the image the first service runs, else the `env_tag`'s, else the
/// repository's newest image.
async fn image_source(
    ecr_client: &Client,
    repository: &Repository,
    setup: Setup<'_>,
    running: Option<(&str, &str)>,
    plan: &mut Plan,
) {
    let running = match running {
        Some((image, service)) => match in_repository(ecr_client, repository, image).await {
            Ok(Some(pinned)) => Some((pinned, service)),
            Ok(None) => None,
            Err(error) => {
                plan.warnings
                    .push(left_out(&format!("`{}`", short(image)), &error));
                None
            }
        },
        None => None,
    };
    if let Some((pinned, service)) = running {
        plan.described
            .push(format!("`{}` (the image `{service}` runs)", short(&pinned)));
        plan.sources.images.push(pinned);
    } else if let Some(digest) = match setup.env_tag {
        Some(tag) => ecr::digest_of(ecr_client, repository, tag)
            .await
            .unwrap_or_else(|error| {
                plan.warnings
                    .push(left_out(&format!("`env_tag` `{tag}`"), &error));
                None
            }),
        None => None,
    } {
        plan.sources.images.push(repository.pinned(&digest));
        plan.described.push(format!(
            "`{}:{}` (`env_tag`)",
            repository.name,
            setup.env_tag.unwrap_or_default()
        ));
    } else if let Some(digest) =
        newest_image(ecr_client, repository)
            .await
            .unwrap_or_else(|error| {
                plan.warnings
                    .push(left_out("the repository's newest image", &error));
                None
            })
    {
        plan.sources.images.push(repository.pinned(&digest));
        plan.described.push(format!(
            "`{}` (the newest image of `{}`)",
            short(&repository.pinned(&digest)),
            repository.name
        ));
    }
}

/// A cache image per stage the image leaves out, where one can be kept; a note for each that
/// cannot, naming what rebuilds on an empty engine.
async fn stage_sources(
    ecr_client: &Client,
    repository: &Repository,
    setup: Setup<'_>,
    dockerfile: &str,
    stage_images: bool,
    plan: &mut Plan,
) {
    let stages = Stages::parse(dockerfile);
    let target = setup.build.target.as_deref();
    let in_image = stages
        .index_of(target)
        .map(|index| stages.lineage_names(index))
        .unwrap_or_default();
    for index in stages.outside_image(target) {
        let label = stages.label(index);
        let tag = stage_tag(setup.env, &label);
        let why_not = no_cache_image(&stages, index, &tag, &setup.build.secret_args, stage_images);
        if let Some(why_not) = why_not {
            let rebuilt: Vec<String> = stages
                .lineage_names(index)
                .into_iter()
                .filter(|label| !in_image.contains(label))
                .collect();
            plan.notes.push(format!(
                "cache: no cache image of stage `{label}` ({why_not}): {} on an empty engine",
                match rebuilt.as_slice() {
                    [one] => format!("`{one}` rebuilds"),
                    many => format!("{} rebuild", code_list(many)),
                }
            ));
            continue;
        }
        let exists = match ecr::digest_of(ecr_client, repository, &tag).await {
            Ok(Some(digest)) => {
                plan.sources.images.push(repository.pinned(&digest));
                plan.described
                    .push(format!("`{}:{tag}` (stage `{label}`)", repository.name));
                true
            }
            Ok(None) => false,
            Err(error) => {
                plan.warnings.push(left_out(&format!("`{tag}`"), &error));
                false
            }
        };
        plan.stages.push(CacheStage {
            name: label,
            lineage: stages.lineage_names(index),
            tag,
            exists,
        });
    }
}

/// Why the stage at `index` gets no cache image of its own, if it does not.
fn no_cache_image(
    stages: &Stages,
    index: usize,
    tag: &str,
    secret_args: &[String],
    stage_images: bool,
) -> Option<String> {
    let secret = stages
        .lineage_args(index)
        .into_iter()
        .find(|arg| secret_args.iter().any(|secret| secret == arg));
    if !stage_images {
        Some("the classic builder keeps no cache of it".to_owned())
    } else if stages.0[index].name.is_none() {
        Some("it has no name to build it by (`FROM … AS name`)".to_owned())
    } else if let Some(secret) = secret {
        // Its image would carry the value in its history, in ECR for anyone who can pull.
        Some(format!(
            "it declares the secret build arg `{secret}`, whose value its image would carry"
        ))
    } else if !is_tag(tag) {
        Some(format!("`{tag}` is not a Docker tag"))
    } else {
        None
    }
}

fn left_out(what: &str, error: &Error) -> String {
    format!(
        "the build's cache leaves out {what}: {}",
        crate::text::with_causes(error)
    )
}

/// `image` pinned by digest, if it is in our repository and ECR still has it.
async fn in_repository(
    ecr_client: &Client,
    repository: &Repository,
    image: &str,
) -> Result<Option<String>, Error> {
    let found = if let Some(digest) = image.strip_prefix(&format!("{}@", repository.uri)) {
        ecr::has_digest(ecr_client, repository, digest).await?
    } else if let Some(tag) = image.strip_prefix(&format!("{}:", repository.uri)) {
        ecr::digest_of(ecr_client, repository, tag).await?
    } else {
        None
    };
    Ok(found.map(|digest| repository.pinned(&digest)))
}

/// Lines for the build step: where its cache comes from, and what no cache covers.
pub fn narrate(plan: &Plan) -> Vec<String> {
    let mut lines = vec![if plan.described.is_empty() {
        "cache: no earlier image to take cached layers from".to_owned()
    } else {
        format!("cache from {}", plan.described.join(", "))
    }];
    lines.extend(plan.notes.iter().cloned());
    lines
}

/// The newest image of the repository that is not a cache image, by digest.
async fn newest_image(
    ecr_client: &Client,
    repository: &Repository,
) -> Result<Option<String>, Error> {
    let mut pages = ecr_client
        .describe_images()
        .repository_name(&repository.name)
        .filter(
            aws_sdk_ecr::types::DescribeImagesFilter::builder()
                .tag_status(TagStatus::Tagged)
                .build(),
        )
        .into_paginator()
        .send();
    let mut newest: Option<(aws_sdk_ecr::primitives::DateTime, String)> = None;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            failed(
                format!("listing the images of ECR repository `{}`", repository.name),
                e,
            )
        })?;
        for image in page.image_details() {
            let release = image
                .image_tags()
                .iter()
                .any(|tag| !tag.starts_with(TAG_PREFIX));
            if let (true, Some(pushed), Some(digest)) =
                (release, image.image_pushed_at(), image.image_digest())
                && newest.as_ref().is_none_or(|(at, _)| pushed > at)
            {
                newest = Some((*pushed, digest.to_owned()));
            }
        }
    }
    Ok(newest.map(|(_, digest)| digest))
}

/// Compressed layer sizes of the repository's `images`, from their manifests; what a build that
/// reads a layer pulls. Images elsewhere, and manifests ECR will not give, add nothing.
async fn layer_sizes(
    ecr_client: &Client,
    repository: &Repository,
    images: &[String],
) -> HashMap<String, u64> {
    let ids: Vec<ImageIdentifier> = images
        .iter()
        .filter_map(|image| image.strip_prefix(&format!("{}@", repository.uri)))
        .map(|digest| ImageIdentifier::builder().image_digest(digest).build())
        .collect();
    if ids.is_empty() {
        return HashMap::new();
    }
    let got = ecr_client
        .batch_get_image()
        .repository_name(&repository.name)
        .set_image_ids(Some(ids))
        .send()
        .await;
    let mut sizes = HashMap::new();
    let Ok(got) = got else {
        return sizes;
    };
    for image in got.images() {
        let manifest: serde_json::Value =
            serde_json::from_str(image.image_manifest().unwrap_or_default()).unwrap_or_default();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            if let (Some(digest), Some(size)) = (layer["digest"].as_str(), layer["size"].as_u64()) {
                sizes.insert(digest.to_owned(), size);
            }
        }
    }
    sizes
}

/// `repo@sha256:0123456789ab`: enough of a digest to tell images apart.
fn short(image: &str) -> String {
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.split_once("@sha256:") {
        Some((repo, hex)) => format!("{repo}@sha256:{}", &hex[..hex.len().min(12)]),
        None => name.to_owned(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn stage(name: &str, lineage: &[&str], exists: bool) -> CacheStage {
        CacheStage {
            name: name.to_owned(),
            lineage: lineage.iter().map(|s| (*s).to_owned()).collect(),
            tag: stage_tag("stg", name),
            exists,
        }
    }

    #[test]
    fn a_stage_gets_no_cache_image_without_buildkit_a_name_a_tag_or_with_a_secret() {
        let stages = Stages::parse(
            "FROM base AS gems\nARG BUNDLE_TOKEN\nRUN bundle\nFROM gems AS assets\nRUN assets\n\
             FROM base\nRUN make\nFROM base AS release\nCOPY --from=assets / /\nCOPY --from=2 / /\n",
        );
        let secret = ["BUNDLE_TOKEN".to_owned()];
        let why = |index, tag, secrets: &[String], buildkit| {
            no_cache_image(&stages, index, tag, secrets, buildkit)
        };
        assert_eq!(why(1, "berth-cache-stg-assets", &[], true), None);
        assert_eq!(
            why(1, "berth-cache-stg-assets", &[], false).as_deref(),
            Some("the classic builder keeps no cache of it")
        );
        assert_eq!(
            why(2, "berth-cache-stg-stage-2", &[], true).as_deref(),
            Some("it has no name to build it by (`FROM … AS name`)")
        );
        assert_eq!(
            why(1, "berth-cache-stg-assets", &secret, true).as_deref(),
            Some(
                "it declares the secret build arg `BUNDLE_TOKEN`, whose value its image would carry"
            ),
            "a secret declared in the stage it is built from"
        );
        assert_eq!(
            why(1, "berth-cache-eu west-assets", &[], true).as_deref(),
            Some("`berth-cache-eu west-assets` is not a Docker tag")
        );
        assert!(!is_tag(&"a".repeat(129)));
        assert!(!is_tag("-a"));
    }

    #[test]
    fn the_narration_names_each_source_and_what_no_cache_covers() {
        let empty = Plan::default();
        assert_eq!(
            narrate(&empty),
            ["cache: no earlier image to take cached layers from"]
        );
        let plan = Plan {
            described: vec![
                "`app@sha256:0123` (the image `web` runs)".to_owned(),
                "`x:y` (`build.cache_from`)".to_owned(),
            ],
            notes: vec![
                "cache: no cache image of stage `assets` (…): `assets` rebuilds on an empty engine"
                    .to_owned(),
            ],
            ..Plan::default()
        };
        assert_eq!(
            narrate(&plan),
            [
                "cache from `app@sha256:0123` (the image `web` runs), `x:y` (`build.cache_from`)",
                "cache: no cache image of stage `assets` (…): `assets` rebuilds on an empty engine",
            ]
        );
    }

    #[test]
    fn stage_tags_are_per_environment_and_lower_case() {
        assert_eq!(stage_tag("stg", "Assets"), "berth-cache-stg-assets");
    }

    #[test]
    fn short_names_keep_the_repository_and_twelve_digits() {
        assert_eq!(
            short("127.0.0.1:5055/app@sha256:0123456789abcdef0123"),
            "app@sha256:0123456789ab"
        );
        assert_eq!(short("127.0.0.1:5055/app:v1"), "app:v1");
    }
}
