//! A deploy, from settings to a running service: build → push → register → roll out → migrate
//! (or migrate before the rollout, with `migrate = "before"`).
//!
//! Every step first looks in AWS for the result it would produce and reports "already done"
//! instead of redoing it: the tag in ECR (no build, no push), a revision tagged with the deploy
//! id (no new revision), the service on that revision (only wait), a migration task started by
//! the deploy id (attach, or skip when it succeeded). Nothing depends on a local file, so a rerun
//! on a fresh machine carries on where the last run stopped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ecs::Client as Ecs;
use aws_sdk_ecs::types::{Service, SortOrder, TaskDefinitionStatus};
use serde::Serialize;

use crate::aws;
use crate::ecr::{self, Repository};
use crate::error::Error;
use crate::flags::DeployOptions;
use crate::migrate::{self, Migrated};
use crate::output::{Reporter, with_heartbeat};
use crate::release::Release;
use crate::rollout::{self, Rolled, Target, short_arn};
use crate::settings::{MigrateOrder, Settings};
use crate::taskdef::{self, Changes, DEPLOY_ID_TAG, Described, GIT_SHA_TAG};

/// Build arg berth always passes: the commit being deployed.
pub const BUILD_ARG_GIT_SHA: &str = "BERTH_GIT_SHA";

/// Revisions looked at (newest first) when searching a family for this deploy's revision.
const REVISIONS_SEARCHED: i32 = 10;

/// What a deploy did, step by step: the record `--output json` prints, also when it failed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub env: String,
    pub deploy_id: String,
    pub commit: String,
    pub image: Option<Image>,
    /// Family → revision ARN.
    pub revisions: BTreeMap<String, String>,
    pub services: Vec<Rolled>,
    pub migration: Option<Migrated>,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Image {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// `repo@sha256:…`, as the task definitions name it.
    pub uri: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: &'static str,
    /// `done` or `skipped`.
    pub status: &'static str,
    pub seconds: f64,
    pub detail: String,
}

/// The steps, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Build,
    Push,
    Register,
    Rollout,
    Migrate,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Self::Build => "build",
            Self::Push => "push",
            Self::Register => "register",
            Self::Rollout => "rollout",
            Self::Migrate => "migrate",
        }
    }
}

struct Steps<'a> {
    reporter: &'a dyn Reporter,
    records: Vec<StepRecord>,
    current: Option<(Step, Instant)>,
}

impl<'a> Steps<'a> {
    fn start(&mut self, step: Step) {
        self.reporter.step_started(step.name());
        self.current = Some((step, Instant::now()));
    }

    fn done(&mut self, detail: impl Into<String>) {
        if let Some((step, began)) = self.current.take() {
            let elapsed = began.elapsed();
            self.reporter.step_finished(step.name(), elapsed);
            self.record(step, "done", elapsed, detail.into());
        }
    }

    fn skip(&mut self, step: Step, why: impl Into<String>) {
        let why = why.into();
        self.reporter.step_skipped(step.name(), &why);
        self.record(step, "skipped", Duration::ZERO, why);
    }

    fn record(&mut self, step: Step, status: &'static str, elapsed: Duration, detail: String) {
        self.records.push(StepRecord {
            step: step.name(),
            status,
            seconds: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            detail,
        });
    }
}

/// What a family's next revision is made from.
#[derive(Debug, Clone)]
enum Base {
    /// A task definition in ECS (an ARN, or a family for its latest revision).
    Arn(String),
    /// A task-definition file from the repository.
    File(Described),
}

/// The AWS state a deploy starts from, read before anything changes.
struct Current {
    repository: Repository,
    services: BTreeMap<String, Service>,
    /// Family of each service, in `settings.services` order.
    families: Vec<(String, String)>,
    /// Family of the migration task.
    migration_family: String,
}

