//! Following the migration task: its log lines streamed live until it stops, then the verdict
//! from its containers' exit codes.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::Task;

use super::{Migrated, Plan, Setup, TAIL, conclude};
use crate::aws::arn;
use crate::error::Error;
use crate::report::Reporter;
use crate::state::Record;
use crate::state::record::AttemptOutcome;
use crate::task::decide::stopped_by_ecs;
use crate::task::logs::{LogStream, Tail};
use crate::task::{self, Ended, Watching};
use crate::text::short_duration;

/// Streams the task's log lines until it stops, then judges it. `started`: `RunTask` has just
/// answered with the task, so the first look waits a poll.
pub(super) async fn follow(
    ecs: &Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    setup: Setup<'_>,
    plan: &Plan<'_>,
    (task_arn, started): (&str, bool),
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<Migrated, Error> {
    let container = &setup.migration.container;
    let mut stream = LogStream::new("migrate", plan.revision, container, task_arn);
    let mut tail = Tail::new(TAIL);
    if started {
        setup.timeouts.pause(tokio::time::Instant::now()).await;
    }
    let watching = Watching {
        cluster: setup.cluster,
        timeouts: setup.timeouts,
        limit: setup.timeouts.migration,
        what: "migration task",
    };
    let ended = task::follow(
        (ecs, logs),
        watching,
        task_arn,
        (&mut stream, &mut tail),
        reporter,
    )
    .await?;
    let task = match ended {
        Ended::Stopped(task) => task,
        Ended::Gone => {
            return Err(Error::MigrationFailed {
                summary: format!("migration task `{}` is gone", arn::short(task_arn)),
                hint: "ECS no longer knows the task; rerun the same command: the deploy record decides what happens next".to_owned(),
            });
        }
        Ended::Running(task) => {
            return Err(Error::MigrationFailed {
                summary: format!(
                    "migration task `{}` is still {} after {}; it was left running",
                    arn::short(task_arn),
                    task.last_status().unwrap_or("running"),
                    short_duration(setup.timeouts.migration)
                ),
                hint: "rerun the same command to attach to it again, or raise `timeouts.migration`"
                    .to_owned(),
            });
        }
    };
    match conclude(ecs, setup, plan, &task, record, reporter).await? {
        Ok(exit_codes) => {
            for line in stopped_by_ecs(plan.revision, container, &task) {
                reporter.info(&line);
            }
            Ok(Migrated {
                task_arn: task_arn.to_owned(),
                exit_codes,
                already: false,
                outcome: AttemptOutcome::Succeeded,
            })
        }
        Err(summary) => Err(migration_failed(task_arn, &task, &tail, &summary, reporter)),
    }
}

/// The error of a migration that failed: its last log lines shown, and where to look for why.
fn migration_failed(
    task_arn: &str,
    task: &Task,
    tail: &Tail,
    summary: &str,
    reporter: &dyn Reporter,
) -> Error {
    if !tail.is_empty() {
        reporter.info("last log lines:");
        for line in tail.lines() {
            reporter.output("migrate", line);
        }
    }
    let not_run = task
        .containers()
        .iter()
        .find(|c| matches!(c.exit_code(), Some(126 | 127)));
    let hint = if let Some(container) = not_run {
        format!(
            "the command could not be run in container `{}` (exit {}: not found or not executable): fix `migration.command` in berth.toml and deploy again; `--retry-migration` would run the same command",
            container.name().unwrap_or("?"),
            container.exit_code().unwrap_or_default()
        )
    } else if task.stop_code().map(|c| c.as_str()) == Some("TaskFailedToStart") {
        "the task never started: ECS's reason above says why (an image it cannot pull, a secret it cannot read, no capacity); fix that and rerun with `--retry-migration`".to_owned()
    } else {
        let why = if tail.is_empty() {
            "the task wrote no log lines to CloudWatch; the exit codes above say how it ended"
        } else {
            "the log lines above say why"
        };
        format!(
            "{why}; a failing migration needs a fix in a new commit, deployed; `--retry-migration` runs this deploy's migration again, for a failure that passes (a database that was unreachable)"
        )
    };
    Error::MigrationFailed {
        summary: format!("migration task `{}` {summary}", arn::short(task_arn)),
        hint,
    }
}
