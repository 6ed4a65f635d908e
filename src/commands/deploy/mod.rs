//! A deploy, from settings to a running service: build → push → register → roll out → migrate
//! (or migrate before the rollout, with `migrate = "before"`).
//!
//! Every step first looks in AWS for the result it would produce and reports "already done"
//! instead of redoing it: the tag in ECR (no build, no push), a revision tagged with the deploy
//! id (no new revision), the service on that revision (only wait), a migration task started by
//! the deploy id (attach, or skip when it succeeded). Nothing depends on a local file, so a rerun
//! on a fresh machine carries on where the last run stopped.

mod before;
mod finished;
mod hooked;
mod locked;
mod on_failure;
mod resume;

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use serde::Serialize;

use crate::aws;
use crate::aws::ecr::Image;
use crate::aws::services;
use crate::current::Current;
use crate::error::Error;
use crate::flags::DeployOptions;
use crate::release::Release;
use crate::report::Reporter;
use crate::settings::OnCancel;
use crate::settings::Settings;
use crate::state::images::Tested;
use crate::state::record::RolloutOutcome;
use crate::state::record::{DeployRecord, MovedTarget, OpeningNote};
use crate::state::{Held, Lock, Record, Stored, lock};
use crate::steps::image::cache::BuildReport;
use crate::steps::migrate::Migrated;
use crate::steps::prepare::{self, Local};
use crate::steps::rollout::{self as rollout_steps, Rolled, step as rollout};
use crate::steps::schedules::Cost;
use crate::steps::{Ledger, StepRecord};
use crate::text::code_list;

/// What a deploy did, step by step: the record `--output json` prints, also when it failed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub env: String,
    pub deploy_id: String,
    pub commit: String,
    pub image: Option<Image>,
    /// `requires`: the deploy of another environment that succeeded with the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tested: Option<TestedIn>,
    /// `promote_from`: where the image came from, and what its copy moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted: Option<crate::steps::promote::Promoted>,
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
    /// What finding the scheduled targets cost: rules and schedules read, seconds. `None` when
    /// they were not looked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub survey: Option<Cost>,
    /// Revisions deregistered (`keep_revisions`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deregistered: Vec<String>,
    pub steps: Vec<StepRecord>,
    /// Where each service's rollout time went, from its tasks' timestamps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<crate::state::record::ServiceTimeline>,
    /// The hooks of `[hooks]` that ran, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::state::record::HookRan>,
    /// What went wrong without failing the deploy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The deploy of environment `env` that succeeded with the image.
#[derive(Debug, Clone, Serialize)]
pub struct TestedIn {
    pub env: String,
    #[serde(flatten)]
    pub tested: Tested,
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
    let mut ledger = Ledger::new(reporter);
    let mut held = Held::default();
    let result = tokio::select! {
        result = run(settings, options, &mut report, &mut ledger, &mut held) => result,
        () = interrupted => Err(Error::Interrupted),
    };
    if matches!(result, Err(Error::Interrupted)) && settings.on_cancel == OnCancel::Rollback {
        on_cancel(settings, &report, &mut held, reporter).await;
    }
    (report.steps, report.warnings) = ledger.finish(result.as_ref().err());
    hooked::after(settings, &result, &mut report, &mut held, reporter).await;
    held.finish(&result, &mut report.warnings, reporter).await;
    (report, result)
}

