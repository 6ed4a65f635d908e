//! Roll out: point every service at our revision, then wait on *our* deployment.
//!
//! Success is our deployment's `rolloutState` COMPLETED with running = desired. Failure is
//! FAILED, or our deployment gone while the service points elsewhere (a circuit-breaker
//! rollback). `wait_until_services_stable` is not used: after a rollback the service is stable
//! again, on the old revision, and the waiter reports success.

pub mod step;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{Deployment, DesiredStatus, Service, Task};
use futures_util::future::try_join_all;
use serde::Serialize;

use crate::aws::arn;
use crate::aws::failed;
use crate::aws::services;
use crate::error::Error;
use crate::report::{Reporter, Watch};
use crate::settings::Settings;
use crate::text::{short_duration, with_causes};

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
    /// The revision the service runs at the end (after a rollback, not ours).
    pub ends_on: Option<String>,
}

impl Rolled {
    /// The rollout of `target` by `deployment`, which puts the service on our revision.
    fn new(target: &Target, deployment: &Deployment, already: bool) -> Self {
        Self {
            service: target.service.clone(),
            task_definition: target.task_definition.clone(),
            deployment_id: deployment.id().unwrap_or_default().to_owned(),
            rollout_state: rollout_state(deployment),
            already,
            ends_on: Some(target.task_definition.clone()),
        }
    }
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
            let force = match how_to_start(service, target) {
                Start::Wait(deployment) => {
                    reporter.info(&format!(
                        "`{}` already runs `{}`: waiting on deployment `{}`",
                        target.service,
                        arn::short(&target.task_definition),
                        deployment.id().unwrap_or_default()
                    ));
                    return Ok::<_, Error>(Rolled::new(target, deployment, true));
                }
                Start::Again(deployment) => {
                    reporter.info(&format!(
                        "`{}`'s deployment `{}` of `{}` FAILED and ECS did not roll it back (the circuit breaker's rollback is off): starting a new deployment of it",
                        target.service,
                        deployment.id().unwrap_or_default(),
                        arn::short(&target.task_definition)
                    ));
                    true
                }
                Start::Update => false,
            };
            // The moment the deploy changes a service: benches/lookup_latency.sh times it.
            tracing::info!(service = %target.service, "calling UpdateService");
            let output = ecs
                .update_service()
                .cluster(&settings.cluster)
                .service(&target.service)
                .task_definition(&target.task_definition)
                .force_new_deployment(force)
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
            reporter.info(&format!(
                "`{}` → `{}`: deployment `{}` started",
                target.service,
                arn::short(&target.task_definition),
                deployment.id().unwrap_or_default()
            ));
            Ok(Rolled::new(target, deployment, false))
        }
    });
    let rolled = try_join_all(starts).await?;
    Ok((rolled, history))
}

