//! Roll out: point every service at our revision, then wait on *our* deployment.
//!
//! Success is our deployment's `rolloutState` COMPLETED with running = desired. Failure is
//! FAILED, or our deployment gone while the service points elsewhere (a circuit-breaker
//! rollback). `wait_until_services_stable` is not used: after a rollback the service is stable
//! again, on the old revision, and the waiter reports success.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{DesiredStatus, Service};
use futures_util::future::try_join_all;
use serde::Serialize;

use crate::arn;
use crate::aws::failed;
use crate::error::Error;
use crate::report::{Reporter, Watch};
use crate::services;
use crate::settings::Settings;
use crate::text::short_duration;

/// ECS reads are eventually consistent: right after `UpdateService` a read may still show the
/// old state. Until our deployment has been seen once, or this long has passed, its absence is
/// not taken for a rollback.
const SHOW_UP_GRACE: Duration = Duration::from_secs(60);

/// A service and the revision it must run.
#[derive(Debug, Clone)]
pub struct Target {
    pub service: String,
    pub task_definition: String,
}

/// How the rollout of one service ended.
#[derive(Debug, Clone, Serialize)]
pub struct Rolled {
    pub service: String,
    pub task_definition: String,
    pub deployment_id: String,
    pub rollout_state: String,
    /// The service already ran our revision when this deploy looked.
    pub already: bool,
}

/// Events of the services from before this rollout: history, not news.
pub type History = HashSet<String>;

/// Points each service at its revision (concurrently), unless it already runs it; returns the
/// deployment to wait on for each, and the services' events from before.
pub async fn start(
    ecs: &Client,
    settings: &Settings,
    targets: &[Target],
    reporter: &dyn Reporter,
) -> Result<(Vec<Rolled>, History), Error> {
    let names: Vec<String> = targets.iter().map(|t| t.service.clone()).collect();
    let current = services::describe(ecs, &settings.cluster, &names).await?;
    let history: History = current
        .values()
        .flat_map(|service| service.events())
        .filter_map(|event| event.id().map(str::to_owned))
        .collect();
    let starts = targets.iter().map(|target| {
        let service = &current[&target.service];
        async move {
            if service.task_definition() == Some(target.task_definition.as_str())
                && let Some(deployment) = service
                    .deployments()
                    .iter()
                    .find(|d| d.task_definition() == Some(target.task_definition.as_str()))
            {
                reporter.info(&format!(
                    "`{}` already runs `{}`: waiting on deployment `{}`",
                    target.service,
                    arn::short(&target.task_definition),
                    deployment.id().unwrap_or_default()
                ));
                return Ok::<_, Error>(Rolled {
                    service: target.service.clone(),
                    task_definition: target.task_definition.clone(),
                    deployment_id: deployment.id().unwrap_or_default().to_owned(),
                    rollout_state: rollout_state(deployment),
                    already: true,
                });
            }
            let output = ecs
                .update_service()
                .cluster(&settings.cluster)
                .service(&target.service)
                .task_definition(&target.task_definition)
                .send()
                .await
                .map_err(|e| failed(format!("updating service `{}`", target.service), e))?;
            let deployment = output
                .service()
                .into_iter()
                .flat_map(|s| s.deployments())
                .find(|d| {
                    d.status() == Some("PRIMARY")
                        && d.task_definition() == Some(target.task_definition.as_str())
                })
                .ok_or_else(|| Error::RolloutFailed {
                    service: format!("`{}`", target.service),
                    reason: "ECS accepted the update but shows no deployment of our revision"
                        .to_owned(),
                })?;
            let id = deployment.id().unwrap_or_default().to_owned();
            reporter.info(&format!(
                "`{}` → `{}`: deployment `{id}` started",
                target.service,
                arn::short(&target.task_definition)
            ));
            Ok(Rolled {
                service: target.service.clone(),
                task_definition: target.task_definition.clone(),
                deployment_id: id,
                rollout_state: rollout_state(deployment),
                already: false,
            })
        }
    });
    let rolled = try_join_all(starts).await?;
    Ok((rolled, history))
}

