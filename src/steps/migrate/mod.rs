//! Migrate: one `RunTask` of the new revision with the migration command, its CloudWatch logs
//! streamed live, judged by every essential container's real exit code.
//!
//! A migration never runs twice for one deploy. Each attempt is claimed in the deploy record
//! before its `RunTask`, and passes the record's `clientToken`: a run that resumes a claim whose
//! `RunTask` may have happened gets ECS's task back rather than a second one. The task and how it
//! ended go into the record, which outlives ECS's short memory of stopped tasks; the revision's
//! tags mirror them for people. On timeout or interrupt the task is left running; a rerun
//! attaches to it.

mod decide;
mod follow;
mod start;
pub mod step;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{Service, Tag, Task};
use serde::Serialize;

use crate::aws::arn;
use crate::aws::failed;
use crate::error::Error;
use crate::report::Reporter;
use crate::settings::{MigrationSettings, Settings, Timeouts};
use crate::state::record::AttemptOutcome;
use crate::state::{Lock, Record};
use crate::taskdef::{self, Described, MIGRATION_RESULT_TAG, MIGRATION_TASK_TAG};
pub use decide::ExitCodes;
use decide::{Claim, Decision, Seen, Situation, decide, exit_codes, verdict};

/// Log lines kept for the tail shown when the migration fails.
const TAIL: usize = 20;

/// How the migration ended.
#[derive(Debug, Clone, Serialize)]
pub struct Migrated {
    pub task_arn: String,
    pub exit_codes: ExitCodes,
    /// Done by an earlier run of this deploy.
    pub already: bool,
    pub outcome: AttemptOutcome,
}

impl Migrated {
    /// The latest attempt that has a task, as the record holds it: what a migration that did not
    /// succeed reports.
    pub fn latest(record: &crate::state::record::DeployRecord) -> Option<Self> {
        let attempt = record
            .migration
            .iter()
            .rev()
            .find(|a| a.task_arn.is_some())?;
        Some(Self {
            task_arn: attempt.task_arn.clone()?,
            exit_codes: attempt.exit_codes.clone().unwrap_or_default(),
            already: false,
            outcome: attempt.outcome,
        })
    }
}

/// What the migration needs of the settings: the cluster, the migration's container, command
/// and capacity, and how long and how often to look.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    pub cluster: &'a str,
    pub migration: &'a MigrationSettings,
    pub timeouts: &'a Timeouts,
}

impl<'a> Setup<'a> {
    pub fn of(settings: &'a Settings) -> Self {
        Self {
            cluster: &settings.cluster,
            migration: &settings.migration,
            timeouts: &settings.timeouts,
        }
    }
}

/// Everything the migration task needs, decided before it starts.
pub struct Plan<'a> {
    pub revision: &'a Described,
    /// The web service: network configuration, launch type or capacity providers, platform.
    pub web: &'a Service,
    pub deploy_id: &'a str,
    pub retry: bool,
    /// The environment's lock: checked before `RunTask`.
    pub lock: &'a Lock,
}