/// How to start the rollout of one service.
enum Start<'a> {
    /// The service already runs our revision: wait on that deployment.
    Wait(&'a Deployment),
    /// Our deployment FAILED and ECS left the service on it (a circuit breaker without rollback):
    /// start it again (`forceNewDeployment`), as the rerun of a deploy is meant to.
    Again(&'a Deployment),
    /// Point the service at our revision.
    Update,
}

fn how_to_start<'a>(service: &'a Service, target: &Target) -> Start<'a> {
    let ours = Some(target.task_definition.as_str());
    if service.task_definition() != ours {
        return Start::Update;
    }
    match service
        .deployments()
        .iter()
        .find(|d| d.task_definition() == ours)
    {
        Some(deployment) if rollout_state(deployment) == "FAILED" => Start::Again(deployment),
        Some(deployment) => Start::Wait(deployment),
        None => Start::Update,
    }
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
        let services = match services::describe(ecs, &settings.cluster, &names).await {
            Ok(services) => services,
            // Throttled or unanswered even after the SDK's retries: look again at the next poll.
            Err(error) if crate::aws::is_transient(&error) => {
                watch.beat(
                    reporter,
                    &format!(
                        "AWS did not answer ({}); looking again",
                        with_causes(&error)
                    ),
                );
                settings.timeouts.pause(watch.elapsed()).await;
                if watch.elapsed() < settings.timeouts.rollout {
                    continue;
                }
                return Err(error);
            }
            Err(Error::Mismatch { problem, .. }) => {
                return Err(Error::RolloutFailed {
                    service: names.join(", "),
                    reason: problem,
                });
            }
            Err(other) => return Err(other),
        };
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
            if rolled.len() > 1 {
                for line in where_each_ends(rolled) {
                    reporter.info(&line);
                }
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
            for rolled in rolled.iter().filter(|r| r.rollout_state != "COMPLETED") {
                show_tasks(ecs, settings, rolled, DesiredStatus::Running, reporter).await;
            }
            return Err(Error::RolloutTimeout {
                timeout: short_duration(settings.timeouts.rollout),
                state: format!(
                    "{state}; the deployments go on in ECS, nothing was rolled back by berth"
                ),
            });
        }
        watch.beat(reporter, &state);
        settings.timeouts.pause(watch.elapsed()).await;
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
        rolled.ends_on = service.task_definition().map(str::to_owned);
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
                _ if !has_circuit_breaker(service)
                    && deployment.failed_tasks() >= failure_threshold(desired) =>
                {
                    Verdict::Failed(format!(
                        "deployment `{}`: {} tasks of our revision failed and none stayed up; the service has no circuit breaker, so ECS would go on replacing them (berth gives up at the breaker's threshold, {})",
                        rolled.deployment_id,
                        deployment.failed_tasks(),
                        failure_threshold(desired)
                    ))
                }
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

/// After a failure with several services: which revision each one runs now, since the others may
/// have completed (the JSON record says the same in `ends_on`).
fn where_each_ends(rolled: &[Rolled]) -> Vec<String> {
    let mut lines = vec!["where each service ends:".to_owned()];
    for rolled in rolled {
        let runs = rolled.ends_on.as_deref().map_or("?", arn::short);
        let whose = if rolled.ends_on.as_deref() == Some(rolled.task_definition.as_str()) {
            format!("this deploy's revision, {}", rolled.rollout_state)
        } else {
            "not this deploy's revision".to_owned()
        };
        lines.push(format!("  `{}` runs `{runs}` ({whose})", rolled.service));
    }
    lines
}

fn has_circuit_breaker(service: &Service) -> bool {
    service
        .deployment_configuration()
        .and_then(|config| config.deployment_circuit_breaker())
        .is_some_and(|breaker| breaker.enable())
}

/// ECS's circuit-breaker threshold: half the desired count, at least 3, at most 200 failed tasks.
/// ECS counts failed tasks only until one runs healthy (then it resets the count to 0), so
/// reaching it means none stayed up.
fn failure_threshold(desired: i32) -> i32 {
    ((desired + 1) / 2).clamp(3, 200)
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
    show_tasks(ecs, settings, rolled, DesiredStatus::Stopped, reporter).await;
}

/// Up to five tasks of our revision, running or stopped, with their health and exit codes. Best
/// effort: this only explains a failure that is already reported.
async fn show_tasks(
    ecs: &Client,
    settings: &Settings,
    rolled: &Rolled,
    status: DesiredStatus,
    reporter: &dyn Reporter,
) {
    let Ok(listed) = ecs
        .list_tasks()
        .cluster(&settings.cluster)
        .service_name(&rolled.service)
        .desired_status(status.clone())
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
            "{} tasks of `{}`:",
            match status {
                DesiredStatus::Stopped => "stopped",
                _ => "running",
            },
            arn::short(&rolled.task_definition)
        ));
    }
    for task in ours {
        reporter.info(&task_line(task));
    }
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

