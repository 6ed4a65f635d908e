//! Where a rollout's time went: per service, from the tasks' own timestamps, how long this
//! deployment's tasks took to pull their images and to start, how long the deployment took to be
//! steady, and how long the old tasks took to drain. The tasks are read once the rollout is
//! over; [`timeline`] is a pure function of them.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{Deployment, DesiredStatus, Task};
use aws_smithy_types::DateTime;

use super::Rolled;
use crate::aws::failed;
use crate::error::Error;
use crate::state::record::{ServiceTimeline, Spread};

/// `DescribeTasks` takes up to 100 tasks a call.
const DESCRIBE_BATCH: usize = 100;

/// Each rolled service's timeline, read from ECS: the services in one `DescribeServices`, each
/// one's tasks.
pub async fn read(
    ecs: &Client,
    cluster: &str,
    rolled: &[Rolled],
) -> Result<Vec<ServiceTimeline>, Error> {
    let names: Vec<String> = rolled.iter().map(|r| r.service.clone()).collect();
    let services = crate::aws::services::describe(ecs, cluster, &names).await?;
    let mut timelines = Vec::new();
    for rolled in rolled {
        let tasks = tasks(ecs, cluster, &rolled.service).await?;
        let deployment = services.get(&rolled.service).and_then(|s| {
            s.deployments()
                .iter()
                .find(|d| d.id() == Some(rolled.deployment_id.as_str()))
        });
        timelines.push(timeline(
            &rolled.service,
            &rolled.deployment_id,
            deployment,
            &tasks,
        ));
    }
    Ok(timelines)
}

/// The service's tasks ECS knows, running and stopped.
async fn tasks(ecs: &Client, cluster: &str, service: &str) -> Result<Vec<Task>, Error> {
    let mut arns = Vec::new();
    for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
        let status = &status;
        let listed = crate::aws::all_pages(|token| async move {
            let page = ecs
                .list_tasks()
                .cluster(cluster)
                .service_name(service)
                .desired_status(status.clone())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| failed("listing the service's tasks", e))?;
            Ok((
                page.task_arns().to_vec(),
                page.next_token().map(str::to_owned),
            ))
        })
        .await?;
        arns.extend(listed);
    }
    let mut tasks = Vec::new();
    for batch in arns.chunks(DESCRIBE_BATCH) {
        let described = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| failed("describing the service's tasks", e))?;
        tasks.extend(described.tasks().iter().cloned());
    }
    Ok(tasks)
}

/// The timeline of deployment `id` of `service` from the service's tasks: its own (started by
/// it) and the older ones that began to stop once it was created.
pub fn timeline(
    service: &str,
    id: &str,
    deployment: Option<&Deployment>,
    tasks: &[Task],
) -> ServiceTimeline {
    let created = deployment.and_then(Deployment::created_at);
    let ours: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.started_by() == Some(id) && t.started_at().is_some())
        .collect();
    let drained: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.started_by() != Some(id) && t.stopped_at().is_some())
        .filter(|t| match (t.stopping_at(), created) {
            (Some(stopping), Some(created)) => seconds(created, stopping) >= 0.0,
            _ => false,
        })
        .collect();
    let between = |tasks: &[&Task],
                   from: fn(&Task) -> Option<&DateTime>,
                   to: fn(&Task) -> Option<&DateTime>| {
        spread(
            tasks
                .iter()
                .filter_map(|t| Some(seconds(from(t)?, to(t)?)))
                .collect(),
        )
    };
    let steady = deployment
        .filter(|d| d.rollout_state().is_some_and(|s| s.as_str() == "COMPLETED"))
        .and_then(|d| Some(seconds(d.created_at()?, d.updated_at()?)));
    ServiceTimeline {
        service: service.to_owned(),
        tasks: ours.len(),
        pull: between(&ours, Task::pull_started_at, Task::pull_stopped_at),
        start: between(&ours, Task::pull_stopped_at, Task::started_at),
        steady,
        drained: drained.len(),
        drain: between(&drained, Task::stopping_at, Task::stopped_at),
    }
}

/// Seconds from `from` to `to`, to the millisecond.
fn seconds(from: &DateTime, to: &DateTime) -> f64 {
    let millis = |t: &DateTime| t.to_millis().unwrap_or_default();
    (millis(to) - millis(from)) as f64 / 1000.0
}

/// The median and the slowest of `values`; `None` for none. Negative spans (clocks) count as 0.
fn spread(mut values: Vec<f64>) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    values.iter_mut().for_each(|v| *v = v.max(0.0));
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    let median = if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    };
    Some(Spread {
        median,
        slowest: values[values.len() - 1],
    })
}

