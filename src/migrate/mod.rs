//! Migrate: one `RunTask` of the new revision with the migration command, its CloudWatch logs
//! streamed live, judged by every essential container's real exit code.
//!
//! A migration never runs twice for one deploy: the task is started by the deploy id, and its
//! outcome is written as tags on the revision, which outlive ECS's short memory of stopped tasks.
//! On timeout or interrupt the task is left running; a rerun attaches to it.

mod decide;

use std::collections::BTreeSet;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    ContainerOverride, DesiredStatus, PropagateTags, Service, Tag, Task, TaskOverride,
};
use serde::Serialize;

use crate::arn;
use crate::aws::failed;
use crate::error::Error;
use crate::logs::{LogStream, Tail};
use crate::report::{Reporter, Watch};
use crate::settings::Settings;
use crate::taskdef::{self, Described, MIGRATION_RESULT_TAG, MIGRATION_TASK_TAG};
use crate::text::short_duration;
pub use decide::ExitCodes;
use decide::{Capacity, Claim, Decision, capacity, decide, stopped_by_ecs, verdict};

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
}

pub async fn run(
    ecs: &Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    settings: &Settings,
    plan: &Plan<'_>,
    reporter: &dyn Reporter,
) -> Result<Migrated, Error> {
    let container = &settings.migration.container;
    taskdef::check_migration_container(plan.revision, container)?;
    let tasks = if Claim::of(plan.revision).succeeded() {
        Vec::new()
    } else {
        this_deploys_tasks(ecs, settings, plan.revision.family(), plan.deploy_id).await?
    };
    let task = match decide(plan.revision, container, &tasks, plan.retry) {
        Decision::Succeeded {
            task_arn,
            exit_codes,
            record: needed,
        } => {
            if needed {
                record(ecs, plan, &task_arn, true).await?;
            }
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
        Decision::Start { attempt, replaces } => {
            if let Some(failed) = replaces {
                reporter.info(&format!(
                    "this deploy's migration task `{}` failed; running it again (`--retry-migration`)",
                    arn::short(&failed)
                ));
            }
            start(ecs, settings, plan, attempt, reporter).await?
        }
        Decision::Refuse { summary, hint } => {
            return Err(Error::MigrationFailed { summary, hint });
        }
    };
    follow(ecs, logs, settings, plan, &task, reporter).await
}

/// The tasks started by this deploy that ECS still knows, described. `ListTasks` takes
/// `startedBy` only as its sole filter, and then lists running tasks alone (its default status
/// filter); the stopped ones are found among the family's stopped tasks.
async fn this_deploys_tasks(
    ecs: &Client,
    settings: &Settings,
    family: &str,
    deploy_id: &str,
) -> Result<Vec<Task>, Error> {
    let (running, stopped) = tokio::try_join!(
        list_tasks(
            ecs.list_tasks()
                .cluster(&settings.cluster)
                .started_by(deploy_id)
        ),
        list_tasks(
            ecs.list_tasks()
                .cluster(&settings.cluster)
                .family(family)
                .desired_status(DesiredStatus::Stopped)
        ),
    )?;
    // One task can be in both lists when it stopped between the two calls.
    let arns: BTreeSet<String> = running.into_iter().chain(stopped).collect();
    let arns: Vec<String> = arns.into_iter().collect();
    let tasks = describe_tasks(ecs, settings, &arns).await?;
    Ok(tasks
        .into_iter()
        .filter(|task| task.started_by() == Some(deploy_id))
        .collect())
}

/// Every task ARN that `request` lists, page by page.
async fn list_tasks(
    request: aws_sdk_ecs::operation::list_tasks::builders::ListTasksFluentBuilder,
) -> Result<Vec<String>, Error> {
    let mut pages = request.into_paginator().send();
    let mut arns = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed("looking for this deploy's migration task", e))?;
        arns.extend(page.task_arns().iter().cloned());
    }
    Ok(arns)
}

