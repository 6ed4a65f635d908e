//! Following the migration task: its log lines streamed live until it stops, then the verdict
//! from its containers' exit codes.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::Task;

use super::decide::stopped_by_ecs;
use super::logs::{LogStream, Tail};
use super::{Migrated, Plan, Setup, TAIL, conclude, describe_task};
use crate::aws::arn;
use crate::error::Error;
use crate::report::{Reporter, Watch};
use crate::state::Record;
use crate::state::record::AttemptOutcome;
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
    let task = wait_for_stop(ecs, logs, setup, task_arn, &mut stream, &mut tail, reporter).await?;
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

/// Follows the task until it stopped, its log lines streamed as they come; a task still running
/// at `timeouts.migration` is left running.
async fn wait_for_stop(
    ecs: &Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    setup: Setup<'_>,
    task_arn: &str,
    stream: &mut LogStream,
    tail: &mut Tail,
    reporter: &dyn Reporter,
) -> Result<Task, Error> {
    let watch = Watch::new(setup.timeouts.heartbeat);
    let looking = look_until_stopped(ecs, logs, setup, task_arn, stream, tail, reporter, &watch);
    watch
        .around(reporter, "waiting on the migration", looking)
        .await
}

/// [`wait_for_stop`]'s looks at the task and its logs, one per poll.
#[allow(clippy::too_many_arguments)]
async fn look_until_stopped(
    ecs: &Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    setup: Setup<'_>,
    task_arn: &str,
    stream: &mut LogStream,
    tail: &mut Tail,
    reporter: &dyn Reporter,
    watch: &Watch,
) -> Result<Task, Error> {
    loop {
        let began = tokio::time::Instant::now();
        let looked = async {
            // The task and its newest lines at once: a page of lines a look.
            let (task, read) = tokio::join!(
                describe_task(ecs, setup, task_arn),
                stream.read(logs, tail, reporter, false)
            );
            read?;
            task
        };
        let task = match looked.await {
            Ok(Some(task)) => task,
            Ok(None) => {
                return Err(Error::MigrationFailed {
                    summary: format!("migration task `{}` is gone", arn::short(task_arn)),
                    hint: "ECS no longer knows the task; rerun the same command: the deploy record decides what happens next".to_owned(),
                });
            }
            // Throttled or unanswered even after the SDK's retries: look again at the next poll.
            Err(error)
                if crate::aws::is_transient(&error)
                    && watch.elapsed() < setup.timeouts.migration =>
            {
                watch.beat(
                    reporter,
                    &format!(
                        "AWS did not answer ({}); looking again",
                        crate::text::with_causes(&error)
                    ),
                );
                setup.timeouts.pause(began).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        if task.last_status() == Some("STOPPED") {
            // Lines can reach CloudWatch after the task stopped: read until they stop coming.
            for _ in 0..3 {
                if !stream.read(logs, tail, reporter, true).await? {
                    break;
                }
            }
            return Ok(task);
        }
        if watch.elapsed() >= setup.timeouts.migration {
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
        watch.beat(
            reporter,
            &format!(
                "migration task `{}`: {}",
                arn::short(task_arn),
                task.last_status().unwrap_or("PROVISIONING")
            ),
        );
        setup.timeouts.pause(began).await;
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