pub async fn run(
    ecs: &Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    setup: Setup<'_>,
    plan: &Plan<'_>,
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<Migrated, Error> {
    taskdef::check_migration_container(plan.revision, &setup.migration.container)?;
    let seen = look(ecs, setup, plan, record, reporter).await?;
    let situation = Situation {
        attempts: &record.value.migration,
        seen,
        tags: Claim::of(plan.revision),
        retry: plan.retry,
        now: crate::state::now(),
    };
    // The task to follow, and whether `RunTask` just answered with it (the first look at it).
    let task = match decide(plan.deploy_id, &situation) {
        Decision::Succeeded {
            task_arn,
            exit_codes,
        } => {
            return Ok(Migrated {
                task_arn,
                exit_codes,
                already: true,
                outcome: AttemptOutcome::Succeeded,
            });
        }
        Decision::Attach { task_arn, status } => {
            reporter.info(&format!(
                "this deploy's migration task `{}` is {status}: attaching",
                arn::short(&task_arn)
            ));
            (task_arn, false)
        }
        Decision::Start {
            number,
            token,
            claim,
            replaces,
        } => {
            if let Some(failed) = replaces {
                reporter.info(&format!(
                    "this deploy's migration task `{}` failed; running it again (`--retry-migration`)",
                    arn::short(&failed)
                ));
            }
            let attempt = (number, token, claim);
            let task_arn =
                start::start_attempt(ecs, setup, plan, attempt, record, reporter).await?;
            (task_arn, claim)
        }
        Decision::Refuse { summary, hint } => {
            return Err(Error::MigrationFailed { summary, hint });
        }
    };
    let (task_arn, started) = task;
    follow::follow(
        ecs,
        logs,
        setup,
        plan,
        (&task_arn, started),
        record,
        reporter,
    )
    .await
}

/// What ECS says of the latest attempt's task when the record does not know how it ended; a
/// task found stopped is judged and its outcome recorded.
async fn look(
    ecs: &Client,
    setup: Setup<'_>,
    plan: &Plan<'_>,
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<Seen, Error> {
    let Some(task_arn) = record
        .value
        .migration
        .last()
        .filter(|a| a.outcome == AttemptOutcome::Started)
        .and_then(|a| a.task_arn.clone())
    else {
        return Ok(Seen::NotAsked);
    };
    let Some(task) = crate::task::describe(ecs, setup.cluster, &task_arn).await? else {
        return Ok(Seen::Forgotten);
    };
    if task.last_status() != Some("STOPPED") {
        return Ok(Seen::Running(
            task.last_status().unwrap_or("PROVISIONING").to_owned(),
        ));
    }
    // How it ended is in the record now, where the decision reads it.
    let _ = conclude(ecs, setup, plan, &task, record, reporter).await?;
    Ok(Seen::NotAsked)
}

/// Judges a stopped task of the latest attempt and records how it ended: in the deploy record,
/// which decides, and on the revision's tags, which mirror it.
async fn conclude(
    ecs: &Client,
    setup: Setup<'_>,
    plan: &Plan<'_>,
    task: &Task,
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<Result<ExitCodes, String>, Error> {
    let judged = verdict(plan.revision, &setup.migration.container, task);
    let task_arn = task.task_arn().unwrap_or_default();
    let exit_codes = exit_codes(task);
    let result = if judged.is_ok() {
        "succeeded"
    } else {
        "failed"
    };
    // The record decides; the tags, for people, are written beside it.
    let recording = record.update(|r| {
        if let Some(attempt) = r.migration.last_mut() {
            attempt.task_arn = Some(task_arn.to_owned());
            attempt.exit_codes = Some(exit_codes);
            match &judged {
                Ok(_) => attempt.outcome = AttemptOutcome::Succeeded,
                Err(summary) => {
                    attempt.outcome = AttemptOutcome::Failed;
                    attempt.summary = Some(summary.clone());
                }
            }
        }
    });
    let (recorded, ()) = tokio::join!(
        recording,
        mirror(ecs, plan, Some(task_arn), result, reporter)
    );
    recorded?;
    Ok(judged)
}

/// Mirrors the migration's state on the revision's tags, for people reading the revision. The
/// record decides; a tag that cannot be written is a warning.
async fn mirror(
    ecs: &Client,
    plan: &Plan<'_>,
    task_arn: Option<&str>,
    result: &str,
    reporter: &dyn Reporter,
) {
    let mut request = ecs.tag_resource().resource_arn(&plan.revision.arn).tags(
        Tag::builder()
            .key(MIGRATION_RESULT_TAG)
            .value(result)
            .build(),
    );
    if let Some(task_arn) = task_arn {
        request = request.tags(
            Tag::builder()
                .key(MIGRATION_TASK_TAG)
                .value(task_arn)
                .build(),
        );
    }
    if let Err(error) = request.send().await {
        reporter.info(&format!(
            "warning: the migration's state was not mirrored on the revision's tags: {}",
            crate::text::with_causes(&failed("tagging the revision", error))
        ));
    }
}
