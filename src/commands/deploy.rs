//! A deploy, from settings to a running service: build → push → register → roll out → migrate
//! (or migrate before the rollout, with `migrate = "before"`).
//!
//! Every step first looks in AWS for the result it would produce and reports "already done"
//! instead of redoing it: the tag in ECR (no build, no push), a revision tagged with the deploy
//! id (no new revision), the service on that revision (only wait), a migration task started by
//! the deploy id (attach, or skip when it succeeded). Nothing depends on a local file, so a rerun
//! on a fresh machine carries on where the last run stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_ecs::Client as Ecs;
use serde::Serialize;

use crate::aws;
use crate::aws::arn;
use crate::aws::ecr::{self, Image, Repository};
use crate::current;
use crate::error::Error;
use crate::flags::DeployOptions;
use crate::release::Release;
use crate::report::{Reporter, warn, with_heartbeat};
use crate::settings::{MigrateOrder, OnFailure, Settings};
use crate::state::record::{
    DeployRecord, MovedTarget, RecordedImage, RolloutOutcome, RunState, ServiceRollout,
};
use crate::state::{self, Lock, Record, lock};
use crate::steps::cleanup;
use crate::steps::image::cache::{self, BuildReport};
use crate::steps::migrate::{self, Migrated};
use crate::steps::register;
use crate::steps::rollout::{self, Rolled, Target};
use crate::steps::schedules;
use crate::taskdef::{self, Described};
use crate::text::{code_list, with_causes};

/// Build arg berth always passes: the commit being deployed.
pub const BUILD_ARG_GIT_SHA: &str = "BERTH_GIT_SHA";

