//! One-off tasks, as the migration and `berth run` start them: a revision's command run once with
//! a service's network settings and capacity, its CloudWatch log lines streamed live until it
//! stops, and the verdict from its containers' exit codes ([`decide`]). What to do with the
//! verdict (a deploy record, an exit code) is the caller's.

pub mod decide;
pub mod logs;

use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::operation::run_task::RunTaskOutput;
use aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder;
use aws_sdk_ecs::types::{ContainerOverride, PropagateTags, Service, Task, TaskOverride};

use crate::aws::{arn, failed};
use crate::error::Error;
use crate::report::{Reporter, Watch};
use crate::settings::Timeouts;
use decide::Capacity;
use logs::{LogStream, Tail};

/// One `RunTask`: which revision, which container runs which command, on the settings of which
/// service.
pub struct OneOff<'a> {
    pub cluster: &'a str,
    pub revision: &'a str,
    /// The service whose network configuration and platform version the task takes.
    pub service: &'a Service,
    pub capacity: Capacity,
    pub container: &'a str,
    pub command: &'a [String],
    /// `startedBy`: how `ListTasks` finds the task again (36 characters at most).
    pub started_by: &'a str,
    /// `clientToken`: ECS starts one task per token and cluster for 24 hours.
    pub token: &'a str,
}

/// `RunTask` of one task of `one`: its tags are the revision's, and the caller's added to the
/// request it is handed back.
pub fn run_task(ecs: &Client, one: &OneOff<'_>) -> RunTaskFluentBuilder {
    let request = ecs
        .run_task()
        .client_token(one.token)
        .cluster(one.cluster)
        .task_definition(one.revision)
        .count(1)
        .started_by(one.started_by)
        .propagate_tags(PropagateTags::TaskDefinition)
        .overrides(
            TaskOverride::builder()
                .container_overrides(
                    ContainerOverride::builder()
                        .name(one.container)
                        .set_command(Some(one.command.to_vec()))
                        .build(),
                )
                .build(),
        )
        .set_network_configuration(one.service.network_configuration().cloned())
        .set_platform_version(one.service.platform_version().map(str::to_owned));
    match &one.capacity {
        Capacity::Strategy(strategy) => {
            request.set_capacity_provider_strategy(Some(strategy.clone()))
        }
        Capacity::LaunchType(launch_type) => request.launch_type(launch_type.clone()),
        Capacity::ClusterDefault => request,
    }
}

/// The task `RunTask` started; else ECS's failure (`RESOURCE:MEMORY`, …), or `None` when the
/// answer had neither a task nor a failure.
pub fn started(output: &RunTaskOutput) -> Result<String, Option<String>> {
    if let Some(failure) = output.failures().first() {
        return Err(Some(
            format!(
                "{} {}",
                failure.reason().unwrap_or("no reason"),
                failure.detail().unwrap_or_default()
            )
            .trim_end()
            .to_owned(),
        ));
    }
    output
        .tasks()
        .first()
        .and_then(|t| t.task_arn())
        .map(str::to_owned)
        .ok_or(None)
}

/// The task as ECS describes it, or `None` once ECS has forgotten it (about an hour after it
/// stopped).
pub async fn describe(ecs: &Client, cluster: &str, task_arn: &str) -> Result<Option<Task>, Error> {
    let output = ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(task_arn)
        .send()
        .await
        .map_err(|e| failed("describing the task", e))?;
    Ok(output.tasks().first().cloned())
}

/// How long and how often a follow looks, and what it calls the task in its narration.
#[derive(Debug, Clone, Copy)]
pub struct Watching<'a> {
    pub cluster: &'a str,
    pub timeouts: &'a Timeouts,
    /// The task is left running after this long.
    pub limit: Duration,
    /// `migration task`, `task`.
    pub what: &'a str,
}

/// How a follow ended.
#[derive(Debug)]
pub enum Ended {
    Stopped(Task),
    /// Still going at the limit: left running.
    Running(Task),
    /// ECS no longer knows the task.
    Gone,
}

/// Follows the task until it stopped, its log lines streamed as they come, reading them to the
/// end once it has; a task still going at `watching.limit` is left running.
pub async fn follow(
    (ecs, logs): (&Client, &aws_sdk_cloudwatchlogs::Client),
    watching: Watching<'_>,
    task_arn: &str,
    (stream, tail): (&mut LogStream, &mut Tail),
    reporter: &dyn Reporter,
) -> Result<Ended, Error> {
    let watch = Watch::new(watching.timeouts.heartbeat);
    let waiting = format!("waiting on {} `{}`", watching.what, arn::short(task_arn));
    let looking = look_until_stopped(
        (ecs, logs),
        watching,
        task_arn,
        (stream, tail),
        reporter,
        &watch,
    );
    watch.around(reporter, &waiting, looking).await
}

/// [`follow`]'s looks at the task and its logs, one per poll.
async fn look_until_stopped(
    (ecs, logs): (&Client, &aws_sdk_cloudwatchlogs::Client),
    watching: Watching<'_>,
    task_arn: &str,
    (stream, tail): (&mut LogStream, &mut Tail),
    reporter: &dyn Reporter,
    watch: &Watch,
) -> Result<Ended, Error> {
    loop {
        let began = tokio::time::Instant::now();
        let looked = async {
            // The task and its newest lines at once: a page of lines a look.
            let (task, read) = tokio::join!(
                describe(ecs, watching.cluster, task_arn),
                stream.read(logs, tail, reporter, false)
            );
            read?;
            task
        };
        let task = match looked.await {
            Ok(Some(task)) => task,
            Ok(None) => return Ok(Ended::Gone),
            // Throttled or unanswered even after the SDK's retries: look again at the next poll.
            Err(error) if crate::aws::is_transient(&error) && watch.elapsed() < watching.limit => {
                watch.beat(
                    reporter,
                    &format!(
                        "AWS did not answer ({}); looking again",
                        crate::text::with_causes(&error)
                    ),
                );
                watching.timeouts.pause(began).await;
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
            return Ok(Ended::Stopped(task));
        }
        if watch.elapsed() >= watching.limit {
            return Ok(Ended::Running(task));
        }
        watch.beat(
            reporter,
            &format!(
                "{} `{}`: {}",
                watching.what,
                arn::short(task_arn),
                task.last_status().unwrap_or("PROVISIONING")
            ),
        );
        watching.timeouts.pause(began).await;
    }
}
