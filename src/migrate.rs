//! Migrate: one `RunTask` of the new revision with the migration command, its CloudWatch logs
//! streamed live, judged by every essential container's real exit code.
//!
//! A migration never runs twice for one deploy: the task is started by the deploy id, and its
//! outcome is written as tags on the revision, which outlive ECS's short memory of stopped tasks.
//! On timeout or interrupt the task is left running; a rerun attaches to it.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    ContainerOverride, DesiredStatus, PropagateTags, Service, Tag, Task, TaskOverride,
};
use serde::Serialize;
use serde_json::Value;

use crate::aws::failed;
use crate::error::Error;
use crate::output::{Reporter, Watch, short_duration};
use crate::rollout::short_arn;
use crate::settings::Settings;
use crate::taskdef::{self, Described, MIGRATION_RESULT_TAG, MIGRATION_TASK_TAG};

/// What to do about a migration of this deploy that failed.
const RETRY_HINT: &str = "fix the cause and pass `--retry-migration` to run it again; a migration never runs twice on its own";

/// Log lines kept for the tail shown when the migration fails.
const TAIL: usize = 20;

/// How the migration ended.
#[derive(Debug, Clone, Serialize)]
pub struct Migrated {
    pub task_arn: String,
    pub exit_codes: BTreeMap<String, Option<i32>>,
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
    if plan.revision.container(container).is_none() {
        return Err(Error::Mismatch {
            problem: format!(
                "task definition `{}` has no container `{container}` to run the migration in",
                short_arn(&plan.revision.arn)
            ),
            hint: "set `migration.container` (or `migration.family`) in berth.toml".to_owned(),
        });
    }
    let task = match previous_task(ecs, settings, plan, reporter).await? {
        Previous::Succeeded(migrated) => return Ok(migrated),
        Previous::Running(task) => task,
        Previous::None { attempt } => start(ecs, settings, plan, attempt, reporter).await?,
    };
    follow(ecs, logs, settings, plan, &task, reporter).await
}

enum Previous {
    /// Nothing to attach to: start a task. `attempt` counts the tasks this deploy started before.
    None {
        attempt: usize,
    },
    Running(String),
    Succeeded(Migrated),
}

