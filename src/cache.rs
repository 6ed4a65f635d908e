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

use std::collections::{BTreeSet, HashMap};

use aws_sdk_ecr::Client;
use aws_sdk_ecr::types::{ImageIdentifier, TagStatus};
use bollard::auth::DockerCredentials;
use serde::Serialize;

use crate::aws::failed;
use crate::build::{CacheSources, Pulled, StepCounts};
use crate::dockerfile::Stages;
use crate::ecr::{self, RegistryLogin, Repository};
use crate::error::Error;
use crate::settings::Settings;
use crate::text::code_list;

/// Every cache image's tag starts so; such an image is never a deploy's image.
pub const TAG_PREFIX: &str = "berth-cache-";

/// The tag of `stage`'s cache image for `env`.
pub fn stage_tag(env: &str, stage: &str) -> String {
    format!("{TAG_PREFIX}{env}-{}", stage.to_ascii_lowercase())
}

/// A stage kept as its own cache image.
#[derive(Debug, Clone)]
pub struct CacheStage {
    /// The stage's name in the Dockerfile (its build target).
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
    /// Stages no cache covers (unnamed ones cannot be built alone), which rebuild on an empty
    /// engine whenever a step after them changes.
    pub uncovered: Vec<String>,
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

/// Finds the cache sources of a build of `dockerfile` for `settings.env`. `running` is the image
/// the first service runs now, if it is ours; `stage_images` is false for the classic builder,
/// which reuses no stage image's cache metadata.
pub async fn plan(
    ecr_client: &Client,
    repository: &Repository,
    settings: &Settings,
    dockerfile: &str,
    running: Option<(&str, &str)>,
    login: &RegistryLogin,
    stage_images: bool,
) -> Result<Plan, Error> {
    let mut plan = Plan::default();
    if let Some((image, service)) = running {
        plan.sources.images.push(image.to_owned());
        plan.described
            .push(format!("`{}` (the image `{service}` runs)", short(image)));
    } else if let Some(tag) = &settings.env_tag
        && let Some(digest) = ecr::digest_of(ecr_client, repository, tag).await?
    {
        plan.sources.images.push(repository.pinned(&digest));
        plan.described
            .push(format!("`{}:{tag}` (`env_tag`)", repository.name));
    } else if let Some(digest) = newest_image(ecr_client, repository).await? {
        plan.sources.images.push(repository.pinned(&digest));
        plan.described.push(format!(
            "`{}` (the newest image of `{}`)",
            short(&repository.pinned(&digest)),
            repository.name
        ));
    }

    let stages = Stages::parse(dockerfile);
    let target = settings.build.target.as_deref();
    let in_image = stages
        .index_of(target)
        .map(|index| stages.lineage_names(index))
        .unwrap_or_default();
    for index in stages.outside_image(target) {
        let Some(name) = stages.0[index].name.clone().filter(|_| stage_images) else {
            // Without its own cache image the stage rebuilds, and so do those it is built from.
            for label in stages.lineage_names(index) {
                if !in_image.contains(&label) && !plan.uncovered.contains(&label) {
                    plan.uncovered.push(label);
                }
            }
            continue;
        };
        let tag = stage_tag(&settings.env, &name);
        let exists = match ecr::digest_of(ecr_client, repository, &tag).await? {
            Some(digest) => {
                plan.sources.images.push(repository.pinned(&digest));
                plan.described
                    .push(format!("`{}:{tag}` (stage `{name}`)", repository.name));
                true
            }
            None => false,
        };
        plan.stages.push(CacheStage {
            name,
            lineage: stages.lineage_names(index),
            tag,
            exists,
        });
    }

    for image in &settings.build.cache_from {
        if !plan.sources.images.contains(image) {
            plan.sources.images.push(image.clone());
            plan.described
                .push(format!("`{image}` (`build.cache_from`)"));
        }
    }
    plan.sources.credentials = HashMap::from([(login.host.clone(), credentials(login))]);
    plan.sources.layer_sizes = layer_sizes(ecr_client, repository, &plan.sources.images).await;
    Ok(plan)
}

/// The stage images to build and push after the image: those not in ECR yet, and those with a
/// step that ran (their cache is new).
pub fn stale<'a>(plan: &'a Plan, ran_stages: &BTreeSet<String>) -> Vec<&'a CacheStage> {
    plan.stages
        .iter()
        .filter(|stage| !stage.exists || stage.lineage.iter().any(|s| ran_stages.contains(s)))
        .collect()
}

/// Registry credentials for the engine, from ECR's login.
pub fn credentials(login: &RegistryLogin) -> DockerCredentials {
    DockerCredentials {
        username: Some(login.username.clone()),
        password: Some(login.password.clone()),
        serveraddress: Some(login.host.clone()),
        ..Default::default()
    }
}

/// A line for the build step: where its cache comes from.
pub fn narrate(plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    if plan.described.is_empty() {
        lines.push("cache: no earlier image to take cached layers from".to_owned());
    } else {
        lines.push(format!("cache from {}", plan.described.join(", ")));
    }
    if !plan.uncovered.is_empty() {
        lines.push(format!(
            "cache: no cache image covers {} {}, so {} on an empty engine{}",
            if plan.uncovered.len() == 1 {
                "stage"
            } else {
                "stages"
            },
            code_list(&plan.uncovered),
            if plan.uncovered.len() == 1 {
                "it rebuilds"
            } else {
                "they rebuild"
            },
            if plan.uncovered.iter().all(|s| s.starts_with("stage-")) {
                " (name it: `FROM … AS name`)"
            } else {
                " (BuildKit keeps a cache image of each named stage: `builder = \"auto\"`)"
            }
        ));
    }
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
mod tests {
    use super::*;

    fn stage(name: &str, lineage: &[&str], exists: bool) -> CacheStage {
        CacheStage {
            name: name.to_owned(),
            lineage: lineage.iter().map(|s| (*s).to_owned()).collect(),
            tag: stage_tag("stg", name),
            exists,
        }
    }

    #[test]
    fn a_stage_image_is_rebuilt_when_missing_or_when_a_step_of_its_lineage_ran() {
        let plan = Plan {
            stages: vec![
                stage("assets", &["assets", "gems", "base"], true),
                stage("docs", &["docs", "base"], false),
                stage("tools", &["tools"], true),
            ],
            ..Plan::default()
        };
        let rows: [(&str, &[&str], &[&str]); 4] = [
            ("nothing ran: only the missing one", &[], &["docs"]),
            ("the final stage ran", &["release"], &["docs"]),
            (
                "a gems step ran: assets is built from gems",
                &["gems"],
                &["assets", "docs"],
            ),
            (
                "base ran: every stage built from it",
                &["base"],
                &["assets", "docs"],
            ),
        ];
        for (case, ran, want) in rows {
            let ran: BTreeSet<String> = ran.iter().map(|s| (*s).to_owned()).collect();
            let got: Vec<&str> = stale(&plan, &ran).iter().map(|s| s.name.as_str()).collect();
            assert_eq!(got, want, "{case}");
        }
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
