//! A failed or timed-out rollout, explained: the services' recent events, the new revision's
//! tasks with their health, stop reasons and exit codes, and the newest failing one as the cause.

use std::collections::BTreeMap;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{DesiredStatus, Service, Task};

use super::decide::where_each_ends;
use super::{Cluster, Rolled};
use crate::aws::arn;
use crate::error::Error;
use crate::report::Reporter;

/// The rollouts that failed, explained (events, stopped tasks, where each service ends), as one
/// error naming them all.
pub(super) async fn failure(
    ecs: &Client,
    cluster: Cluster<'_>,
    services: &BTreeMap<String, Service>,
    rolled: &[Rolled],
    failed: Vec<(usize, String)>,
    reporter: &dyn Reporter,
) -> Error {
    for (index, _) in &failed {
        let rolled = &rolled[*index];
        explain(ecs, cluster, &services[&rolled.service], rolled, reporter).await;
    }
    if rolled.len() > 1 {
        for line in where_each_ends(rolled) {
            reporter.info(&line);
        }
    }
    let service = failed
        .iter()
        .map(|(index, _)| format!("`{}`", rolled[*index].service))
        .collect::<Vec<_>>()
        .join(", ");
    let reason = failed
        .into_iter()
        .map(|(_, reason)| reason)
        .collect::<Vec<_>>()
        .join("; ");
    Error::RolloutFailed { service, reason }
}

/// After a failure: the service's recent events and why the new revision's tasks stopped.
async fn explain(
    ecs: &Client,
    cluster: Cluster<'_>,
    service: &Service,
    rolled: &Rolled,
    reporter: &dyn Reporter,
) {
    reporter.info(&format!("recent events of `{}`:", rolled.service));
    for event in service.events().iter().take(10).rev() {
        reporter.info(&format!("  {}", event.message().unwrap_or_default()));
    }
    show_tasks(ecs, cluster, rolled, DesiredStatus::Stopped, reporter).await;
}

/// Why a rollout that timed out did not finish: the newest stopped task of our revision, else a
/// running one that is not healthy, as its task line.
pub(super) fn newest_failing(tasks: &[Task]) -> Option<String> {
    let stopped = tasks
        .iter()
        .filter(|t| t.stopped_at().is_some())
        .max_by_key(|t| t.stopped_at().map(|at| (at.secs(), at.subsec_nanos())));
    let unhealthy = || {
        tasks
            .iter()
            .find(|t| t.health_status().is_some_and(|h| h.as_str() == "UNHEALTHY"))
    };
    stopped
        .or_else(unhealthy)
        .map(|task| format!("newest failing {}", task_line(task).trim_start()))
}

/// Up to five tasks of our revision, running or stopped, with their health and exit codes: those
/// shown. Best effort: this only explains a failure that is already reported.
pub(super) async fn show_tasks(
    ecs: &Client,
    cluster: Cluster<'_>,
    rolled: &Rolled,
    status: DesiredStatus,
    reporter: &dyn Reporter,
) -> Vec<Task> {
    let Ok(listed) = ecs
        .list_tasks()
        .cluster(cluster.name)
        .service_name(&rolled.service)
        .desired_status(status.clone())
        .send()
        .await
    else {
        return Vec::new();
    };
    if listed.task_arns().is_empty() {
        return Vec::new();
    }
    let Ok(described) = ecs
        .describe_tasks()
        .cluster(cluster.name)
        .set_tasks(Some(listed.task_arns().to_vec()))
        .send()
        .await
    else {
        return Vec::new();
    };
    let ours: Vec<Task> = described
        .tasks()
        .iter()
        .filter(|t| t.task_definition_arn() == Some(rolled.task_definition.as_str()))
        .take(5)
        .cloned()
        .collect();
    if !ours.is_empty() {
        reporter.info(&format!(
            "{} tasks of `{}`:",
            match status {
                DesiredStatus::Stopped => "stopped",
                _ => "running",
            },
            arn::short(&rolled.task_definition)
        ));
    }
    for task in &ours {
        reporter.info(&task_line(task));
    }
    ours
}

/// `task 0123abcd: UNHEALTHY, RUNNING; app exit 1` or, stopped,
/// `task 0123abcd: TaskFailedToStart (reason), health UNHEALTHY; app no exit code`.
fn task_line(task: &Task) -> String {
    let containers: Vec<String> = task
        .containers()
        .iter()
        .map(|c| {
            let name = c.name().unwrap_or("?");
            let health = c
                .health_status()
                .map(|h| h.as_str())
                .filter(|h| matches!(*h, "HEALTHY" | "UNHEALTHY"));
            match (c.exit_code(), health) {
                (Some(code), Some(health)) => format!("{name} exit {code}, {health}"),
                (Some(code), None) => format!("{name} exit {code}"),
                (None, Some(health)) => format!("{name} {health}"),
                (None, None) => format!("{name} no exit code"),
            }
        })
        .collect();
    let health = task.health_status().map_or("UNKNOWN", |h| h.as_str());
    let state = match task.stop_code() {
        Some(code) => format!(
            "{} ({})",
            code.as_str(),
            task.stopped_reason().unwrap_or("no reason")
        ),
        None => task.last_status().unwrap_or("PROVISIONING").to_owned(),
    };
    format!(
        "  task {}: {state}, health {health}; {}",
        arn::short(task.task_arn().unwrap_or("?")),
        containers.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::task_line;

    #[test]
    fn task_lines_name_health_and_exit_codes() {
        use aws_sdk_ecs::types::{Container, HealthStatus, Task, TaskStopCode};

        let unhealthy = Task::builder()
            .task_arn("arn:aws:ecs:us-east-1:1:task/stg/0123abcd")
            .last_status("RUNNING")
            .health_status(HealthStatus::Unhealthy)
            .containers(
                Container::builder()
                    .name("app")
                    .health_status(HealthStatus::Unhealthy)
                    .build(),
            )
            .build();
        assert_eq!(
            task_line(&unhealthy),
            "  task 0123abcd: RUNNING, health UNHEALTHY; app UNHEALTHY"
        );
        let stopped = Task::builder()
            .task_arn("arn:aws:ecs:us-east-1:1:task/stg/4567ef")
            .stop_code(TaskStopCode::EssentialContainerExited)
            .stopped_reason("Essential container in task exited")
            .containers(Container::builder().name("app").exit_code(1).build())
            .build();
        assert_eq!(
            task_line(&stopped),
            "  task 4567ef: EssentialContainerExited (Essential container in task exited), health UNKNOWN; app exit 1"
        );
    }
}
