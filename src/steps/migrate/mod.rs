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
pub mod logs;
pub mod step;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{ContainerOverride, PropagateTags, Service, Tag, Task, TaskOverride};
use serde::Serialize;

use crate::aws::arn;
use crate::aws::failed;
use crate::error::Error;
use crate::report::{Reporter, Watch};
use crate::settings::Settings;
use crate::state::record::{Attempt, AttemptOutcome};
use crate::state::{Lock, Record};
use crate::steps::migrate::logs::{LogStream, Tail};
use crate::taskdef::{self, Described, MIGRATION_RESULT_TAG, MIGRATION_TASK_TAG};
use crate::text::short_duration;
pub use decide::ExitCodes;
use decide::{
    Capacity, Claim, Decision, Seen, Situation, capacity, decide, exit_codes, stopped_by_ecs,
    verdict,
};

/// Log lines kept for the tail shown when the migration fails.
const TAIL: usize = 20;

/// How the migration ended.
#[derive(Debug, Clone, Serialize)]
pub struct Migrated {
    pub task_arn: String,
    pub exit_codes: ExitCodes,
    /// Done by an earlier run of this deploy.
    pub already: bool,
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
    settings: &Settings,
    plan: &Plan<'_>,
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<Migrated, Error> {
    taskdef::check_migration_container(plan.revision, &settings.migration.container)?;
    let seen = look(ecs, settings, plan, record, reporter).await?;
    let situation = Situation {
        attempts: &record.value.migration,
        seen,
        tags: Claim::of(plan.revision),
        retry: plan.retry,
        now: crate::state::now(),
    };
    let task = match decide(plan.deploy_id, &situation) {
        Decision::Succeeded {
            task_arn,
            exit_codes,
        } => {
            return Ok(Migrated {
                task_arn,
                exit_codes,
                already: true,
            });
        }
        Decision::Attach { task_arn, status } => {
            reporter.info(&format!(
                "this deploy's migration task `{}` is {status}: attaching",
                arn::short(&task_arn)
            ));
            task_arn
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
            start_attempt(ecs, settings, plan, attempt, record, reporter).await?
        }
        Decision::Refuse { summary, hint } => {
            return Err(Error::MigrationFailed { summary, hint });
        }
    };
    follow(ecs, logs, settings, plan, &task, record, reporter).await
}

/// What ECS says of the latest attempt's task when the record does not know how it ended; a
/// task found stopped is judged and its outcome recorded.
async fn look(
    ecs: &Client,
    settings: &Settings,
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
    let Some(task) = describe_task(ecs, settings, &task_arn).await? else {
        return Ok(Seen::Forgotten);
    };
    if task.last_status() != Some("STOPPED") {
        return Ok(Seen::Running(
            task.last_status().unwrap_or("PROVISIONING").to_owned(),
        ));
    }
    // How it ended is in the record now, where the decision reads it.
    let _ = conclude(ecs, settings, plan, &task, record, reporter).await?;
    Ok(Seen::NotAsked)
}

/// Starts attempt `number` with its `token`: claimed in the record first (`claim`), or resumed
/// as an earlier run claimed it; the task's ARN recorded once ECS names it.
async fn start_attempt(
    ecs: &Client,
    settings: &Settings,
    plan: &Plan<'_>,
    (number, token, claim): (u32, String, bool),
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<String, Error> {
    if claim {
        // The claim comes first: whatever happens between here and the task's ARN being
        // recorded, a rerun resumes this attempt with its token instead of starting another.
        record
            .update(|r| {
                r.migration.push(Attempt {
                    number,
                    client_token: token.clone(),
                    claimed_at: crate::state::now(),
                    task_arn: None,
                    outcome: AttemptOutcome::Claimed,
                    exit_codes: None,
                    summary: None,
                });
            })
            .await?;
        mirror(ecs, plan, None, "started", reporter).await;
    } else {
        reporter.info(&format!(
            "resuming migration attempt {number}, claimed by an earlier run: ECS starts no second task for its token"
        ));
    }
    plan.lock.check()?;
    let task_arn = start(ecs, settings, plan, &token, record, reporter).await?;
    record
        .update(|r| {
            if let Some(attempt) = r.migration.last_mut() {
                attempt.task_arn = Some(task_arn.clone());
                attempt.outcome = AttemptOutcome::Started;
            }
        })
        .await?;
    mirror(ecs, plan, Some(&task_arn), "started", reporter).await;
    Ok(task_arn)
}

async fn start(
    ecs: &Client,
    settings: &Settings,
    plan: &Plan<'_>,
    token: &str,
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<String, Error> {
    let output = match run_task(ecs, settings, plan, token).send().await {
        Ok(output) => output,
        // Same token, other parameters: a task was started for this attempt before, with other
        // settings (the web service's network configuration changed since). The attempt is over:
        // whether that task migrated is for a person to check.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conflict_exception()) =>
        {
            return Err(started_otherwise(&e, plan, record).await?);
        }
        Err(e) => {
            return Err(match failed("starting the migration task", e) {
                // ECS refused the request itself (bad network settings, unknown family): the
                // migration did not start.
                Error::Aws {
                    action,
                    environment: false,
                    source,
                    ..
                } => Error::MigrationFailed {
                    summary: format!("{action} failed: {source}"),
                    hint: "the web service's network settings and launch type are used for the migration task"
                        .to_owned(),
                },
                other => other,
            });
        }
    };
    let arn = started_task(&output)?;
    reporter.info(&format!(
        "migration task `{}` started: `{}`",
        arn::short(&arn),
        settings.migration.command.join(" ")
    ));
    Ok(arn)
}

/// `RunTask` of the migration: the new revision with the migration command, started by the
/// deploy id, with the web service's network settings, platform and capacity, and the attempt's
/// token.
fn run_task(
    ecs: &Client,
    settings: &Settings,
    plan: &Plan<'_>,
    token: &str,
) -> aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder {
    let web = plan.web;
    let request = ecs
        .run_task()
        .client_token(token)
        .cluster(&settings.cluster)
        .task_definition(&plan.revision.arn)
        .count(1)
        .started_by(plan.deploy_id)
        .propagate_tags(PropagateTags::TaskDefinition)
        .tags(
            Tag::builder()
                .key(taskdef::DEPLOY_ID_TAG)
                .value(plan.deploy_id)
                .build(),
        )
        .overrides(
            TaskOverride::builder()
                .container_overrides(
                    ContainerOverride::builder()
                        .name(&settings.migration.container)
                        .set_command(Some(settings.migration.command.clone()))
                        .build(),
                )
                .build(),
        )
        .set_network_configuration(web.network_configuration().cloned())
        .set_platform_version(web.platform_version().map(str::to_owned));
    match capacity(
        web,
        settings.migration.capacity_provider_strategy.as_deref(),
    ) {
        Capacity::Strategy(strategy) => request.set_capacity_provider_strategy(Some(strategy)),
        Capacity::LaunchType(launch_type) => request.launch_type(launch_type),
        Capacity::ClusterDefault => request,
    }
}

/// ECS refused the attempt's token with other parameters: the attempt is recorded as failed, and
/// the error says what to check.
async fn started_otherwise(
    error: &(dyn std::error::Error + 'static),
    plan: &Plan<'_>,
    record: &mut Record,
) -> Result<Error, Error> {
    let summary = format!(
        "was started before with other parameters, and ECS refused to start it again: {}",
        crate::text::with_causes(error)
    );
    record
        .update(|r| {
            if let Some(attempt) = r.migration.last_mut() {
                attempt.outcome = AttemptOutcome::Failed;
                attempt.summary = Some(summary.clone());
            }
        })
        .await?;
    Ok(Error::MigrationFailed {
        summary: format!("this deploy's migration attempt {summary}"),
        hint: format!(
            "check the task this deploy started (`aws ecs list-tasks --started-by {}`, running or stopped) and the database; `--retry-migration` starts a new attempt",
            plan.deploy_id
        ),
    })
}

/// The task `RunTask` started, or why there is none.
fn started_task(output: &aws_sdk_ecs::operation::run_task::RunTaskOutput) -> Result<String, Error> {
    if let Some(failure) = output.failures().first() {
        return Err(Error::MigrationFailed {
            summary: format!(
                "ECS would not start the migration task: {} {}",
                failure.reason().unwrap_or("no reason"),
                failure.detail().unwrap_or_default()
            ),
            hint: "check the cluster's capacity and the web service's network settings".to_owned(),
        });
    }
    output
        .tasks()
        .first()
        .and_then(|t| t.task_arn())
        .map(str::to_owned)
        .ok_or_else(|| {
            // Neither a task nor a failure: nothing to follow, and the claim stays for the rerun
            // to resume with its token.
            Error::MigrationFailed {
                summary: "ECS answered `RunTask` with neither a task nor a failure".to_owned(),
                hint: "rerun the same command: it asks ECS again with the same token, which starts no second task".to_owned(),
            }
        })
}

/// Streams the task's log lines until it stops, then judges it.
async fn follow(
    ecs: &Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    settings: &Settings,
    plan: &Plan<'_>,
    task_arn: &str,
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<Migrated, Error> {
    let container = &settings.migration.container;
    let mut stream = LogStream::new("migrate", plan.revision, container, task_arn);
    let mut tail = Tail::new(TAIL);
    let task = wait_for_stop(
        ecs,
        logs,
        settings,
        task_arn,
        &mut stream,
        &mut tail,
        reporter,
    )
    .await?;
    match conclude(ecs, settings, plan, &task, record, reporter).await? {
        Ok(exit_codes) => {
            for line in stopped_by_ecs(plan.revision, container, &task) {
                reporter.info(&line);
            }
            Ok(Migrated {
                task_arn: task_arn.to_owned(),
                exit_codes,
                already: false,
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
    settings: &Settings,
    task_arn: &str,
    stream: &mut LogStream,
    tail: &mut Tail,
    reporter: &dyn Reporter,
) -> Result<Task, Error> {
    let watch = Watch::new(settings.timeouts.heartbeat);
    loop {
        let looked = async {
            let task = describe_task(ecs, settings, task_arn).await?;
            stream.read(logs, tail, reporter).await?;
            Ok::<_, Error>(task)
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
                    && watch.elapsed() < settings.timeouts.migration =>
            {
                watch.beat(
                    reporter,
                    &format!(
                        "AWS did not answer ({}); looking again",
                        crate::text::with_causes(&error)
                    ),
                );
                settings.timeouts.pause(watch.elapsed()).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        if task.last_status() == Some("STOPPED") {
            // Lines can reach CloudWatch after the task stopped: read until they stop coming.
            for _ in 0..3 {
                if !stream.read(logs, tail, reporter).await? {
                    break;
                }
            }
            return Ok(task);
        }
        if watch.elapsed() >= settings.timeouts.migration {
            return Err(Error::MigrationFailed {
                summary: format!(
                    "migration task `{}` is still {} after {}; it was left running",
                    arn::short(task_arn),
                    task.last_status().unwrap_or("running"),
                    short_duration(settings.timeouts.migration)
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
        settings.timeouts.pause(watch.elapsed()).await;
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
    let why = if task.stop_code().map(|c| c.as_str()) == Some("TaskFailedToStart") {
        "the task never started: ECS's reason above says why (an image it cannot pull, a secret it cannot read, no capacity)"
    } else if tail.is_empty() {
        "the task wrote no log lines to CloudWatch; the exit codes above say how it ended"
    } else {
        "the log lines above say why"
    };
    Error::MigrationFailed {
        summary: format!("migration task `{}` {summary}", arn::short(task_arn)),
        hint: format!("{why}; fix it and rerun with `--retry-migration`"),
    }
}

/// Judges a stopped task of the latest attempt and records how it ended: in the deploy record,
/// which decides, and on the revision's tags, which mirror it.
async fn conclude(
    ecs: &Client,
    settings: &Settings,
    plan: &Plan<'_>,
    task: &Task,
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<Result<ExitCodes, String>, Error> {
    let judged = verdict(plan.revision, &settings.migration.container, task);
    let task_arn = task.task_arn().unwrap_or_default();
    let exit_codes = exit_codes(task);
    record
        .update(|r| {
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
        })
        .await?;
    let result = if judged.is_ok() {
        "succeeded"
    } else {
        "failed"
    };
    mirror(ecs, plan, Some(task_arn), result, reporter).await;
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

/// The task as ECS describes it, or `None` once ECS has forgotten it.
async fn describe_task(
    ecs: &Client,
    settings: &Settings,
    task_arn: &str,
) -> Result<Option<Task>, Error> {
    let output = ecs
        .describe_tasks()
        .cluster(&settings.cluster)
        .tasks(task_arn)
        .send()
        .await
        .map_err(|e| failed("describing the migration task", e))?;
    Ok(output.tasks().first().cloned())
}