fn rollout_state(deployment: &Deployment) -> String {
    deployment
        .rollout_state()
        .map_or("UNKNOWN", |s| s.as_str())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};

    use std::collections::{BTreeMap, HashSet};

    use aws_sdk_ecs::types::{DeploymentCircuitBreaker, DeploymentConfiguration};

    use super::{
        Rolled, Start, Target, Verdict, how_to_start, judge, poll, task_line, where_each_ends,
    };

    const OURS: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:8";
    const OLD: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:7";

    fn rolled() -> Rolled {
        Rolled {
            service: "web".into(),
            task_definition: OURS.into(),
            deployment_id: "ecs-svc/ours".into(),
            rollout_state: "IN_PROGRESS".into(),
            already: false,
            ends_on: None,
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
                ends_on: None,
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
        assert_eq!(
            where_each_ends(&all),
            [
                "where each service ends:",
                "  `web` runs `web:7` (not this deploy's revision)",
                "  `devops` runs `devops:8` (this deploy's revision, COMPLETED)",
            ]
        );
    }

    fn failing(failed: i32, desired: i32, breaker: bool) -> Service {
        let deployment = Deployment::builder()
            .id("ecs-svc/ours")
            .task_definition(OURS)
            .rollout_state(DeploymentRolloutState::InProgress)
            .running_count(0)
            .desired_count(desired)
            .failed_tasks(failed)
            .build();
        let mut service = service(OURS, vec![deployment]);
        service.deployment_configuration = Some(
            DeploymentConfiguration::builder()
                .deployment_circuit_breaker(
                    DeploymentCircuitBreaker::builder()
                        .enable(breaker)
                        .rollback(breaker)
                        .build(),
                )
                .build(),
        );
        service
    }

    /// Without a circuit breaker ECS replaces failing tasks forever; berth stops at the
    /// breaker's threshold (half the desired count, at least 3).
    #[test]
    fn without_a_circuit_breaker_a_rollout_fails_at_the_breakers_threshold() {
        let rows = [
            ("2 of at least 3 failed", 2, 2, false, false),
            ("3 failed: the minimum threshold", 3, 2, false, true),
            ("5 of a threshold of 5 (desired 10)", 5, 10, false, true),
            ("4 of a threshold of 5", 4, 10, false, false),
            ("with a breaker, ECS decides", 50, 2, true, false),
        ];
        for (case, failed, desired, breaker, fails) in rows {
            let verdict = judge(&failing(failed, desired, breaker), &rolled(), true);
            match verdict {
                Verdict::Failed(reason) => {
                    assert!(fails, "{case}: {reason}");
                    assert!(reason.contains("no circuit breaker"), "{case}: {reason}");
                }
                Verdict::InProgress(_) => assert!(!fails, "{case}"),
                Verdict::Completed => panic!("{case}: completed"),
            }
        }
    }

    #[test]
    fn a_failed_deployment_that_ecs_left_in_place_is_started_again() {
        let target = Target {
            service: "web".into(),
            task_definition: OURS.into(),
        };
        let failed_in_place = service(
            OURS,
            vec![deployment(
                "ecs-svc/ours",
                OURS,
                DeploymentRolloutState::Failed,
                0,
            )],
        );
        let rolling = service(
            OURS,
            vec![deployment(
                "ecs-svc/ours",
                OURS,
                DeploymentRolloutState::InProgress,
                1,
            )],
        );
        let rolled_back = service(
            OLD,
            vec![
                deployment("ecs-svc/back", OLD, DeploymentRolloutState::Completed, 2),
                deployment("ecs-svc/ours", OURS, DeploymentRolloutState::Failed, 0),
            ],
        );
        assert!(matches!(
            how_to_start(&failed_in_place, &target),
            Start::Again(_)
        ));
        assert!(matches!(how_to_start(&rolling, &target), Start::Wait(_)));
        assert!(matches!(how_to_start(&rolled_back, &target), Start::Update));
    }

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
