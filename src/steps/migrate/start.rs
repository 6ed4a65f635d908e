//! Starting the migration task: the attempt claimed in the record before `RunTask`, the request
//! with the web service's network settings, and what ECS answers.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::Tag;

use super::decide::capacity;
use super::{Plan, Setup, mirror};
use crate::aws::arn;
use crate::aws::failed;
use crate::error::Error;
use crate::report::Reporter;
use crate::state::Record;
use crate::state::record::{Attempt, AttemptOutcome};
use crate::task::{self, OneOff};
use crate::taskdef;

/// Starts attempt `number` with its `token`: claimed in the record first (`claim`), or resumed
/// as an earlier run claimed it; the task's ARN recorded once ECS names it.
pub(super) async fn start_attempt(
    ecs: &Client,
    setup: Setup<'_>,
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
    } else {
        reporter.info(&format!(
            "resuming migration attempt {number}, claimed by an earlier run: ECS starts no second task for its token"
        ));
    }
    plan.lock.check()?;
    let task_arn = start(ecs, setup, plan, &token, record, reporter).await?;
    // The record decides; the tags, for people, are written beside it.
    let (recorded, ()) = tokio::join!(
        record.update(|r| {
            if let Some(attempt) = r.migration.last_mut() {
                attempt.task_arn = Some(task_arn.clone());
                attempt.outcome = AttemptOutcome::Started;
            }
        }),
        mirror(ecs, plan, Some(&task_arn), "started", reporter)
    );
    recorded?;
    Ok(task_arn)
}

async fn start(
    ecs: &Client,
    setup: Setup<'_>,
    plan: &Plan<'_>,
    token: &str,
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<String, Error> {
    let output = match run_task(ecs, setup, plan, token).send().await {
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
        setup.migration.command.join(" ")
    ));
    Ok(arn)
}

/// `RunTask` of the migration: the new revision with the migration command, started by the
/// deploy id and tagged with it, with the web service's network settings, platform and capacity
/// (never Spot), and the attempt's token.
fn run_task(
    ecs: &Client,
    setup: Setup<'_>,
    plan: &Plan<'_>,
    token: &str,
) -> aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder {
    let one = OneOff {
        cluster: setup.cluster,
        revision: &plan.revision.arn,
        service: plan.web,
        capacity: capacity(
            plan.web,
            setup.migration.capacity_provider_strategy.as_deref(),
        ),
        container: &setup.migration.container,
        command: &setup.migration.command,
        started_by: plan.deploy_id,
        token,
    };
    task::run_task(ecs, &one).tags(
        Tag::builder()
            .key(taskdef::DEPLOY_ID_TAG)
            .value(plan.deploy_id)
            .build(),
    )
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
    task::started(output).map_err(|failure| match failure {
        Some(failure) => Error::MigrationFailed {
            summary: format!("ECS would not start the migration task: {failure}"),
            hint: "check the cluster's capacity and the web service's network settings".to_owned(),
        },
        // Neither a task nor a failure: nothing to follow, and the claim stays for the rerun to
        // resume with its token.
        None => Error::MigrationFailed {
            summary: "ECS answered `RunTask` with neither a task nor a failure".to_owned(),
            hint: "rerun the same command: it asks ECS again with the same token, which starts no second task".to_owned(),
        },
    })
}