async fn start(
    ecs: &Client,
    settings: &Settings,
    plan: &Plan<'_>,
    attempt: usize,
    reporter: &dyn Reporter,
) -> Result<String, Error> {
    // The claim comes first: whatever happens between here and the task's ARN being recorded,
    // a rerun knows a migration may have started.
    ecs.tag_resource()
        .resource_arn(&plan.revision.arn)
        .tags(
            Tag::builder()
                .key(MIGRATION_RESULT_TAG)
                .value("started")
                .build(),
        )
        .send()
        .await
        .map_err(|e| failed("recording the migration's start on the revision", e))?;
    let web = plan.web;
    let mut request = ecs
        .run_task()
        .client_token(client_token(plan.deploy_id, attempt, plan.retry))
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
    request = match capacity(
        web,
        settings.migration.capacity_provider_strategy.as_deref(),
    ) {
        Capacity::Strategy(strategy) => request.set_capacity_provider_strategy(Some(strategy)),
        Capacity::LaunchType(launch_type) => request.launch_type(launch_type),
        Capacity::ClusterDefault => request,
    };
    let output = request.send().await.map_err(|e| {
        if e.as_service_error().is_some_and(|e| e.is_conflict_exception()) {
            // Same token, other parameters: another run of this deploy started the migration
            // from a revision of its own.
            return Error::MigrationFailed {
                summary: format!(
                    "another run of this deploy already started its migration with other parameters: {}",
                    crate::text::with_causes(&e)
                ),
                hint: "wait for that run to end, then rerun the same command: it attaches to that migration".to_owned(),
            };
        }
        match failed("starting the migration task", e) {
            // ECS refused the request itself (bad network settings, unknown family): the
            // migration did not start.
            Error::Aws {
                action,
                environment: false,
                source,
            } => Error::MigrationFailed {
                summary: format!("{action} failed: {source}"),
                hint: "the web service's network settings and launch type are used for the migration task"
                    .to_owned(),
            },
            other => other,
        }
    })?;
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
    let arn = output
        .tasks()
        .first()
        .and_then(|t| t.task_arn())
        .unwrap_or_default()
        .to_owned();
    ecs.tag_resource()
        .resource_arn(&plan.revision.arn)
        .tags(Tag::builder().key(MIGRATION_TASK_TAG).value(&arn).build())
        .send()
        .await
        .map_err(|e| failed("recording the migration task on the revision", e))?;
    reporter.info(&format!(
        "migration task `{}` started: `{}`",
        arn::short(&arn),
        settings.migration.command.join(" ")
    ));
    Ok(arn)
}

/// The `RunTask` idempotency token: ECS returns the task of an earlier call with the same token
/// and parameters (for 24 hours, per cluster) instead of starting another, so the SDK's own retries
/// of a lost response, and two runs of one deploy, start one task. A `--retry-migration` run is a
/// person asking for a new attempt: its token is new, so ECS never hands back the failed task.
fn client_token(deploy_id: &str, attempt: usize, retry: bool) -> String {
    if retry {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        format!("{deploy_id}-{attempt}-retry-{now}")
    } else {
        format!("{deploy_id}-{attempt}")
    }
}

/// Streams the task's log lines until it stops, then judges it.
async fn follow(
    ecs: &Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    settings: &Settings,
    plan: &Plan<'_>,
    task_arn: &str,
    reporter: &dyn Reporter,
) -> Result<Migrated, Error> {
    let container = &settings.migration.container;
    let mut stream = LogStream::new("migrate", plan.revision, container, task_arn);
    let mut tail = Tail::new(TAIL);
    let watch = Watch::new(settings.timeouts.heartbeat);
    let task = loop {
        let task = describe_tasks(ecs, settings, &[task_arn.to_owned()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::MigrationFailed {
                summary: format!("migration task `{}` is gone", arn::short(task_arn)),
                hint: "ECS no longer knows the task; rerun the same command: what the revision records decides what happens next".to_owned(),
            })?;
        stream.read(logs, &mut tail, reporter).await?;
        if task.last_status() == Some("STOPPED") {
            // Lines can reach CloudWatch after the task stopped: read until they stop coming.
            for _ in 0..3 {
                if !stream.read(logs, &mut tail, reporter).await? {
                    break;
                }
            }
            break task;
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
    };
    match verdict(plan.revision, container, &task) {
        Ok(exit_codes) => {
            for line in stopped_by_ecs(plan.revision, container, &task) {
                reporter.info(&line);
            }
            record(ecs, plan, task_arn, true).await?;
            Ok(Migrated {
                task_arn: task_arn.to_owned(),
                exit_codes,
                already: false,
            })
        }
        Err(summary) => {
            record(ecs, plan, task_arn, false).await?;
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
            Err(Error::MigrationFailed {
                summary: format!("migration task `{}` {summary}", arn::short(task_arn)),
                hint: format!("{why}; fix it and rerun with `--retry-migration`"),
            })
        }
    }
}

/// Writes the outcome on the revision, where a later rerun finds it.
async fn record(
    ecs: &Client,
    plan: &Plan<'_>,
    task_arn: &str,
    succeeded: bool,
) -> Result<(), Error> {
    ecs.tag_resource()
        .resource_arn(&plan.revision.arn)
        .tags(
            Tag::builder()
                .key(MIGRATION_TASK_TAG)
                .value(task_arn)
                .build(),
        )
        .tags(
            Tag::builder()
                .key(MIGRATION_RESULT_TAG)
                .value(if succeeded { "succeeded" } else { "failed" })
                .build(),
        )
        .send()
        .await
        .map_err(|e| failed("recording the migration's result on the revision", e))?;
    Ok(())
}

async fn describe_tasks(
    ecs: &Client,
    settings: &Settings,
    arns: &[String],
) -> Result<Vec<Task>, Error> {
    let mut tasks = Vec::new();
    // DescribeTasks takes at most 100 tasks per call.
    for batch in arns.chunks(100) {
        let output = ecs
            .describe_tasks()
            .cluster(&settings.cluster)
            .set_tasks(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| failed("describing the migration task", e))?;
        tasks.extend(output.tasks().iter().cloned());
    }
    Ok(tasks)
}