/// Runs the deploy. The report says what was done up to the end, or up to the failure.
/// `interrupted` resolves when the user asks to stop (Ctrl-C): the deploy then ends with
/// [`Error::Interrupted`], its record intact, and nothing in AWS is stopped.
pub async fn deploy(
    settings: &Settings,
    options: DeployOptions,
    reporter: &dyn Reporter,
    interrupted: impl std::future::Future<Output = ()>,
) -> (Report, Result<(), Error>) {
    let mut report = Report {
        env: settings.env.clone(),
        ..Report::default()
    };
    let mut steps = Steps {
        reporter,
        records: Vec::new(),
        current: None,
    };
    let result = tokio::select! {
        result = run(settings, options, &mut report, &mut steps) => result,
        () = interrupted => Err(Error::Interrupted),
    };
    if let (Err(error), Some((step, began))) = (&result, steps.current.take()) {
        let status = match error {
            Error::Interrupted => "interrupted",
            _ => "failed",
        };
        steps.record(step, status, began.elapsed(), error.to_string());
    }
    report.steps = steps.records;
    (report, result)
}

async fn run(
    settings: &Settings,
    options: DeployOptions,
    report: &mut Report,
    steps: &mut Steps<'_>,
) -> Result<(), Error> {
    let reporter = steps.reporter;
    // Task-definition files are read (and checked) before anything else: they shape the deploy.
    let files: BTreeMap<String, Described> = settings
        .task_definitions
        .iter()
        .map(|(service, path)| Ok((service.clone(), taskdef::from_file(path)?)))
        .collect::<Result<_, Error>>()?;
    let inputs = files
        .values()
        .map(|d| serde_json::Value::Object(d.definition.clone()).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let release = Release::discover(settings, options, &inputs)?;
    reporter.info(&format!(
        "deploy `{}`: commit {} to `{}` (cluster `{}`, services {})",
        release.deploy_id,
        &release.commit[..release.commit.len().min(12)],
        settings.env,
        settings.cluster,
        settings
            .services
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let config = aws::sdk_config(settings).await;
    let ecs = aws::ecs_client(&config);
    let ecr_client = aws::ecr_client(&config);
    let logs = aws::logs_client(&config);

    report.deploy_id = release.deploy_id.clone();
    report.commit = release.commit.clone();
    let tagging = aws::tagging_client(&config);
    let current = look(&ecs, &ecr_client, settings, &files).await?;
    // Every family's revision, found or planned, and checked before anything changes.
    let families = prepare(&ecs, &tagging, settings, &release, &current, &files).await?;

    let image = self::image(&ecr_client, settings, &release, &current.repository, steps).await?;
    report.image = Some(image.clone());
    let revisions = register(&ecs, &release, &image, settings, families, steps).await?;
    report.revisions = revisions
        .iter()
        .map(|(family, described)| (family.clone(), described.arn.clone()))
        .collect();

    let targets: Vec<Target> = current
        .families
        .iter()
        .map(|(service, family)| Target {
            service: service.clone(),
            task_definition: revisions[family].arn.clone(),
        })
        .collect();
    let web = &current.services[&settings.services[0]];
    let plan = revisions
        .get(&current.migration_family)
        .map(|revision| migrate::Plan {
            revision,
            web,
            deploy_id: &release.deploy_id,
            retry: options.retry_migration,
        });

    if let (MigrateOrder::Before, Some(plan)) = (settings.migrate, &plan) {
        report.migration = Some(migration(&ecs, &logs, settings, plan, steps).await?);
    }
    rollout(&ecs, settings, &targets, steps, &mut report.services).await?;
    if let (MigrateOrder::After, Some(plan)) = (settings.migrate, &plan) {
        report.migration = Some(migration(&ecs, &logs, settings, plan, steps).await?);
    }
    // The environment tag names what is deployed: it moves once the deploy has landed.
    if let (Some(tag), Some(image)) = (&settings.env_tag, &report.image)
        && ecr::move_tag(&ecr_client, &current.repository, &image.digest, tag).await?
    {
        reporter.info(&format!("moved tag `{tag}` to {}", image.digest));
    }
    reporter.info(&format!(
        "deploy `{}` finished: {} on {}",
        release.deploy_id,
        image.uri,
        report
            .services
            .iter()
            .map(|s| format!("`{}`", s.service))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// Reads what the deploy builds on, and checks the settings against it; changes nothing.
async fn look(
    ecs: &Ecs,
    ecr_client: &aws_sdk_ecr::Client,
    settings: &Settings,
    files: &BTreeMap<String, Described>,
) -> Result<Current, Error> {
    let repository = ecr::repository(ecr_client, settings).await?;
    let services = rollout::describe(ecs, &settings.cluster, &settings.services).await?;
    let families: Vec<(String, String)> = settings
        .services
        .iter()
        .map(|name| {
            let family = match files.get(name) {
                Some(file) => file.family().to_owned(),
                None => family_of(services[name].task_definition().unwrap_or_default()).to_owned(),
            };
            (name.clone(), family)
        })
        .collect();
    let migration_family = settings
        .migration
        .family
        .clone()
        .unwrap_or_else(|| families[0].1.clone());
    Ok(Current {
        repository,
        services,
        families,
        migration_family,
    })
}

/// Build and push, unless ECR already has the tag.
async fn image(
    ecr_client: &aws_sdk_ecr::Client,
    settings: &Settings,
    release: &Release,
    repository: &Repository,
    steps: &mut Steps<'_>,
) -> Result<Image, Error> {
    let found = ecr::digest_of(ecr_client, repository, &release.tag).await?;
    let digest = match found {
        Some(digest) => {
            let why = format!(
                "`{}:{}` is in ECR",
                repository.name,
                short_tag(&release.tag)
            );
            steps.skip(Step::Build, why.clone());
            steps.skip(Step::Push, why);
            digest
        }
        None => {
            let docker = crate::docker::connect().await?;
            steps.start(Step::Build);
            let local = format!("{}:{}", repository.push_to, release.tag);
            let request = build_request(settings, release, &local)?;
            let heartbeat = settings.timeouts.heartbeat;
            let built = with_heartbeat(
                crate::build::build_image(&docker, &request, steps.reporter),
                steps.reporter,
                "build",
                heartbeat,
            )
            .await
            .map_err(|error| Error::Image {
                step: "build",
                source: Box::new(error),
            })?;
            steps.done(format!("image {}", short_arn(&built.id)));

            steps.start(Step::Push);
            let login = ecr::login(ecr_client).await?;
            let credentials = bollard::auth::DockerCredentials {
                username: Some(login.username),
                password: Some(login.password),
                serveraddress: Some(
                    repository
                        .push_to
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                ),
                ..Default::default()
            };
            with_heartbeat(
                crate::push::push_image(
                    &docker,
                    &repository.push_to,
                    &release.tag,
                    credentials,
                    steps.reporter,
                ),
                steps.reporter,
                "push",
                heartbeat,
            )
            .await
            .map_err(|error| Error::Image {
                step: "push",
                source: Box::new(error),
            })?;
            let digest = ecr::digest_of(ecr_client, repository, &release.tag)
                .await?
                .ok_or_else(|| Error::Image {
                    step: "push",
                    source: format!(
                        "the push ended but ECR has no tag `{}` in `{}`",
                        release.tag, repository.name
                    )
                    .into(),
                })?;
            steps.done(format!("{}@{digest}", repository.name));
            digest
        }
    };
    Ok(Image {
        repository: repository.name.clone(),
        tag: release.tag.clone(),
        uri: repository.pinned(&digest),
        digest,
    })
}

/// The build as the Docker side needs it; secret build args are read from berth's environment.
fn build_request(
    settings: &Settings,
    release: &Release,
    local: &str,
) -> Result<crate::build::BuildRequest, Error> {
    let mut secret_args = BTreeMap::new();
    for name in &settings.build.secret_args {
        let value = std::env::var(name).map_err(|_| Error::Mismatch {
            problem: format!("secret build arg `{name}` is not set in berth's environment"),
            hint: format!("export `{name}` (in CircleCI: a project or context variable)"),
        })?;
        secret_args.insert(name.clone(), value);
    }
    let dockerfile = settings
        .build
        .dockerfile
        .strip_prefix(&settings.build.context)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|_| settings.build.dockerfile.clone());
    Ok(crate::build::BuildRequest {
        context: settings.build.context.clone(),
        dockerfile,
        target: settings.build.target.clone(),
        platform: settings.build.platform.clone(),
        args: {
            // The commit, for Dockerfiles that bake their version in (`ARG BERTH_GIT_SHA`).
            let mut args = BTreeMap::from([(BUILD_ARG_GIT_SHA.to_owned(), release.commit.clone())]);
            args.extend(settings.build.args.clone());
            args
        },
        secret_args,
        labels: BTreeMap::from([
            (
                "org.opencontainers.image.revision".to_owned(),
                release.commit.clone(),
            ),
            ("berth.deploy-id".to_owned(), release.deploy_id.clone()),
        ]),
        tag: local.to_owned(),
        builder: match settings.build.builder {
            crate::settings::Builder::Auto => crate::build::Builder::Auto,
            crate::settings::Builder::Classic => crate::build::Builder::Classic,
            crate::settings::Builder::BuildKit => crate::build::Builder::BuildKit,
        },
    })
}

/// A family this deploy needs a revision of: this deploy's revision when it exists, else the
/// base to make it from and the containers that take the image.
enum FamilyPlan {
    Registered(Described),
    New {
        base: Described,
        containers: Vec<String>,
    },
}

impl FamilyPlan {
    fn definition(&self) -> &Described {
        match self {
            Self::Registered(described)
            | Self::New {
                base: described, ..
            } => described,
        }
    }
}

/// Finds or plans each family's revision and checks the settings against it (our containers,
/// the migration container) while nothing is changed yet.
async fn prepare(
    ecs: &Ecs,
    tagging: &aws_sdk_resourcegroupstagging::Client,
    settings: &Settings,
    release: &Release,
    current: &Current,
    files: &BTreeMap<String, Described>,
) -> Result<BTreeMap<String, FamilyPlan>, Error> {
    let mut bases = BTreeMap::new();
    for (service, family) in &current.families {
        let base = match files.get(service) {
            Some(file) => Base::File(file.clone()),
            None => Base::Arn(
                current.services[service]
                    .task_definition()
                    .unwrap_or_default()
                    .to_owned(),
            ),
        };
        bases.entry(family.clone()).or_insert(base);
    }
    if settings.migrate != MigrateOrder::Skip {
        bases
            .entry(current.migration_family.clone())
            .or_insert_with(|| Base::Arn(current.migration_family.clone()));
    }
    let mut plans = BTreeMap::new();
    for (family, base) in bases {
        let plan = match find_revision(ecs, tagging, &family, &release.deploy_id).await? {
            Some(existing) => FamilyPlan::Registered(existing),
            None => {
                let base = match base {
                    Base::Arn(arn) => taskdef::describe(ecs, &arn).await?,
                    Base::File(file) => file,
                };
                let containers = our_containers(settings, &base, &current.repository)?;
                FamilyPlan::New { base, containers }
            }
        };
        plans.insert(family, plan);
    }
    if let Some(plan) = plans.get(&current.migration_family) {
        let definition = plan.definition();
        let container = &settings.migration.container;
        if definition.container(container).is_none() {
            return Err(Error::Mismatch {
                problem: format!(
                    "task definition `{}` has no container `{container}` to run the migration in",
                    short_arn(&definition.arn)
                ),
                hint: "set `migration.container` (or `migration.family`) in berth.toml".to_owned(),
            });
        }
    }
    Ok(plans)
}

/// Registers the planned revisions, pinned to the image.
async fn register(
    ecs: &Ecs,
    release: &Release,
    image: &Image,
    settings: &Settings,
    plans: BTreeMap<String, FamilyPlan>,
    steps: &mut Steps<'_>,
) -> Result<BTreeMap<String, Described>, Error> {
    let mut revisions = BTreeMap::new();
    let mut registered = Vec::new();
    let mut reused = Vec::new();
    for (family, plan) in plans {
        let (base, containers) = match plan {
            FamilyPlan::Registered(existing) => {
                reused.push(short_arn(&existing.arn).to_owned());
                revisions.insert(family, existing);
                continue;
            }
            FamilyPlan::New { base, containers } => (base, containers),
        };
        if registered.is_empty() {
            steps.start(Step::Register);
        }
        let tags = BTreeMap::from([
            (DEPLOY_ID_TAG.to_owned(), release.deploy_id.clone()),
            (GIT_SHA_TAG.to_owned(), release.commit.clone()),
        ]);
        let input = taskdef::next_revision(
            &base,
            &Changes {
                containers: &containers,
                image: &image.uri,
                set_environment: &settings.environment,
                remove_environment: &settings.remove_environment,
                set_secrets: &settings.secrets,
                tags,
            },
        );
        let arn = taskdef::register(ecs, &input).await?;
        steps.reporter.info(&format!(
            "registered `{}` from `{}`, new image in {}",
            short_arn(&arn),
            short_arn(&base.arn),
            containers
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        registered.push(short_arn(&arn).to_owned());
        revisions.insert(family, taskdef::describe(ecs, &arn).await?);
    }
    if registered.is_empty() {
        steps.skip(
            Step::Register,
            format!("{} tagged with this deploy id", reused.join(", ")),
        );
    } else {
        steps.done(registered.join(", "));
    }
    Ok(revisions)
}

/// The containers that take our image: `containers` from berth.toml, else those whose image is in
/// our repository. Sidecars with other images are never touched.
fn our_containers(
    settings: &Settings,
    base: &Described,
    repository: &Repository,
) -> Result<Vec<String>, Error> {
    let available: Vec<String> = base
        .containers()
        .iter()
        .map(|c| {
            format!(
                "`{}` ({})",
                c.get("name").and_then(|v| v.as_str()).unwrap_or("?"),
                c.get("image").and_then(|v| v.as_str()).unwrap_or("?")
            )
        })
        .collect();
    let chosen = match &settings.containers {
        Some(names) => {
            if let Some(missing) = names.iter().find(|n| base.container(n).is_none()) {
                return Err(Error::Mismatch {
                    problem: format!(
                        "task definition `{}` has no container `{missing}`; it has {}",
                        short_arn(&base.arn),
                        available.join(", ")
                    ),
                    hint: "fix `containers` in berth.toml".to_owned(),
                });
            }
            names.clone()
        }
        None => taskdef::containers_in_repository(base, &repository.uri),
    };
    if chosen.is_empty() {
        return Err(Error::Mismatch {
            problem: format!(
                "no container of `{}` uses `{}`; it has {}",
                short_arn(&base.arn),
                repository.uri,
                available.join(", ")
            ),
            hint: "name the containers that take the image with `containers = [\"app\"]` in berth.toml".to_owned(),
        });
    }
    Ok(chosen)
}

/// This deploy's revision of `family`, if an earlier run registered it. The newest revisions are
/// read first (strongly consistent, and where a rerun's revision usually is); past them the
/// Resource Groups Tagging API finds the revision by its deploy-id tag, however old.
async fn find_revision(
    ecs: &Ecs,
    tagging: &aws_sdk_resourcegroupstagging::Client,
    family: &str,
    deploy_id: &str,
) -> Result<Option<Described>, Error> {
    let listed = ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(TaskDefinitionStatus::Active)
        .sort(SortOrder::Desc)
        .max_results(REVISIONS_SEARCHED)
        .send()
        .await
        .map_err(|e| aws::failed(format!("listing revisions of `{family}`"), e))?;
    let mut arns: Vec<&str> = listed
        .task_definition_arns()
        .iter()
        .map(String::as_str)
        .filter(|arn| family_of(arn) == family)
        .collect();
    arns.sort_by_key(|arn| std::cmp::Reverse(revision_of(arn)));
    for arn in arns.iter().take(REVISIONS_SEARCHED as usize) {
        let described = taskdef::describe(ecs, arn).await?;
        if described.tags.get(DEPLOY_ID_TAG).map(String::as_str) == Some(deploy_id) {
            return Ok(Some(described));
        }
    }
    if listed.next_token().is_none() && arns.len() < REVISIONS_SEARCHED as usize {
        return Ok(None); // every revision of the family was read
    }
    let tagged = tagging
        .get_resources()
        .resource_type_filters("ecs:task-definition")
        .tag_filters(
            aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                .key(DEPLOY_ID_TAG)
                .values(deploy_id)
                .build(),
        )
        .send()
        .await;
    let tagged = match tagged {
        Ok(tagged) => tagged,
        Err(error)
            if error.as_service_error().and_then(|e| e.meta().code())
                == Some("AccessDeniedException") =>
        {
            tracing::warn!(
                "cannot search revisions of `{family}` older than the newest {REVISIONS_SEARCHED} for this deploy \
                 (`tag:GetResources` denied): a rerun of an old deploy would register a new revision"
            );
            return Ok(None);
        }
        Err(error) => {
            return Err(aws::failed(
                format!("searching older revisions of `{family}` for this deploy id"),
                error,
            ));
        }
    };
    let found = tagged
        .resource_tag_mapping_list()
        .iter()
        .filter_map(|mapping| mapping.resource_arn())
        .filter(|arn| family_of(arn) == family)
        .max_by_key(|arn| revision_of(arn));
    match found {
        Some(arn) => {
            let described = taskdef::describe(ecs, arn).await?;
            let active =
                described.definition.get("status").and_then(|s| s.as_str()) == Some("ACTIVE");
            Ok(active.then_some(described))
        }
        None => Ok(None),
    }
}

/// Rolls out and waits; `rolled` holds each service's deployment and state, also on failure.
async fn rollout(
    ecs: &Ecs,
    settings: &Settings,
    targets: &[Target],
    steps: &mut Steps<'_>,
    rolled: &mut Vec<Rolled>,
) -> Result<(), Error> {
    steps.start(Step::Rollout);
    *rolled = rollout::start(ecs, settings, targets, steps.reporter).await?;
    rollout::wait(ecs, settings, rolled, steps.reporter).await?;
    if rolled.iter().all(|r| r.already) {
        // Nothing was changed: a rerun that only confirmed the services.
        if let Some((_, began)) = steps.current.take() {
            steps.record(
                Step::Rollout,
                "skipped",
                began.elapsed(),
                "services already on this deploy's revisions".to_owned(),
            );
            steps.reporter.step_skipped(
                Step::Rollout.name(),
                "services already on this deploy's revisions",
            );
        }
    } else {
        steps.done(
            rolled
                .iter()
                .map(|r| format!("{} {}", r.service, r.deployment_id))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    Ok(())
}

async fn migration(
    ecs: &Ecs,
    logs: &aws_sdk_cloudwatchlogs::Client,
    settings: &Settings,
    plan: &migrate::Plan<'_>,
    steps: &mut Steps<'_>,
) -> Result<Migrated, Error> {
    steps.start(Step::Migrate);
    let migrated = migrate::run(ecs, logs, settings, plan, steps.reporter).await?;
    if migrated.already {
        steps.current = None;
        steps.skip(
            Step::Migrate,
            format!(
                "migration task `{}` of this deploy succeeded",
                short_arn(&migrated.task_arn)
            ),
        );
    } else {
        steps.done(format!("task {} exited 0", short_arn(&migrated.task_arn)));
    }
    Ok(migrated)
}

/// `family` of `arn:…:task-definition/family:7`.
fn family_of(arn: &str) -> &str {
    let last = arn.rsplit('/').next().unwrap_or(arn);
    last.rsplit_once(':').map_or(last, |(family, _)| family)
}

fn revision_of(arn: &str) -> u64 {
    arn.rsplit(':')
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn short_tag(tag: &str) -> &str {
    &tag[..tag.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::{family_of, revision_of};

    #[test]
    fn arns_name_family_and_revision() {
        let arn = "arn:aws:ecs:us-east-1:1:task-definition/berth-example-stg-web:12";
        assert_eq!(family_of(arn), "berth-example-stg-web");
        assert_eq!(revision_of(arn), 12);
        assert_eq!(family_of("web"), "web");
    }
}
