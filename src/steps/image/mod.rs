//! The image step: the build context as Docker reads it ([`context`], [`dockerignore`],
//! [`dockerfile`]), the build ([`build`]) with its layer cache from ECR ([`cache`]), and the
//! push ([`push`]). Nothing is built when ECR has the tag already.

pub mod build;
pub mod cache;
pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod push;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;

use crate::aws::ecr::{self, Image, Repository};
use crate::error::Error;
use crate::release::Release;
use crate::report::{Reporter, with_heartbeat};
use crate::settings::{BuildSettings, Builder, Settings};
use crate::state::Lock;
use crate::steps::{Ledger, Step};
use crate::text::with_causes;
use build::{BuildRequest, Credentials, build_image};
use cache::BuildReport;

pub use crate::release::BUILD_ARG_GIT_SHA;

/// What the image step needs of the settings: the build's own, the environment (its stage cache
/// images are its own, its `env_tag` a cache source) and how often to show it is alive.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    pub build: &'a BuildSettings,
    pub env: &'a str,
    pub env_tag: Option<&'a str>,
    pub heartbeat: Duration,
}

impl<'a> Setup<'a> {
    pub fn of(settings: &'a Settings) -> Self {
        Self {
            build: &settings.build,
            env: &settings.env,
            env_tag: settings.env_tag.as_deref(),
            heartbeat: settings.timeouts.heartbeat,
        }
    }
}

/// What is built: the release, its image tag and platform, and the image running now.
pub struct Build<'a> {
    pub release: &'a Release,
    pub tag: &'a str,
    pub platform: &'a str,
    /// The image the first service runs and that service, if the image is in our repository.
    pub running: Option<(&'a str, &'a str)>,
    /// What ECR held for the tag when it was looked up beside taking the lock (`None` inside:
    /// not there); `None`: look now.
    pub in_ecr: Option<Option<String>>,
}

/// Where the build and the pushes go, and how they are narrated.
struct Engine<'a> {
    docker: Docker,
    repository: &'a Repository,
    heartbeat: Duration,
    reporter: &'a dyn Reporter,
}

/// Build and push, unless ECR already has the tag: the image pinned by digest, and how it was
/// built when it was.
pub async fn run(
    ecr_client: &aws_sdk_ecr::Client,
    setup: Setup<'_>,
    build: &Build<'_>,
    repository: &Repository,
    lock: &Lock,
    ledger: &mut Ledger<'_>,
) -> Result<(Image, Option<BuildReport>), Error> {
    let tag = build.tag;
    let image = |digest: String| Image {
        repository: repository.name.clone(),
        tag: tag.to_owned(),
        uri: repository.pinned(&digest),
        digest,
    };
    ledger.reporter.info(&format!(
        "image `{}:{}` is named by {}",
        repository.name,
        short_tag(tag),
        build.release.content.describe()
    ));
    let found = match &build.in_ecr {
        Some(found) => found.clone(),
        None => ecr::digest_of(ecr_client, repository, tag).await?,
    };
    if let Some(digest) = found {
        let why = in_ecr(&repository.name, tag);
        ledger.skip(Step::Build, why.clone());
        ledger.skip(Step::Push, why);
        return Ok((image(digest), None));
    }
    let reporter = ledger.reporter;
    let engine = Engine {
        docker: crate::docker::connect().await?,
        repository,
        heartbeat: setup.heartbeat,
        reporter,
    };
    ledger.start(Step::Build);
    let local = format!("{}:{tag}", repository.uri);
    let mut request = build_request(setup, build, &local)?;
    request.builder = build::resolve_builder(&engine.docker, request.builder)
        .await
        .map_err(image_failed("build"))?;
    // ECR's login goes with every build: for a base image in the repository's registry, and
    // for the cache sources there.
    let login = ecr::login(ecr_client, repository).await?;
    request.credentials = Credentials([(login.host.clone(), login.docker_credentials())].into());
    let plan = cache_plan(ecr_client, setup, build, &request, &engine, ledger).await?;
    request.cache = plan.as_ref().map(|plan| plan.sources.clone());
    let built = with_heartbeat(
        build_image(&engine.docker, &request, reporter),
        reporter,
        "build",
        engine.heartbeat,
    )
    .await
    .map_err(image_failed("build"))?;
    let mut report = BuildReport::new(plan.as_ref(), built.steps, built.pulled);
    let stage_tags = match &plan {
        Some(plan) => build_stages(&engine, &request, plan, &built.ran_stages, ledger).await,
        None => Vec::new(),
    };
    ledger.done(format!(
        "image {} ({} steps cached, {} run)",
        built.id, built.steps.cached, built.steps.run
    ));

    ledger.start(Step::Push);
    lock.check()?;
    let credentials = login.docker_credentials();
    let digest = push(&engine, ecr_client, tag, &credentials).await?;
    report.cache_images = push_stages(&engine, stage_tags, &credentials, lock, ledger).await?;
    ledger.done(format!("{}@{digest}", repository.name));
    Ok((image(digest), Some(report)))
}