/// What an earlier run of this deploy left: a finished migration, a running one, or a failed one
/// (an error unless `--retry-migration`).
async fn previous_task(
    ecs: &Client,
    settings: &Settings,
    plan: &Plan<'_>,
    reporter: &dyn Reporter,
) -> Result<Previous, Error> {
    let tagged_task = plan.revision.tags.get(MIGRATION_TASK_TAG).cloned();
    let result = plan
        .revision
        .tags
        .get(MIGRATION_RESULT_TAG)
        .map(String::as_str);
    if result == Some("succeeded") {
        return Ok(Previous::Succeeded(Migrated {
            task_arn: tagged_task.unwrap_or_default(),
            exit_codes: BTreeMap::new(),
            already: true,
        }));
    }
    let mut tasks = Vec::new();
    for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
        let listed = ecs
            .list_tasks()
            .cluster(&settings.cluster)
            .started_by(plan.deploy_id)
            .desired_status(status)
            .send()
            .await
            .map_err(|e| failed("looking for this deploy's migration task", e))?;
        tasks.extend(listed.task_arns().iter().cloned());
    }
    if tasks.is_empty() {
        if let (Some(task), Some("failed"), false) = (&tagged_task, result, plan.retry) {
            return Err(Error::MigrationFailed {
                summary: format!("this deploy's migration task `{}` failed", short_arn(task)),
                hint: Some(RETRY_HINT.to_owned()),
            });
        }
        // Claimed (tag written before RunTask) or started, and no task to be found: it may have
        // run. Only a person can say whether to run it again.
        if (tagged_task.is_some() || result == Some("started")) && !plan.retry {
            let summary = match tagged_task.as_deref() {
                Some(task) => format!(
                    "this deploy's migration task `{}` may have run, but ECS no longer knows how it ended",
                    short_arn(task)
                ),
                None => "this deploy's migration may have run (it was being started when an earlier run ended), but ECS knows no task of it".to_owned(),
            };
            return Err(Error::MigrationFailed {
                summary,
                hint: Some(
                    "check the task's logs or the database's migration state; pass `--retry-migration` to run the migration again"
                        .to_owned(),
                ),
            });
        }
        return Ok(Previous::None { attempt: 0 });
    }
    let described = describe_tasks(ecs, settings, &tasks).await?;
    let attempt = described.len();
    let Some(latest) = described
        .iter()
        .max_by_key(|t| t.created_at().map(|d| d.secs()))
    else {
        return Ok(Previous::None { attempt });
    };
    let arn = latest.task_arn().unwrap_or_default().to_owned();
    if latest.last_status() != Some("STOPPED") {
        reporter.info(&format!(
            "this deploy's migration task `{}` is {}: attaching",
            short_arn(&arn),
            latest.last_status().unwrap_or("starting")
        ));
        return Ok(Previous::Running(arn));
    }
    match verdict(plan.revision, latest) {
        Ok(exit_codes) => {
            record(ecs, plan, &arn, true).await?;
            Ok(Previous::Succeeded(Migrated {
                task_arn: arn,
                exit_codes,
                already: true,
            }))
        }
        Err(_) if plan.retry => {
            reporter.info(&format!(
                "this deploy's migration task `{}` failed; running it again (`--retry-migration`)",
                short_arn(&arn)
            ));
            Ok(Previous::None { attempt })
        }
        Err(summary) => Err(Error::MigrationFailed {
            summary: format!(
                "this deploy's migration task `{}` {summary}",
                short_arn(&arn)
            ),
            hint: Some(RETRY_HINT.to_owned()),
        }),
    }
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
        // Idempotent across the SDK's own retries of this call (a lost response must not start a
        // second task); a `--retry-migration` run is a new attempt with a new token.
        .client_token(format!("{}-{attempt}", plan.deploy_id))
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
    if !web.capacity_provider_strategy().is_empty() {
        request =
            request.set_capacity_provider_strategy(Some(web.capacity_provider_strategy().to_vec()));
    } else if let Some(launch_type) = web.launch_type() {
        request = request.launch_type(launch_type.clone());
    }
    let output = request.send().await.map_err(|e| {
        match failed("starting the migration task", e) {
            // ECS refused the request itself (bad network settings, unknown family): the
            // migration did not start.
            Error::Aws {
                action,
                environment: false,
                source,
            } => Error::MigrationFailed {
                summary: format!("{action} failed: {source}"),
                hint: Some(
                    "the web service's network settings and launch type are used for the migration task"
                        .to_owned(),
                ),
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
            hint: Some(
                "check the cluster's capacity and the web service's network settings".to_owned(),
            ),
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
        short_arn(&arn),
        settings.migration.command.join(" ")
    ));
    Ok(arn)
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
    let mut stream = LogStream::new(plan.revision, container, task_arn);
    let mut tail: Vec<String> = Vec::new();
    let watch = Watch::new(settings.timeouts.heartbeat);
    let task = loop {
        let task = describe_tasks(ecs, settings, &[task_arn.to_owned()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::MigrationFailed {
                summary: format!("migration task `{}` is gone", short_arn(task_arn)),
                hint: None,
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
                    short_arn(task_arn),
                    task.last_status().unwrap_or("running"),
                    short_duration(settings.timeouts.migration)
                ),
                hint: Some(
                    "rerun the same command to attach to it again, or raise `timeouts.migration`"
                        .to_owned(),
                ),
            });
        }
        watch.beat(
            reporter,
            &format!(
                "migration task `{}`: {}",
                short_arn(task_arn),
                task.last_status().unwrap_or("PROVISIONING")
            ),
        );
        tokio::time::sleep(settings.timeouts.poll.min(Duration::from_secs(30))).await;
    };
    match verdict(plan.revision, &task) {
        Ok(exit_codes) => {
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
                for line in &tail {
                    reporter.output("migrate", line);
                }
            }
            Err(Error::MigrationFailed {
                summary: format!("migration task `{}` {summary}", short_arn(task_arn)),
                hint: Some(
                    "the log lines above say why; fix it and rerun with `--retry-migration`"
                        .to_owned(),
                ),
            })
        }
    }
}

/// Exit codes when every essential container exited 0; otherwise what went wrong.
fn verdict(revision: &Described, task: &Task) -> Result<BTreeMap<String, Option<i32>>, String> {
    let exit_codes: BTreeMap<String, Option<i32>> = task
        .containers()
        .iter()
        .map(|c| (c.name().unwrap_or("?").to_owned(), c.exit_code()))
        .collect();
    let stop_code = task.stop_code().map_or("none", |c| c.as_str());
    let reason = task.stopped_reason().unwrap_or("no reason given");
    if stop_code == "TaskFailedToStart" {
        return Err(format!("did not start (`TaskFailedToStart`): {reason}"));
    }
    let essential = |name: &str| {
        revision
            .container(name)
            .and_then(|c| c.get("essential"))
            .and_then(Value::as_bool)
            .unwrap_or(true)
    };
    let failed: Vec<String> = exit_codes
        .iter()
        .filter(|(name, code)| essential(name) && **code != Some(0))
        .map(|(name, code)| match code {
            Some(code) => format!("`{name}` exited {code}"),
            None => format!("`{name}` has no exit code"),
        })
        .collect();
    if failed.is_empty() {
        return Ok(exit_codes);
    }
    let all: Vec<String> = exit_codes
        .iter()
        .map(|(name, code)| match code {
            Some(code) => format!("{name}={code}"),
            None => format!("{name}=none"),
        })
        .collect();
    Err(format!(
        "failed: {} (exit codes {}; stopCode `{stop_code}`; stoppedReason: {reason})",
        failed.join(", "),
        all.join(", ")
    ))
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
    let output = ecs
        .describe_tasks()
        .cluster(&settings.cluster)
        .set_tasks(Some(arns.to_vec()))
        .send()
        .await
        .map_err(|e| failed("describing the migration task", e))?;
    Ok(output.tasks().to_vec())
}