/// `web: 2 new tasks: pull 1.2s (slowest 1.5s), start 0.7s (slowest 0.8s); steady 41.0s after
/// the deployment began; 2 old tasks drained in 3.1s (slowest 3.4s)`.
pub fn line(t: &ServiceTimeline) -> String {
    let spread = |what: &str, s: &Option<Spread>| {
        s.map(|s| format!("{what} {:.1}s (slowest {:.1}s)", s.median, s.slowest))
    };
    let mut parts: Vec<String> = [spread("pull", &t.pull), spread("start", &t.start)]
        .into_iter()
        .flatten()
        .collect();
    let mut line = format!(
        "timeline `{}`: {} new task{}",
        t.service,
        t.tasks,
        if t.tasks == 1 { "" } else { "s" }
    );
    if !parts.is_empty() {
        line.push_str(": ");
        line.push_str(&parts.join(", "));
    }
    parts.clear();
    if let Some(steady) = t.steady {
        parts.push(format!("steady {steady:.1}s after the deployment began"));
    }
    if let Some(drain) = spread("drained in", &t.drain) {
        parts.push(format!(
            "{} old task{} {drain}",
            t.drained,
            if t.drained == 1 { "" } else { "s" }
        ));
    }
    for part in parts {
        line.push_str("; ");
        line.push_str(&part);
    }
    line
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Task};
    use aws_smithy_types::DateTime;

    use super::{line, timeline};
    use crate::state::record::Spread;

    /// Seconds since t = 1000 s as a timestamp.
    fn at(seconds: f64) -> DateTime {
        DateTime::from_millis(1_000_000 + (seconds * 1000.0) as i64)
    }

    fn new_task(by: &str, pull: (f64, f64), started: f64) -> Task {
        Task::builder()
            .started_by(by)
            .pull_started_at(at(pull.0))
            .pull_stopped_at(at(pull.1))
            .started_at(at(started))
            .build()
    }

    fn old_task(by: &str, stopping: f64, stopped: f64) -> Task {
        Task::builder()
            .started_by(by)
            .started_at(at(-100.0))
            .stopping_at(at(stopping))
            .stopped_at(at(stopped))
            .build()
    }

    #[test]
    fn the_timeline_counts_only_this_deployments_tasks_and_the_ones_it_drained() {
        let deployment = Deployment::builder()
            .id("ecs-svc/new")
            .created_at(at(0.0))
            .updated_at(at(41.0))
            .rollout_state(DeploymentRolloutState::Completed)
            .build();
        let tasks = [
            new_task("ecs-svc/new", (1.0, 2.0), 2.5),
            new_task("ecs-svc/new", (1.0, 4.0), 5.0),
            new_task("ecs-svc/new", (1.0, 3.0), 3.2),
            // An earlier deployment's task started long before, still running: not ours.
            new_task("ecs-svc/old", (-90.0, -80.0), -79.0),
            old_task("ecs-svc/old", 30.0, 33.0),
            old_task("ecs-svc/old", 31.0, 32.0),
            // Stopped before this deployment began (an earlier failure): not drained by it.
            old_task("ecs-svc/older", -50.0, -40.0),
            // Pending: not started.
            Task::builder().started_by("ecs-svc/new").build(),
        ];
        let t = timeline("web", "ecs-svc/new", Some(&deployment), &tasks);
        assert_eq!(t.tasks, 3);
        assert_eq!(
            t.pull,
            Some(Spread {
                median: 2.0,
                slowest: 3.0
            })
        );
        let start = t.start.unwrap();
        assert!(
            (start.median - 0.5).abs() < 1e-9 && (start.slowest - 1.0).abs() < 1e-9,
            "{start:?}"
        );
        assert_eq!(t.steady, Some(41.0));
        assert_eq!(t.drained, 2);
        assert_eq!(
            t.drain,
            Some(Spread {
                median: 2.0,
                slowest: 3.0
            })
        );
        assert_eq!(
            line(&t),
            "timeline `web`: 3 new tasks: pull 2.0s (slowest 3.0s), start 0.5s (slowest 1.0s); steady 41.0s after the deployment began; 2 old tasks drained in 2.0s (slowest 3.0s)"
        );

        let in_progress = Deployment::builder()
            .id("ecs-svc/new")
            .created_at(at(0.0))
            .rollout_state(DeploymentRolloutState::InProgress)
            .build();
        let none = timeline("web", "ecs-svc/new", Some(&in_progress), &[]);
        assert_eq!(
            (none.tasks, none.pull, none.steady, none.drained),
            (0, None, None, 0)
        );
        assert_eq!(line(&none), "timeline `web`: 0 new tasks");
    }
}