/// The build's cache sources in ECR (`[build] cache`), narrated; `None` when the cache is off.
async fn cache_plan(
    ecr_client: &aws_sdk_ecr::Client,
    setup: Setup<'_>,
    build: &Build<'_>,
    request: &BuildRequest,
    engine: &Engine<'_>,
    ledger: &mut Ledger<'_>,
) -> Result<Option<cache::Plan>, Error> {
    let reporter = engine.reporter;
    if !setup.build.cache {
        reporter.info("cache: off (`[build] cache = false`)");
        return Ok(None);
    }
    let dockerfile =
        fs_err::read_to_string(&setup.build.dockerfile).map_err(image_failed("build"))?;
    let plan = cache::plan(
        ecr_client,
        engine.repository,
        setup,
        &dockerfile,
        build.running,
        request.builder == Builder::BuildKit,
    )
    .await;
    for warning in &plan.warnings {
        ledger.warn(warning.clone());
    }
    for line in cache::narrate(&plan) {
        reporter.info(&line);
    }
    Ok(Some(plan))
}

/// The stage cache images, from the engine's cache of the build that just ended: the tags built.
/// One that fails is a warning: the next build on an empty engine runs its steps.
async fn build_stages(
    engine: &Engine<'_>,
    request: &BuildRequest,
    plan: &cache::Plan,
    ran_stages: &BTreeSet<String>,
    ledger: &mut Ledger<'_>,
) -> Vec<String> {
    let (reporter, repository) = (engine.reporter, engine.repository);
    let mut stage_tags = Vec::new();
    for stage in cache::stale(plan, ran_stages) {
        reporter.info(&format!(
            "cache image of stage `{}`: `{}:{}`",
            stage.name, repository.name, stage.tag
        ));
        let stage_request = BuildRequest {
            target: Some(stage.name.clone()),
            tag: format!("{}:{}", repository.uri, stage.tag),
            ..request.clone()
        };
        let outcome = with_heartbeat(
            build_image(&engine.docker, &stage_request, &Quiet(reporter)),
            reporter,
            "build",
            engine.heartbeat,
        )
        .await;
        match outcome {
            Ok(_) => stage_tags.push(stage.tag.clone()),
            Err(error) => ledger.warn(format!(
                    "the cache image of stage `{}` was not built ({}); the next build on an empty engine runs its steps",
                    stage.name,
                    with_causes(&error)
                )),
        }
    }
    stage_tags
}

/// Pushes the image and learns its digest from ECR.
async fn push(
    engine: &Engine<'_>,
    ecr_client: &aws_sdk_ecr::Client,
    tag: &str,
    credentials: &DockerCredentials,
) -> Result<String, Error> {
    let (reporter, repository) = (engine.reporter, engine.repository);
    with_heartbeat(
        push::push_image(
            &engine.docker,
            &repository.uri,
            tag,
            credentials.clone(),
            reporter,
        ),
        reporter,
        "push",
        engine.heartbeat,
    )
    .await
    .map_err(image_failed("push"))?;
    ecr::digest_of(ecr_client, repository, tag)
        .await?
        .ok_or_else(|| Error::Image {
            step: "push",
            source: format!(
                "the push ended but ECR has no tag `{}` in `{}`",
                tag, repository.name
            )
            .into(),
        })
}