/// What a deploy did, step by step: the record `--output json` prints, also when it failed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub env: String,
    pub deploy_id: String,
    pub commit: String,
    pub image: Option<Image>,
    /// How the image was built: its cache sources, steps cached and run, bytes pulled. `None`
    /// when ECR had the image already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildReport>,
    /// Family → revision ARN.
    pub revisions: BTreeMap<String, String>,
    pub services: Vec<Rolled>,
    /// Services moved back after another's rollout failed (`on_failure = "rollback"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rolled_back: Vec<Rolled>,
    pub migration: Option<Migrated>,
    /// Scheduled targets moved to the deploy's revisions, each with the one it ran before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<MovedTarget>,
    /// Revisions deregistered (`keep_revisions`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deregistered: Vec<String>,
    pub steps: Vec<StepRecord>,
    /// What went wrong without failing the deploy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
    Schedules,
    Cleanup,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Self::Build => "build",
            Self::Push => "push",
            Self::Register => "register",
            Self::Rollout => "rollout",
            Self::Migrate => "migrate",
            Self::Schedules => "schedules",
            Self::Cleanup => "cleanup",
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

    /// The started step turned out to be done already (a rerun that only confirmed it).
    fn already_done(&mut self, why: impl Into<String>) {
        if let Some((step, began)) = self.current.take() {
            let why = why.into();
            self.reporter.step_skipped(step.name(), &why);
            self.record(step, "skipped", began.elapsed(), why);
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

/// Runs the deploy. The report says what was done up to the end, or up to the failure.
/// `interrupted` resolves when the user asks to stop (Ctrl-C, SIGTERM): the deploy then ends with
/// [`Error::Interrupted`], its record written and the lock released, and nothing in AWS is
/// stopped.
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
    let mut held = Held::default();
    let result = tokio::select! {
        result = run(settings, options, &mut report, &mut steps, &mut held) => result,
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
    held.finish(&result, &mut report.warnings, reporter).await;
    (report, result)
}

/// What a deploy holds while it runs: the environment's lock and its record. Kept outside the
/// run, so that an interrupted run still writes how it ended and releases the lock.
#[derive(Default)]
pub(crate) struct Held {
    pub lock: Option<Lock>,
    pub record: Option<Record>,
}

impl Held {
    /// Writes how the run ended into the record and releases the lock; what fails here is a
    /// warning, never the deploy's verdict.
    pub(crate) async fn finish(
        self,
        result: &Result<(), Error>,
        warnings: &mut Vec<String>,
        reporter: &dyn Reporter,
    ) {
        let mut warn = |warning: String| warn(reporter, warnings, warning);
        if let Some(mut record) = self.record {
            let lost = matches!(result, Err(Error::LockLost { .. }));
            let state = match result {
                Ok(()) => RunState::Succeeded,
                Err(Error::Interrupted) => RunState::Interrupted,
                Err(_) if record.value.state == RunState::RolledBack => RunState::RolledBack,
                Err(_) => RunState::Failed,
            };
            // A run that lost the lock leaves the record to the run that holds it.
            if !lost
                && let Err(error) = record
                    .update(|r| {
                        r.state = state;
                        r.error = result.as_ref().err().map(|e| with_causes(e));
                    })
                    .await
            {
                warn(format!(
                    "the deploy record was not updated: {}",
                    with_causes(&error)
                ));
            }
        }
        if let Some(lock) = self.lock {
            match lock.release().await {
                Ok(true) => {}
                Ok(false) => warn("the lock was no longer this run's to release".to_owned()),
                Err(error) => warn(format!(
                    "the lock was not released: {}; it frees itself when its lease runs out",
                    with_causes(&error)
                )),
            }
        }
    }
}

async fn run(
    settings: &Settings,
    options: DeployOptions,
    report: &mut Report,
    steps: &mut Steps<'_>,
    held: &mut Held,
) -> Result<(), Error> {
    let reporter = steps.reporter;
    let (files, inputs) = task_definition_files(settings)?;
    let release = Release::discover(settings, options, &inputs)?;
    crate::steps::image::build::check_dockerfile(
        &settings.build.dockerfile,
        settings.build.target.as_deref(),
    )?;
    reporter.info(&format!(
        "deploy `{}`: commit {} to `{}` (cluster `{}`, services {})",
        release.deploy_id,
        &release.commit[..release.commit.len().min(12)],
        settings.env,
        settings.cluster,
        code_list(&settings.services)
    ));
    report.deploy_id = release.deploy_id.clone();
    report.commit = release.commit.clone();
    let config = aws::sdk_config(settings).await?;

    // One deploy per environment: everything below runs under the lock.
    let store = state::Store::open(&config, settings, reporter)
        .await
        .map_err(|error| aws::blame_unknown_region(error, &settings.region))?;
    let want = lock::Want {
        who: lock::who(),
        run: lock::run_id(),
        command: "deploy",
        deploy_id: release.deploy_id.clone(),
        commit: release.commit.clone(),
        check_stale: true,
        journal: true,
        force: options.force,
    };
    let lock: &Lock = held
        .lock
        .insert(lock::acquire(&store, settings, &want, options.lock_wait, reporter).await?);
    let fresh = DeployRecord {
        deploy_id: release.deploy_id.clone(),
        env: settings.env.clone(),
        commit: release.commit.clone(),
        ..DeployRecord::default()
    };
    // The record and the first look at the services do not wait on each other.
    let ecs = aws::ecs_client(&config);
    let ecr_client = aws::ecr_client(&config);
    // Both run to their end: a record opened is held (and gets how the run ended) even when the
    // look at the services failed.
    let (opened, current) = tokio::join!(Record::open(&store, fresh, &want.run), async {
        current::read(&ecs, &ecr_client, settings, &files)
            .await
            .map_err(|error| aws::blame_unknown_region(error, &settings.region))
    });
    let (record, existed) = opened?;
    if existed {
        reporter.info(&format!(
            "resuming deploy `{}` (run {}): its record says what is done",
            release.deploy_id, record.value.runs
        ));
    }
    let record = held.record.insert(record);
    let current = current?;
    let cx = Context {
        settings,
        options,
        release: &release,
        files: &files,
        config: &config,
        lock,
        store: &store,
        current: &current,
    };
    tokio::select! {
        result = locked(&cx, report, steps, record) => result,
        why = lock.lost() => Err(Error::LockLost { why }),
    }
}

/// The task-definition files (service → file), read and checked before anything else: they
/// shape the deploy. With them, their contents as one text, an input of the deploy id.
pub(crate) fn task_definition_files(
    settings: &Settings,
) -> Result<(BTreeMap<String, Described>, String), Error> {
    let files: BTreeMap<String, Described> = settings
        .task_definitions
        .iter()
        .map(|(service, path)| {
            let file = taskdef::from_file(path, &settings.task_definition_vars)?;
            Ok((service.clone(), file))
        })
        .collect::<Result<_, Error>>()?;
    let inputs = files
        .values()
        .map(|d| serde_json::Value::Object(d.definition.clone()).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    Ok((files, inputs))
}

/// What the deploy under the lock works from.
struct Context<'a> {
    settings: &'a Settings,
    options: DeployOptions,
    release: &'a Release,
    /// Service → its task-definition file, read and checked.
    files: &'a BTreeMap<String, Described>,
    config: &'a aws_config::SdkConfig,
    lock: &'a Lock,
    /// Where the lock and the deploy records live.
    store: &'a state::Store,
    /// What the deploy starts from, read under the lock.
    current: &'a current::Current,
}

/// The deploy proper, under the environment's lock.
async fn locked(
    cx: &Context<'_>,
    report: &mut Report,
    steps: &mut Steps<'_>,
    record: &mut Record,
) -> Result<(), Error> {
    let Context {
        settings,
        options,
        release,
        files,
        config,
        lock,
        current,
        ..
    } = *cx;
    let reporter = steps.reporter;
    let ecs = aws::ecs_client(config);
    let ecr_client = aws::ecr_client(config);
    let logs = aws::logs_client(config);
    let tagging = aws::tagging_client(config);
    // Every family's revision, found or planned, and checked before anything changes.
    let families = register::plan(
        &ecs,
        &tagging,
        settings,
        release,
        current,
        files,
        // Only a rerun can find revisions an earlier run registered.
        if record.value.runs > 1 {
            register::Registered::Recorded(&record.value.revisions)
        } else {
            register::Registered::Nothing
        },
    )
    .await?;

    let revisions: Vec<&Described> = families.values().map(|plan| plan.definition()).collect();
    let platform = taskdef::build_platform(settings.build.platform.as_deref(), &revisions)?;
    let tag = release.image_tag(&settings.build, &platform);
    // The image the first service runs now: the build's first cache source.
    // (A task-definition file names a placeholder, not what runs: then no running image.)
    let running = current.families.first().and_then(|(service, family)| {
        if files.contains_key(service) {
            return None;
        }
        let base = families.get(family)?.definition();
        let container = taskdef::containers_in_repository(base, &current.repository.uri)
            .into_iter()
            .next()?;
        let image = base.container(&container)?.get("image")?.as_str()?;
        Some((image.to_owned(), service.clone()))
    });
    let build = Build {
        release,
        tag: &tag,
        platform: &platform,
        running: running
            .as_ref()
            .map(|(image, service)| (image.as_str(), service.as_str())),
    };
    let (image, built) = self::image(
        &ecr_client,
        settings,
        &build,
        &current.repository,
        lock,
        steps,
        &mut report.warnings,
    )
    .await?;
    report.image = Some(image.clone());
    report.build = built;
    let reuse = register::all_registered(&families);
    if !reuse {
        steps.start(Step::Register);
        lock.check()?;
    }
    let revisions = register::register(
        &ecs, &tagging, release, &image, settings, families, reporter,
    )
    .await?;
    let names: Vec<&str> = revisions.values().map(|d| arn::short(&d.arn)).collect();
    if reuse {
        steps.skip(
            Step::Register,
            format!("{} tagged with this deploy id", names.join(", ")),
        );
    } else {
        steps.done(names.join(", "));
    }
    report.revisions = revisions
        .iter()
        .map(|(family, described)| (family.clone(), described.arn.clone()))
        .collect();
    // The image is recorded with the revisions pinned to it: until they are registered, the tag
    // in ECR is what a rerun goes by.
    let recorded = RecordedImage {
        tag: image.tag.clone(),
        digest: image.digest.clone(),
    };
    if record.value.revisions != report.revisions || record.value.image.as_ref() != Some(&recorded)
    {
        let registered = report.revisions.clone();
        record
            .update(|r| {
                r.revisions = registered;
                r.image = Some(recorded);
            })
            .await?;
    }

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
            lock,
        });

    if let (MigrateOrder::Before, Some(plan)) = (settings.migrate, &plan) {
        report.migration = Some(migration(&ecs, &logs, settings, plan, record, steps).await?);
    }
    let rolled = rollout(
        &ecs,
        settings,
        current,
        &targets,
        lock,
        record,
        steps,
        &mut report.services,
    )
    .await;
    if let Err(error) = rolled {
        let rollout_failed = matches!(
            error,
            Error::RolloutFailed { .. } | Error::RolloutTimeout { .. }
        );
        if rollout_failed && settings.on_failure == OnFailure::Rollback {
            roll_back(
                &ecs,
                settings,
                lock,
                record,
                reporter,
                &mut report.rolled_back,
            )
            .await
            .map_err(|rollback| Error::RolloutFailed {
                service: "the environment".to_owned(),
                reason: format!(
                    "{}; rolling the services back failed too: {}",
                    with_causes(&error),
                    with_causes(&rollback)
                ),
            })?;
        }
        return Err(error);
    }
    if let (MigrateOrder::After, Some(plan)) = (settings.migrate, &plan) {
        report.migration = Some(migration(&ecs, &logs, settings, plan, record, steps).await?);
    }
    // The environment tag names what is deployed: it moves once the deploy has landed, and a
    // failure to move it does not undo that.
    if let (Some(tag), Some(image)) = (&settings.env_tag, &report.image) {
        match ecr::move_tag(&ecr_client, &current.repository, &image.digest, tag).await {
            Ok(true) => reporter.info(&format!("moved tag `{tag}` to {}", image.digest)),
            Ok(false) => {}
            Err(error) => {
                let warning = format!(
                    "the deploy landed, but tag `{tag}` was not moved to {}: {}",
                    image.digest,
                    with_causes(&error)
                );
                warn(reporter, &mut report.warnings, warning);
            }
        }
    }
    report.schedules =
        follow_schedules(cx, &report.revisions, record, steps, &mut report.warnings).await?;
    if let Some(keep) = settings.keep_revisions {
        // Housekeeping: the deploy has landed whatever happens here.
        match clean_up(
            cx,
            keep,
            &report.revisions,
            record,
            steps,
            &mut report.warnings,
        )
        .await
        {
            Ok(deregistered) => report.deregistered = deregistered,
            Err(error) => {
                let warning = format!(
                    "the deploy landed, but old revisions were not deregistered: {}",
                    with_causes(&error)
                );
                warn(reporter, &mut report.warnings, warning);
            }
        }
    }
    reporter.info(&format!(
        "deploy `{}` finished: {} on {}",
        release.deploy_id,
        image.uri,
        code_list(report.services.iter().map(|s| &s.service))
    ));
    Ok(())
}

