//! Following `berth run`'s task to its end, and the exit code its end makes.

use aws_sdk_ecs::types::Task;

use super::{Clients, Ran};
use crate::aws::arn;
use crate::error::Error;
use crate::flags::RunOptions;
use crate::report::Reporter;
use crate::settings::Settings;
use crate::task::decide::{exit_codes, stopped_by_ecs, verdict};
use crate::task::logs::{LogStream, Tail};
use crate::task::{self, Ended, Watching};
use crate::taskdef::Described;

/// Log lines kept for the tail shown again when the command fails.
const TAIL: usize = 20;

/// Follows the task to its end; the failure, if the command did not exit 0.
pub(super) async fn follow(
    clients: &Clients,
    settings: &Settings,
    options: &RunOptions,
    revision: &Described,
    ran: &mut Ran,
    reporter: &dyn Reporter,
) -> Result<Option<Error>, Error> {
    let limit = options.timeout.unwrap_or(settings.timeouts.migration);
    let watching = Watching {
        cluster: &settings.cluster,
        timeouts: &settings.timeouts,
        limit,
        what: "task",
    };
    let mut stream = LogStream::new("run", revision, &ran.container, &ran.task_arn);
    let mut tail = Tail::new(TAIL);
    let ended = task::follow(
        (&clients.ecs, &clients.logs),
        watching,
        &ran.task_arn,
        (&mut stream, &mut tail),
        reporter,
    )
    .await?;
    let id = arn::short(&ran.task_arn).to_owned();
    let task = match ended {
        Ended::Stopped(task) => task,
        Ended::Running(task) => {
            ran.status = task.last_status().unwrap_or("RUNNING").to_owned();
            return Ok(Some(Error::TaskFailed {
                summary: format!(
                    "task `{id}` is still {} after {}; it was left running",
                    ran.status,
                    crate::text::short_duration(limit)
                ),
                hint: format!(
                    "`berth run --env {} --attach {id}` follows it again; `--timeout` sets how long berth follows",
                    settings.env
                ),
                exit_code: None,
            }));
        }
        Ended::Gone => {
            return Ok(Some(Error::TaskFailed {
                summary: format!("task `{id}` is gone: ECS no longer knows it"),
                hint: "ECS forgets a stopped task after about an hour; its logs are in CloudWatch"
                    .to_owned(),
                exit_code: None,
            }));
        }
    };
    Ok(judged(revision, &task, &tail, ran, reporter))
}

/// The stopped task judged as a migration is: the command's container decides, by its exit
/// code, which becomes berth's.
fn judged(
    revision: &Described,
    task: &Task,
    tail: &Tail,
    ran: &mut Ran,
    reporter: &dyn Reporter,
) -> Option<Error> {
    ran.status = task.last_status().unwrap_or("STOPPED").to_owned();
    ran.exit_codes = exit_codes(task);
    ran.exit_code = ran.exit_codes.get(&ran.container).copied().flatten();
    ran.stop_code = task.stop_code().map(|c| c.as_str().to_owned());
    ran.stopped_reason = task.stopped_reason().map(str::to_owned);
    let id = arn::short(&ran.task_arn).to_owned();
    match verdict(revision, &ran.container, task) {
        Ok(_) => {
            for line in stopped_by_ecs(revision, &ran.container, task) {
                reporter.info(&line);
            }
            reporter.info(&format!("task `{id}`: `{}` exited 0", ran.container));
            None
        }
        Err(summary) => {
            if !tail.is_empty() {
                reporter.info("last log lines:");
                for line in tail.lines() {
                    reporter.output("run", line);
                }
            }
            // The command's own code, when it ran and failed; 3 (the task failed otherwise)
            // when it exited 0 or never ran.
            let exit_code = ran
                .exit_code
                .filter(|code| *code != 0)
                .map(|code| u8::try_from(code).unwrap_or(u8::MAX));
            let hint = if task.stop_code().map(|c| c.as_str()) == Some("TaskFailedToStart") {
                "the task never started: ECS's reason above says why (an image it cannot pull, a secret it cannot read, no capacity)".to_owned()
            } else if matches!(ran.exit_code, Some(126 | 127)) {
                "the command could not be run (exit 126 or 127: not found or not executable in the image)".to_owned()
            } else {
                "the log lines above say why".to_owned()
            };
            Some(Error::TaskFailed {
                summary: format!("task `{id}` {summary}"),
                hint,
                exit_code,
            })
        }
    }
}