/// How long a cancelled deploy waits for ECS to take each rollback it asked for: CircleCI kills
/// a cancelled job's processes soon after its SIGTERM.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `on_cancel = "rollback"`: ECS rolls back each service deployment of this deploy still in
/// flight, and the record says which services went back. They are read from ECS, not from what
/// the run had noted: a cancel may land after `UpdateService` answered and before the rollout's
/// start was noted. A service on one of this deploy's revisions runs this deploy's deployment.
async fn on_cancel(settings: &Settings, report: &Report, held: &mut Held, reporter: &dyn Reporter) {
    let ours: Vec<&String> = report.revisions.values().collect();
    if ours.is_empty() {
        return;
    }
    let Ok(config) = aws::sdk_config(settings).await else {
        return;
    };
    let ecs = aws::ecs_client(&config);
    let Ok(services) = services::describe(&ecs, &settings.cluster, &settings.services).await else {
        return;
    };
    let named: Vec<(String, String)> = services
        .iter()
        .filter(|(_, s)| {
            s.task_definition()
                .is_some_and(|t| ours.iter().any(|o| *o == t))
        })
        .filter_map(|(name, s)| Some((name.clone(), s.current_service_deployment()?.to_owned())))
        .collect();
    let stopped =
        rollout_steps::deployments::stop_in_flight(&ecs, &named, CANCEL_GRACE, reporter).await;
    if let Some(record) = held.record.as_mut()
        && !stopped.is_empty()
    {
        // Best effort: the run ends either way, and the record's state says it was interrupted.
        let _ = record
            .update(|r| {
                for service in &stopped {
                    if let Some(rollout) = r.services.get_mut(service) {
                        rollout.outcome = RolloutOutcome::RolledBack;
                    }
                }
            })
            .await;
    }
}