/// Pushes the stage cache images: the tags pushed. One that fails is a warning.
async fn push_stages(
    engine: &Engine<'_>,
    stage_tags: Vec<String>,
    credentials: &DockerCredentials,
    lock: &Lock,
    ledger: &mut Ledger<'_>,
) -> Result<Vec<String>, Error> {
    let (reporter, repository) = (engine.reporter, engine.repository);
    let mut pushed_tags = Vec::new();
    for stage_tag in stage_tags {
        lock.check()?;
        let pushed = with_heartbeat(
            push::push_image(
                &engine.docker,
                &repository.uri,
                &stage_tag,
                credentials.clone(),
                &Quiet(reporter),
            ),
            reporter,
            "push",
            engine.heartbeat,
        )
        .await;
        match pushed {
            Ok(_) => {
                reporter.info(&format!(
                    "pushed cache image `{}:{stage_tag}`",
                    repository.name
                ));
                pushed_tags.push(stage_tag);
            }
            Err(error) => ledger.warn(format!(
                    "the cache image `{}:{stage_tag}` was not pushed ({}); the next build on an empty engine runs its steps",
                    repository.name,
                    with_causes(&error)
                )),
        }
    }
    Ok(pushed_tags)
}

/// A reporter that keeps the steps and heartbeats and drops every line: a cache image's build
/// and push repeat the image's, and the pipeline says what they did in one line each.
struct Quiet<'a>(&'a dyn Reporter);

impl Reporter for Quiet<'_> {
    fn step_started(&self, step: &str) {
        self.0.step_started(step);
    }
    fn step_finished(&self, step: &str, elapsed: Duration) {
        self.0.step_finished(step, elapsed);
    }
    fn step_skipped(&self, step: &str, why: &str) {
        self.0.step_skipped(step, why);
    }
    fn step_failed(&self, step: &str, elapsed: Duration, why: &str) {
        self.0.step_failed(step, elapsed, why);
    }
    fn info(&self, _line: &str) {}
    fn output(&self, _source: &str, _line: &str) {}
    fn status(&self, line: &str) {
        self.0.status(line);
    }
    fn quiet_for(&self) -> Option<Duration> {
        self.0.quiet_for()
    }
}

/// The secret build args, read from berth's environment: each must be set. A deploy checks this
/// before its first AWS call.
pub fn secret_args(build: &BuildSettings) -> Result<BTreeMap<String, String>, Error> {
    build
        .secret_args
        .iter()
        .map(|name| {
            let value = std::env::var(name).map_err(|_| Error::Mismatch {
                problem: format!("secret build arg `{name}` is not set in berth's environment"),
                hint: format!("export `{name}` (in CircleCI: a project or context variable)"),
            })?;
            Ok((name.clone(), value))
        })
        .collect()
}

/// The build as the Docker side needs it; secret build args are read from berth's environment.
fn build_request(setup: Setup<'_>, build: &Build<'_>, local: &str) -> Result<BuildRequest, Error> {
    let release = build.release;
    let secret_args = secret_args(setup.build)?;
    let dockerfile = setup
        .build
        .dockerfile_in_context()
        .unwrap_or(&setup.build.dockerfile)
        .to_path_buf();
    Ok(BuildRequest {
        context: setup.build.context.clone(),
        dockerfile,
        target: setup.build.target.clone(),
        platform: build.platform.to_owned(),
        args: {
            // The commit, for Dockerfiles that bake their version in (`ARG BERTH_GIT_SHA`).
            let mut args = BTreeMap::from([(BUILD_ARG_GIT_SHA.to_owned(), release.commit.clone())]);
            args.extend(setup.build.args.clone());
            args
        },
        secret_args,
        // Nothing that names one environment or deploy: environments share the image.
        labels: BTreeMap::from([(
            "org.opencontainers.image.revision".to_owned(),
            release.commit.clone(),
        )]),
        tag: local.to_owned(),
        builder: setup.build.builder,
        cache: None,
        credentials: Default::default(),
    })
}

fn image_failed<E: std::error::Error + Send + Sync + 'static>(
    step: &'static str,
) -> impl FnOnce(E) -> Error {
    move |error| Error::Image {
        step,
        source: Box::new(error),
    }
}

/// Why the build and the push are skipped: the tag is in ECR already.
pub fn in_ecr(repository: &str, tag: &str) -> String {
    format!("`{repository}:{}` is in ECR", short_tag(tag))
}

fn short_tag(tag: &str) -> &str {
    &tag[..tag.len().min(12)]
}