/// Waits until every deployment completed, one failed, or the timeout passed.
pub async fn wait(
    ecs: &Client,
    settings: &Settings,
    rolled: &mut [Rolled],
    mut seen_events: History,
    reporter: &dyn Reporter,
) -> Result<(), Error> {
    let watch = Watch::new(settings.timeouts.heartbeat);
    let names: Vec<String> = rolled.iter().map(|r| r.service.clone()).collect();
    let mut shown: HashSet<String> = HashSet::new();
    loop {
        // A service gone in the middle of the rollout fails the rollout (exit 1), not the settings.
        let services = services::describe(ecs, &settings.cluster, &names)
            .await
            .map_err(|error| match error {
                Error::Mismatch { problem, .. } => Error::RolloutFailed {
                    service: names.join(", "),
                    reason: problem,
                },
                other => other,
            })?;
        for service in services.values() {
            let mut fresh: Vec<_> = service
                .events()
                .iter()
                .filter(|e| e.id().is_some_and(|id| seen_events.insert(id.to_owned())))
                .collect();
            fresh.reverse(); // ECS lists events newest first
            for event in fresh {
                reporter.info(&format!("event: {}", event.message().unwrap_or_default()));
            }
        }

        let seen = poll(
            &services,
            rolled,
            &mut shown,
            watch.elapsed() >= SHOW_UP_GRACE,
        );
        if !seen.failed.is_empty() {
            for (index, _) in &seen.failed {
                let rolled = &rolled[*index];
                explain(ecs, settings, &services[&rolled.service], rolled, reporter).await;
            }
            let service = seen
                .failed
                .iter()
                .map(|(index, _)| format!("`{}`", rolled[*index].service))
                .collect::<Vec<_>>()
                .join(", ");
            let reason = seen
                .failed
                .into_iter()
                .map(|(_, reason)| reason)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::RolloutFailed { service, reason });
        }
        let (states, done) = (seen.states, seen.done);
        let state = states.join(", ");
        if done {
            reporter.info(&format!("rollout finished: {state}"));
            return Ok(());
        }
        if watch.elapsed() >= settings.timeouts.rollout {
            return Err(Error::RolloutTimeout {
                timeout: short_duration(settings.timeouts.rollout),
                state: format!(
                    "{state}; the deployments go on in ECS, nothing was rolled back by berth"
                ),
            });
        }
        watch.beat(reporter, &state);
        tokio::time::sleep(settings.timeouts.poll.min(Duration::from_secs(60))).await;
    }
}

/// One look at every service.
struct Poll {
    /// `web: COMPLETED`, `devops: IN_PROGRESS, 1/2 running, 0 failed tasks`.
    states: Vec<String>,
    /// Index in `rolled` and reason of each failed rollout.
    failed: Vec<(usize, String)>,
    /// Every rollout completed.
    done: bool,
}

/// Judges every service in one poll, so that a failure of one does not hide that another
/// completed in the same poll: the record says how each ended. `grace_over`: the time ECS may
/// take to show a new deployment has passed.
fn poll(
    services: &BTreeMap<String, Service>,
    rolled: &mut [Rolled],
    shown: &mut HashSet<String>,
    grace_over: bool,
) -> Poll {
    let mut seen = Poll {
        states: Vec::new(),
        failed: Vec::new(),
        done: true,
    };
    for (index, rolled) in rolled.iter_mut().enumerate() {
        let service = &services[&rolled.service];
        if service
            .deployments()
            .iter()
            .any(|d| d.id() == Some(rolled.deployment_id.as_str()))
        {
            shown.insert(rolled.service.clone());
        }
        let settled = grace_over || shown.contains(&rolled.service);
        match judge(service, rolled, settled) {
            Verdict::Completed => {
                rolled.rollout_state = "COMPLETED".to_owned();
                seen.states.push(format!("{}: COMPLETED", rolled.service));
            }
            Verdict::InProgress(state) => {
                seen.done = false;
                seen.states.push(format!("{}: {state}", rolled.service));
            }
            Verdict::Failed(reason) => {
                rolled.rollout_state = "FAILED".to_owned();
                seen.done = false;
                seen.states.push(format!("{}: FAILED", rolled.service));
                seen.failed.push((index, reason));
            }
        }
    }
    seen
}