/// The `awslogs` stream of one container of one task: `<prefix>/<container>/<task-id>`.
struct LogStream {
    target: Option<(String, String)>,
    token: Option<String>,
}

impl LogStream {
    fn new(revision: &Described, container: &str, task_arn: &str) -> Self {
        let options = revision
            .container(container)
            .and_then(|c| c.get("logConfiguration"))
            .filter(|config| config.get("logDriver").and_then(Value::as_str) == Some("awslogs"))
            .and_then(|config| config.get("options"));
        let option = |key: &str| {
            options
                .and_then(|o| o.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let task_id = short_arn(task_arn);
        let target = option("awslogs-group").map(|group| {
            let stream = match option("awslogs-stream-prefix") {
                Some(prefix) => format!("{prefix}/{container}/{task_id}"),
                None => task_id.to_owned(),
            };
            (group, stream)
        });
        Self {
            target,
            token: None,
        }
    }

    /// Reads new lines; true when there were some. A stream that does not exist yet is empty.
    async fn read(
        &mut self,
        logs: &aws_sdk_cloudwatchlogs::Client,
        tail: &mut Vec<String>,
        reporter: &dyn Reporter,
    ) -> Result<bool, Error> {
        let Some((group, stream)) = &self.target else {
            return Ok(false);
        };
        let mut any = false;
        loop {
            let response = logs
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(self.token.clone())
                .send()
                .await;
            let output = match response {
                Ok(output) => output,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    return Ok(any);
                }
                Err(error) => {
                    return Err(failed(format!("reading log stream `{stream}`"), error));
                }
            };
            let events = output.events();
            for event in events {
                let line = event.message().unwrap_or_default().trim_end().to_owned();
                reporter.output("migrate", &line);
                tail.push(line);
                if tail.len() > TAIL {
                    tail.remove(0);
                }
            }
            let next = output.next_forward_token().map(str::to_owned);
            let same_token = next == self.token;
            self.token = next;
            if events.is_empty() || same_token {
                return Ok(any);
            }
            any = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use aws_sdk_ecs::types::{Container, Task, TaskStopCode};
    use serde_json::{Value, json};

    use super::verdict;
    use crate::taskdef::Described;

    fn revision() -> Described {
        let Value::Object(definition) = json!({
            "family": "web",
            "containerDefinitions": [
                {"name": "app", "essential": true},
                {"name": "datadog-agent", "essential": false}
            ]
        }) else {
            unreachable!()
        };
        Described {
            arn: "arn:aws:ecs:us-east-1:1:task-definition/web:8".into(),
            definition,
            tags: BTreeMap::new(),
        }
    }

    fn task(stop_code: TaskStopCode, codes: &[(&str, Option<i32>)]) -> Task {
        Task::builder()
            .stop_code(stop_code)
            .stopped_reason("Essential container in task exited")
            .set_containers(Some(
                codes
                    .iter()
                    .map(|(name, code)| {
                        Container::builder()
                            .name(*name)
                            .set_exit_code(*code)
                            .build()
                    })
                    .collect(),
            ))
            .build()
    }

    #[test]
    fn success_needs_every_essential_container_to_exit_0() {
        let ok = task(
            TaskStopCode::EssentialContainerExited,
            &[("app", Some(0)), ("datadog-agent", Some(137))],
        );
        assert_eq!(
            verdict(&revision(), &ok).map(|codes| codes["app"]),
            Ok(Some(0)),
            "a non-essential sidecar killed at the end does not fail the migration"
        );
        let failed = task(
            TaskStopCode::EssentialContainerExited,
            &[("app", Some(1)), ("datadog-agent", Some(0))],
        );
        let summary = verdict(&revision(), &failed).unwrap_err();
        assert!(summary.contains("`app` exited 1"), "{summary}");
        assert!(summary.contains("EssentialContainerExited"), "{summary}");
        let no_code = task(TaskStopCode::EssentialContainerExited, &[("app", None)]);
        assert!(
            verdict(&revision(), &no_code)
                .unwrap_err()
                .contains("no exit code")
        );
    }

    #[test]
    fn a_task_that_failed_to_start_says_so() {
        let mut failed = task(TaskStopCode::TaskFailedToStart, &[("app", None)]);
        failed.stopped_reason = Some("CannotPullContainerError: pull access denied".into());
        let summary = verdict(&revision(), &failed).unwrap_err();
        assert!(
            summary.starts_with("did not start (`TaskFailedToStart`)"),
            "{summary}"
        );
        assert!(summary.contains("CannotPullContainerError"), "{summary}");
    }
}