/// The preparation, then the lock, then the deploy proper under it. Everything a deploy checks
/// runs before the lock: a refusal writes nothing, S3 included.
async fn run(
    settings: &Settings,
    options: DeployOptions,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    held: &mut Held,
) -> Result<(), Error> {
    let reporter = ledger.reporter;
    let local = prepare::local(settings, options)?;
    let release = &local.release;
    announce(settings, release, report, reporter);
    let config = aws::sdk_config(settings).await?;
    let clients = Clients::new(&config);
    let mut read = before::read(&config, &clients, settings, &local).await?;
    if let Some(answer) = options.resume {
        let earlier = read.prepared.earlier.as_ref().map(|stored| &stored.value);
        resume::check(answer, &settings.env, &release.deploy_id, earlier)?;
    }
    let looked = (&read.current, read.prepared.tag.as_str());
    report.tested = before::guard(&config, settings, looked, options.force, ledger).await?;
    if let Some(earlier) = &read.prepared.earlier
        && !options.retry_migration
    {
        let finished = finished::Finished {
            settings,
            current: &read.current,
            prepared: &read.prepared,
            earlier: &earlier.value,
            lock: &read.lock_file(),
        };
        if finished
            .reported(&clients.ecr, &config, report, ledger)
            .await?
        {
            return Ok(());
        }
    }

    // One deploy per environment: everything below runs under the lock.
    let want = want(release, options);
    let wait = (&want, options.lock_wait);
    let under = (settings, &local, &clients);
    let (untouched, ran) = lock_and_hook(under, &mut read, wait, (report, held), reporter).await?;
    let Some(lock) = held.lock.as_ref() else {
        return Ok(());
    };
    // Read before the lock and untouched since, the record is written over that read.
    let first = untouched.then(|| read.prepared.earlier.clone());
    // Journaled as the newest deploy on the environment (with the lock already, when it was
    // taken straight over the preparation's read) before anything is registered.
    lock.journal(&want).await?;
    let note = opening_note(before::previous(&read, settings), ran);
    let opening: (_, _, OpeningNote<'_>) = (reporter, first, &note);
    let record = started(lock, &want, settings, &mut held.record, opening);
    let before::Read {
        current, prepared, ..
    } = read;
    let cx = Context {
        settings,
        options,
        local: &local,
        config: &config,
        clients: &clients,
        lock,
        current: &current,
    };
    let result = tokio::select! {
        result = locked::locked(&cx, prepared, report, ledger, record) => result,
        why = lock.lost() => Err(Error::LockLost { why }),
    };
    match result {
        Err(Error::LockLost { why }) => Err(Error::LockLost {
            why: lock.tell_loss(why).await,
        }),
        other => other,
    }
}

/// The lock taken, the reads made again unless it was taken straight over them, and the
/// `before_deploy` hook run: the last things before the deploy's first write of its own. Says
/// whether the lock was taken straight over the preparation's read, and the hooks that ran.
async fn lock_and_hook(
    (settings, local, clients): (&Settings, &Local, &Clients),
    read: &mut before::Read,
    wait: (&lock::Want, std::time::Duration),
    (report, held): (&mut Report, &mut Held),
    reporter: &dyn Reporter,
) -> Result<(bool, Vec<crate::state::record::HookRan>), Error> {
    // A deploy that started (a record, or the journal's entry) ran its `before_deploy` then;
    // read before taking the lock, which takes the preparation's read of the lock file.
    let began = read.prepared.earlier.is_some() || read.lock_file().lists(&wait.0.deploy_id);
    let bucket_made = !read.bucket;
    let (lock, untouched) = before::lock(read, clients, settings, wait, reporter).await?;
    let lock: &Lock = held.lock.insert(lock);
    if !untouched {
        before::again(read, clients, settings, (local, lock)).await?;
    }
    let hooks_before = report.hooks.len();
    let tag = read.prepared.tag.clone();
    let seen = (began, bucket_made);
    hooked::before_deploy(settings, (report, &tag), held, seen, reporter).await?;
    Ok((untouched, report.hooks[hooks_before..].to_vec()))
}

/// What the record's opening write notes: each service's revision from before when the rollout
/// comes next ([`before::previous`]), and the `before_deploy` hook that ran.
fn opening_note(
    previous: BTreeMap<String, String>,
    ran: Vec<crate::state::record::HookRan>,
) -> impl Fn(&mut DeployRecord) + Sync {
    move |r: &mut DeployRecord| {
        rollout::note_previous(r, &previous);
        for hook in &ran {
            if !r.hooks.contains(hook) {
                r.hooks.push(hook.clone());
            }
        }
    }
}

/// What this run wants of the lock: the deploy's own, stale deploys refused unless forced.
fn want(release: &Release, options: DeployOptions) -> lock::Want {
    lock::Want {
        who: lock::who(),
        run: lock::run_id(),
        command: "deploy",
        deploy_id: release.deploy_id.clone(),
        commit: release.commit.clone(),
        check_stale: true,
        force: options.force,
    }
}

/// Says which deploy this is, and puts its id and commit in the report.
fn announce(settings: &Settings, release: &Release, report: &mut Report, reporter: &dyn Reporter) {
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
}

/// The deploy's record opened (or resumed), `held` so that how the run ends is written to it. It
/// may be opened beside the registration: the lock's journal lists the deploy before either, and
/// a rerun that finds no record of a journaled deploy searches for its revisions.
async fn started<'a>(
    lock: &Lock,
    want: &lock::Want,
    settings: &Settings,
    held: &'a mut Option<Record>,
    (reporter, first, note): (
        &dyn Reporter,
        Option<Option<Stored<DeployRecord>>>,
        OpeningNote<'_>,
    ),
) -> Result<&'a mut Record, Error> {
    let fresh = DeployRecord {
        deploy_id: want.deploy_id.clone(),
        env: settings.env.clone(),
        commit: want.commit.clone(),
        ..DeployRecord::default()
    };
    let opened = Record::open(lock.store(), fresh, (&want.run, note), first).await;
    let (record, existed) = opened.map(|(record, existed)| (held.insert(record), existed))?;
    if existed {
        reporter.info(&format!(
            "resuming deploy `{}` (run {}): its record says what is done",
            want.deploy_id, record.value.runs
        ));
    }
    Ok(record)
}

/// The AWS clients a deploy uses.
struct Clients {
    ecs: aws_sdk_ecs::Client,
    ecr: aws_sdk_ecr::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    tagging: aws_sdk_resourcegroupstagging::Client,
}

impl Clients {
    /// The clients the preparation reads with.
    fn aws(&self) -> prepare::Readers<'_> {
        prepare::Readers {
            ecs: &self.ecs,
            ecr: &self.ecr,
            tagging: &self.tagging,
        }
    }

    fn new(config: &SdkConfig) -> Self {
        Self {
            ecs: aws::ecs_client(config),
            ecr: aws::ecr_client(config),
            logs: aws::logs_client(config),
            tagging: aws::tagging_client(config),
        }
    }
}

/// What the deploy under the lock works from.
struct Context<'a> {
    settings: &'a Settings,
    options: DeployOptions,
    /// The task-definition files and the release.
    local: &'a Local,
    config: &'a SdkConfig,
    clients: &'a Clients,
    lock: &'a Lock,
    /// What the deploy starts from, read under the lock.
    current: &'a Current,
}