enum Verdict {
    Completed,
    InProgress(String),
    Failed(String),
}

/// `settled`: our deployment was seen in a read before, or the grace period is over.
fn judge(service: &Service, rolled: &Rolled, settled: bool) -> Verdict {
    let ours = service
        .deployments()
        .iter()
        .find(|d| d.id() == Some(rolled.deployment_id.as_str()));
    match ours {
        Some(deployment) => {
            let state = rollout_state(deployment);
            let (running, desired) = (deployment.running_count(), deployment.desired_count());
            match state.as_str() {
                "COMPLETED" if running == desired => Verdict::Completed,
                "FAILED" => Verdict::Failed(format!(
                    "deployment `{}` is FAILED: {}",
                    rolled.deployment_id,
                    deployment
                        .rollout_state_reason()
                        .unwrap_or("no reason given")
                )),
                _ => Verdict::InProgress(format!(
                    "{state}, {running}/{desired} running, {} failed tasks",
                    deployment.failed_tasks()
                )),
            }
        }
        None if !settled => Verdict::InProgress(format!(
            "waiting for ECS to show deployment `{}`",
            rolled.deployment_id
        )),
        None if service.task_definition() != Some(rolled.task_definition.as_str()) => {
            Verdict::Failed(format!(
                "deployment `{}` is gone and the service runs `{}`: rolled back or replaced",
                rolled.deployment_id,
                arn::short(service.task_definition().unwrap_or("?"))
            ))
        }
        // Replaced by another deployment of the same revision (e.g. a forced one): judge that.
        None => match service.deployments().first() {
            Some(primary) if rollout_state(primary) == "COMPLETED" => Verdict::Completed,
            Some(primary) => Verdict::InProgress(rollout_state(primary)),
            None => Verdict::InProgress("no deployments".to_owned()),
        },
    }
}

/// After a failure: the service's recent events and why the new revision's tasks stopped.
async fn explain(
    ecs: &Client,
    settings: &Settings,
    service: &Service,
    rolled: &Rolled,
    reporter: &dyn Reporter,
) {
    reporter.info(&format!("recent events of `{}`:", rolled.service));
    for event in service.events().iter().take(10).rev() {
        reporter.info(&format!("  {}", event.message().unwrap_or_default()));
    }
    let Ok(listed) = ecs
        .list_tasks()
        .cluster(&settings.cluster)
        .service_name(&rolled.service)
        .desired_status(DesiredStatus::Stopped)
        .send()
        .await
    else {
        return;
    };
    if listed.task_arns().is_empty() {
        return;
    }
    let Ok(described) = ecs
        .describe_tasks()
        .cluster(&settings.cluster)
        .set_tasks(Some(listed.task_arns().to_vec()))
        .send()
        .await
    else {
        return;
    };
    let ours: Vec<_> = described
        .tasks()
        .iter()
        .filter(|t| t.task_definition_arn() == Some(rolled.task_definition.as_str()))
        .take(5)
        .collect();
    if !ours.is_empty() {
        reporter.info(&format!(
            "stopped tasks of `{}`:",
            arn::short(&rolled.task_definition)
        ));
    }
    for task in ours {
        let containers: Vec<String> = task
            .containers()
            .iter()
            .map(|c| {
                let code = c
                    .exit_code()
                    .map_or_else(|| "no exit code".to_owned(), |code| format!("exit {code}"));
                format!("{} {code}", c.name().unwrap_or("?"))
            })
            .collect();
        reporter.info(&format!(
            "  task {}: {} ({}); {}",
            arn::short(task.task_arn().unwrap_or("?")),
            task.stop_code().map_or("no stop code", |c| c.as_str()),
            task.stopped_reason().unwrap_or("no reason"),
            containers.join(", ")
        ));
    }
}