/// Points the rules' and schedules' ECS targets that run a deployed family at its new revision.
/// The record lists each with the revision it ran before, written before the first one moves; a
/// rerun finds them moved and skips them.
async fn follow_schedules(
    cx: &Context<'_>,
    revisions: &BTreeMap<String, String>,
    record: &mut Record,
    steps: &mut Steps<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<MovedTarget>, Error> {
    let Context {
        settings,
        config,
        lock,
        current,
        ..
    } = *cx;
    let reporter = steps.reporter;
    let clients = schedules::Clients::new(config);
    let survey = schedules::survey_settings(
        &clients,
        settings,
        current.services.values(),
        revisions,
        reporter,
        warnings,
    )
    .await?;
    let Some(survey) = survey else {
        return Ok(record.value.schedules.clone());
    };
    if survey.to_move.is_empty() {
        if survey.on_new == 0 {
            reporter.info("schedules: no rule or schedule in the cluster runs a deployed family");
        } else {
            steps.skip(
                Step::Schedules,
                format!(
                    "{} scheduled target(s) run the new revisions",
                    survey.on_new
                ),
            );
        }
        return Ok(record.value.schedules.clone());
    }
    steps.start(Step::Schedules);
    let moved = schedules::follow(&clients, &survey, record, lock, reporter).await?;
    steps.done(format!("{} target(s) moved", survey.to_move.len()));
    Ok(moved)
}

/// `keep_revisions`: deregisters each deployed family's ACTIVE revisions beyond the newest `keep`
/// that nothing uses (a service's deployment, a scheduled target, the newest `keep` deploys'
/// records). The record lists them before the first goes; a rerun finds them gone.
async fn clean_up(
    cx: &Context<'_>,
    keep: usize,
    revisions: &BTreeMap<String, String>,
    record: &mut Record,
    steps: &mut Steps<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, Error> {
    let Context {
        settings,
        config,
        lock,
        store,
        ..
    } = *cx;
    let reporter = steps.reporter;
    let ecs = aws::ecs_client(config);
    let mut in_use: BTreeSet<(String, u64)> = revisions.values().map(|r| cleanup::key(r)).collect();
    // Every service of the cluster, berth's or not, with every deployment it has.
    let names = cleanup::services_in(&ecs, &settings.cluster).await?;
    let services = crate::aws::services::describe(&ecs, &settings.cluster, &names).await?;
    for service in services.values() {
        let running = service
            .deployments()
            .iter()
            .filter_map(|d| d.task_definition());
        in_use.extend(running.chain(service.task_definition()).map(cleanup::key));
    }
    // Every scheduled ECS target of the account, on every bus and in every cluster, whatever
    // `schedules` says: what one runs must stay.
    match schedules::find(&schedules::Clients::new(config), None, None).await {
        Ok(found) => in_use.extend(found.iter().map(|t| cleanup::key(&t.task_definition))),
        Err(error @ Error::AccessDenied { .. }) => {
            let warning = format!(
                "no revision was deregistered: berth must see the scheduled targets to know what they run, and {}",
                with_causes(&error)
            );
            warn(reporter, warnings, warning);
            return Ok(record.value.deregistered.clone());
        }
        Err(error) => return Err(error),
    }
    // What the newest deploys of the environment would roll back to.
    let file = lock.file().await;
    for started in file.deploys.iter().rev().take(keep) {
        let Some(earlier) = state::record::read(store, &started.deploy_id).await? else {
            let warning = format!(
                "no revision was deregistered: the record of deploy `{}` is missing, so what it would roll back to is unknown",
                started.deploy_id
            );
            warn(reporter, warnings, warning);
            return Ok(record.value.deregistered.clone());
        };
        let named = earlier.revisions.values().chain(earlier.previous.values());
        in_use.extend(named.map(|r| cleanup::key(r)));
    }
    // Only revisions this environment's deploys registered: another environment's, or one
    // made by hand, are not this deploy's to remove.
    let mine = format!("{}-", settings.env);
    let mut doomed = Vec::new();
    for family in revisions.keys() {
        let active = cleanup::active(&ecs, family).await?;
        for revision in cleanup::doomed(&active, keep, &in_use) {
            let described = taskdef::describe(&ecs, &revision).await?;
            let ours = described
                .tags
                .get(taskdef::DEPLOY_ID_TAG)
                .is_some_and(|id| id.starts_with(&mine));
            if ours {
                doomed.push(revision);
            }
        }
    }
    if doomed.is_empty() {
        reporter.info(&format!(
            "cleanup: no unused revision beyond the newest {keep} of each family"
        ));
        return Ok(record.value.deregistered.clone());
    }
    steps.start(Step::Cleanup);
    let mut listed = record.value.deregistered.clone();
    for revision in &doomed {
        if !listed.contains(revision) {
            listed.push(revision.clone());
        }
    }
    if record.value.deregistered != listed {
        let planned = listed.clone();
        record.update(|r| r.deregistered = planned).await?;
    }
    for revision in &doomed {
        lock.check()?;
        cleanup::deregister(&ecs, revision).await?;
    }
    steps.done(format!(
        "deregistered {}",
        code_list(doomed.iter().map(|r| arn::short(r)))
    ));
    Ok(listed)
}

/// What is built: the release, its image tag and platform, and the image running now.
struct Build<'a> {
    release: &'a Release,
    tag: &'a str,
    platform: &'a str,
    /// The image the first service runs and that service, if the image is in our repository.
    running: Option<(&'a str, &'a str)>,
}

/// Build and push, unless ECR already has the tag.
async fn image(
    ecr_client: &aws_sdk_ecr::Client,
    settings: &Settings,
    build: &Build<'_>,
    repository: &Repository,
    lock: &Lock,
    steps: &mut Steps<'_>,
    warnings: &mut Vec<String>,
) -> Result<(Image, Option<BuildReport>), Error> {
    let tag = build.tag;
    let found = ecr::digest_of(ecr_client, repository, tag).await?;
    let image = |digest: String| Image {
        repository: repository.name.clone(),
        tag: tag.to_owned(),
        uri: repository.pinned(&digest),
        digest,
    };
    if let Some(digest) = found {
        let why = format!("`{}:{}` is in ECR", repository.name, short_tag(tag));
        steps.skip(Step::Build, why.clone());
        steps.skip(Step::Push, why);
        return Ok((image(digest), None));
    }
    let reporter = steps.reporter;
    let docker = crate::docker::connect().await?;
    steps.start(Step::Build);
    let local = format!("{}:{tag}", repository.uri);
    let mut request = build_request(settings, build, &local)?;
    request.builder = crate::steps::image::build::resolve_builder(&docker, request.builder)
        .await
        .map_err(image_failed("build"))?;
    // ECR's login goes with every build: for a base image in the repository's registry, and
    // for the cache sources there.
    let login = ecr::login(ecr_client, repository).await?;
    request.credentials = crate::steps::image::build::Credentials(
        [(login.host.clone(), login.docker_credentials())].into(),
    );
    let plan = if settings.build.cache {
        let dockerfile =
            fs_err::read_to_string(&settings.build.dockerfile).map_err(|error| Error::Image {
                step: "build",
                source: Box::new(error),
            })?;
        let plan = cache::plan(
            ecr_client,
            repository,
            settings,
            &dockerfile,
            build.running,
            request.builder == crate::settings::Builder::BuildKit,
        )
        .await;
        for warning in &plan.warnings {
            warn(reporter, warnings, warning.clone());
        }
        for line in cache::narrate(&plan) {
            reporter.info(&line);
        }
        request.cache = Some(plan.sources.clone());
        Some(plan)
    } else {
        reporter.info("cache: off (`[build] cache = false`)");
        None
    };
    let heartbeat = settings.timeouts.heartbeat;
    let built = with_heartbeat(
        crate::steps::image::build::build_image(&docker, &request, reporter),
        reporter,
        "build",
        heartbeat,
    )
    .await
    .map_err(image_failed("build"))?;
    let mut report = BuildReport::new(plan.as_ref(), built.steps, built.pulled);
    // The stage cache images, from the engine's cache of the build that just ended.
    let mut stage_tags = Vec::new();
    for stage in plan
        .as_ref()
        .map(|plan| cache::stale(plan, &built.ran_stages))
        .unwrap_or_default()
    {
        reporter.info(&format!(
            "cache image of stage `{}`: `{}:{}`",
            stage.name, repository.name, stage.tag
        ));
        let stage_request = crate::steps::image::build::BuildRequest {
            target: Some(stage.name.clone()),
            tag: format!("{}:{}", repository.uri, stage.tag),
            ..request.clone()
        };
        let outcome = with_heartbeat(
            crate::steps::image::build::build_image(&docker, &stage_request, &Quiet(reporter)),
            reporter,
            "build",
            heartbeat,
        )
        .await;
        match outcome {
            Ok(_) => stage_tags.push(stage.tag.clone()),
            Err(error) => warn(
                reporter,
                warnings,
                format!(
                    "the cache image of stage `{}` was not built ({}); the next build on an empty engine runs its steps",
                    stage.name,
                    with_causes(&error)
                ),
            ),
        }
    }
    steps.done(format!(
        "image {} ({} steps cached, {} run)",
        built.id, built.steps.cached, built.steps.run
    ));

    steps.start(Step::Push);
    lock.check()?;
    let credentials = login.docker_credentials();
    with_heartbeat(
        crate::steps::image::push::push_image(
            &docker,
            &repository.uri,
            tag,
            credentials.clone(),
            reporter,
        ),
        reporter,
        "push",
        heartbeat,
    )
    .await
    .map_err(image_failed("push"))?;
    let digest = ecr::digest_of(ecr_client, repository, tag)
        .await?
        .ok_or_else(|| Error::Image {
            step: "push",
            source: format!(
                "the push ended but ECR has no tag `{}` in `{}`",
                tag, repository.name
            )
            .into(),
        })?;
    for stage_tag in stage_tags {
        lock.check()?;
        let pushed = with_heartbeat(
            crate::steps::image::push::push_image(
                &docker,
                &repository.uri,
                &stage_tag,
                credentials.clone(),
                &Quiet(reporter),
            ),
            reporter,
            "push",
            heartbeat,
        )
        .await;
        match pushed {
            Ok(_) => {
                reporter.info(&format!(
                    "pushed cache image `{}:{stage_tag}`",
                    repository.name
                ));
                report.cache_images.push(stage_tag);
            }
            Err(error) => warn(
                reporter,
                warnings,
                format!(
                    "the cache image `{}:{stage_tag}` was not pushed ({}); the next build on an empty engine runs its steps",
                    repository.name,
                    with_causes(&error)
                ),
            ),
        }
    }
    steps.done(format!("{}@{digest}", repository.name));
    Ok((image(digest), Some(report)))
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
    fn info(&self, _line: &str) {}
    fn output(&self, _source: &str, _line: &str) {}
    fn status(&self, line: &str) {
        self.0.status(line);
    }
    fn quiet_for(&self) -> Option<Duration> {
        self.0.quiet_for()
    }
}

/// The build as the Docker side needs it; secret build args are read from berth's environment.
fn build_request(
    settings: &Settings,
    build: &Build<'_>,
    local: &str,
) -> Result<crate::steps::image::build::BuildRequest, Error> {
    let release = build.release;
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
        .dockerfile_in_context()
        .unwrap_or(&settings.build.dockerfile)
        .to_path_buf();
    Ok(crate::steps::image::build::BuildRequest {
        context: settings.build.context.clone(),
        dockerfile,
        target: settings.build.target.clone(),
        platform: build.platform.to_owned(),
        args: {
            // The commit, for Dockerfiles that bake their version in (`ARG BERTH_GIT_SHA`).
            let mut args = BTreeMap::from([(BUILD_ARG_GIT_SHA.to_owned(), release.commit.clone())]);
            args.extend(settings.build.args.clone());
            args
        },
        secret_args,
        // Nothing that names one environment or deploy: environments share the image.
        labels: BTreeMap::from([(
            "org.opencontainers.image.revision".to_owned(),
            release.commit.clone(),
        )]),
        tag: local.to_owned(),
        builder: settings.build.builder,
        cache: None,
        credentials: Default::default(),
    })
}

/// Rolls out and waits; `rolled` holds each service's deployment and state, also on failure.
/// The record has each service's previous revision and rollout before `UpdateService` is called,
/// and each outcome after.
#[allow(clippy::too_many_arguments)]
async fn rollout(
    ecs: &Ecs,
    settings: &Settings,
    current: &current::Current,
    targets: &[Target],
    lock: &Lock,
    record: &mut Record,
    steps: &mut Steps<'_>,
    rolled: &mut Vec<Rolled>,
) -> Result<(), Error> {
    steps.start(Step::Rollout);
    record
        .update(|r| {
            for target in targets {
                let runs = current.services[&target.service]
                    .task_definition()
                    .unwrap_or_default();
                // A rerun finds the service on this deploy's revision: the first run's view stands.
                if runs != target.task_definition {
                    r.previous
                        .entry(target.service.clone())
                        .or_insert_with(|| runs.to_owned());
                }
                r.services
                    .entry(target.service.clone())
                    .or_insert_with(|| ServiceRollout {
                        revision: target.task_definition.clone(),
                        deployment_id: None,
                        outcome: RolloutOutcome::Starting,
                    });
            }
        })
        .await?;
    lock.check()?;
    let (started, history) = rollout::start(ecs, settings, targets, steps.reporter).await?;
    *rolled = started;
    record.update(|r| note_rollouts(r, rolled)).await?;
    let waited = rollout::wait(ecs, settings, rolled, history, steps.reporter).await;
    record.update(|r| note_rollouts(r, rolled)).await?;
    waited?;
    if rolled.iter().all(|r| r.already) {
        steps.already_done("services already on this deploy's revisions");
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

/// Each service's deployment and rollout state, as the rollout knows them now.
pub(crate) fn note_rollouts(record: &mut DeployRecord, rolled: &[Rolled]) {
    for rolled in rolled {
        let outcome = match rolled.rollout_state.as_str() {
            "COMPLETED" => RolloutOutcome::Completed,
            "FAILED" => RolloutOutcome::Failed,
            _ => RolloutOutcome::InProgress,
        };
        record.services.insert(
            rolled.service.clone(),
            ServiceRollout {
                revision: rolled.task_definition.clone(),
                deployment_id: Some(rolled.deployment_id.clone()),
                outcome,
            },
        );
    }
}

/// `on_failure = "rollback"`: a service's rollout failed, so every service this deploy moved
/// goes back to the revision it ran before, waited on like a rollout: one commit per environment.
async fn roll_back(
    ecs: &Ecs,
    settings: &Settings,
    lock: &Lock,
    record: &mut Record,
    reporter: &dyn Reporter,
    rolled_back: &mut Vec<Rolled>,
) -> Result<(), Error> {
    let back: Vec<Target> = settings
        .services
        .iter()
        .filter_map(|service| {
            record.value.previous.get(service).map(|revision| Target {
                service: service.clone(),
                task_definition: revision.clone(),
            })
        })
        .collect();
    if back.is_empty() {
        return Ok(());
    }
    reporter.info(&format!(
        "rolling {} back to the revisions they ran before this deploy (`on_failure = \"rollback\"`)",
        code_list(back.iter().map(|t| &t.service))
    ));
    lock.check()?;
    let (started, history) = rollout::start(ecs, settings, &back, reporter).await?;
    *rolled_back = started;
    rollout::wait(ecs, settings, rolled_back, history, reporter).await?;
    record
        .update(|r| {
            for target in &back {
                if let Some(service) = r.services.get_mut(&target.service) {
                    service.outcome = RolloutOutcome::RolledBack;
                }
            }
            r.state = RunState::RolledBack;
        })
        .await?;
    reporter.info(&format!(
        "rolled back: {}",
        back.iter()
            .map(|t| format!("`{}` on `{}`", t.service, arn::short(&t.task_definition)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

async fn migration(
    ecs: &Ecs,
    logs: &aws_sdk_cloudwatchlogs::Client,
    settings: &Settings,
    plan: &migrate::Plan<'_>,
    record: &mut Record,
    steps: &mut Steps<'_>,
) -> Result<Migrated, Error> {
    steps.start(Step::Migrate);
    let migrated = migrate::run(ecs, logs, settings, plan, record, steps.reporter).await?;
    if migrated.already {
        steps.already_done(format!(
            "migration task `{}` of this deploy succeeded",
            arn::short(&migrated.task_arn)
        ));
    } else {
        steps.done(format!("task {} exited 0", arn::short(&migrated.task_arn)));
    }
    Ok(migrated)
}

fn image_failed<E: std::error::Error + Send + Sync + 'static>(
    step: &'static str,
) -> impl FnOnce(E) -> Error {
    move |error| Error::Image {
        step,
        source: Box::new(error),
    }
}

fn short_tag(tag: &str) -> &str {
    &tag[..tag.len().min(12)]
}