fn rollout_state(deployment: &aws_sdk_ecs::types::Deployment) -> String {
    deployment
        .rollout_state()
        .map_or("UNKNOWN", |s| s.as_str())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};

    use std::collections::{BTreeMap, HashSet};

    use super::{Rolled, Verdict, judge, poll};

    const OURS: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:8";
    const OLD: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:7";

    fn rolled() -> Rolled {
        Rolled {
            service: "web".into(),
            task_definition: OURS.into(),
            deployment_id: "ecs-svc/ours".into(),
            rollout_state: "IN_PROGRESS".into(),
            already: false,
        }
    }

    fn deployment(id: &str, td: &str, state: DeploymentRolloutState, running: i32) -> Deployment {
        Deployment::builder()
            .id(id)
            .task_definition(td)
            .rollout_state(state)
            .rollout_state_reason("ECS deployment circuit breaker: tasks failed to start.")
            .running_count(running)
            .desired_count(2)
            .build()
    }

    fn service(td: &str, deployments: Vec<Deployment>) -> Service {
        Service::builder()
            .task_definition(td)
            .set_deployments(Some(deployments))
            .build()
    }

    #[test]
    fn completed_needs_running_equal_to_desired() {
        let done = service(
            OURS,
            vec![deployment(
                "ecs-svc/ours",
                OURS,
                DeploymentRolloutState::Completed,
                2,
            )],
        );
        assert!(matches!(judge(&done, &rolled(), true), Verdict::Completed));
        let short = service(
            OURS,
            vec![deployment(
                "ecs-svc/ours",
                OURS,
                DeploymentRolloutState::Completed,
                1,
            )],
        );
        assert!(matches!(
            judge(&short, &rolled(), true),
            Verdict::InProgress(_)
        ));
    }

    #[test]
    fn failed_deployment_fails_even_while_the_service_is_stable_on_the_old_revision() {
        let rolling_back = service(
            OLD,
            vec![
                deployment(
                    "ecs-svc/rollback",
                    OLD,
                    DeploymentRolloutState::InProgress,
                    2,
                ),
                deployment("ecs-svc/ours", OURS, DeploymentRolloutState::Failed, 0),
            ],
        );
        let Verdict::Failed(reason) = judge(&rolling_back, &rolled(), true) else {
            panic!("a FAILED deployment must fail the rollout");
        };
        assert!(reason.contains("circuit breaker"), "{reason}");
    }

    #[test]
    fn a_deployment_gone_while_the_service_runs_another_revision_is_a_rollback() {
        // What `services-stable` calls success: one COMPLETED deployment, of the old revision.
        let rolled_back = service(
            OLD,
            vec![deployment(
                "ecs-svc/rollback",
                OLD,
                DeploymentRolloutState::Completed,
                2,
            )],
        );
        let Verdict::Failed(reason) = judge(&rolled_back, &rolled(), true) else {
            panic!("a rollback must fail the rollout");
        };
        assert!(reason.contains("rolled back"), "{reason}");
        // A stale read right after UpdateService looks the same: not yet a verdict.
        assert!(matches!(
            judge(&rolled_back, &rolled(), false),
            Verdict::InProgress(_)
        ));
    }

    #[test]
    fn a_poll_that_sees_a_failure_still_judges_every_service() {
        let devops_td = "arn:aws:ecs:us-east-1:1:task-definition/devops:8";
        let services = BTreeMap::from([
            (
                "web".to_owned(),
                service(
                    OLD,
                    vec![deployment(
                        "ecs-svc/ours",
                        OURS,
                        DeploymentRolloutState::Failed,
                        0,
                    )],
                ),
            ),
            (
                "devops".to_owned(),
                service(
                    devops_td,
                    vec![deployment(
                        "ecs-svc/devops",
                        devops_td,
                        DeploymentRolloutState::Completed,
                        2,
                    )],
                ),
            ),
        ]);
        let mut all = vec![
            rolled(),
            Rolled {
                service: "devops".into(),
                task_definition: devops_td.into(),
                deployment_id: "ecs-svc/devops".into(),
                rollout_state: "IN_PROGRESS".into(),
                already: false,
            },
        ];
        let seen = poll(&services, &mut all, &mut HashSet::new(), false);
        assert_eq!(seen.failed.len(), 1);
        assert_eq!(seen.failed[0].0, 0);
        assert!(!seen.done);
        assert_eq!(all[0].rollout_state, "FAILED");
        assert_eq!(
            all[1].rollout_state, "COMPLETED",
            "devops completed in the same poll"
        );
        assert_eq!(seen.states, ["web: FAILED", "devops: COMPLETED"]);
    }
}
