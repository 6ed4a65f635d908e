//! The rollout's decisions, pure: how to start each service, and what one look at the services
//! says of each rollout (completed, in progress, failed and why). The I/O around them is in
//! [`super`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service, ServiceDeployment};
use serde::Serialize;

use super::deployment::decide::{self as service_deployment, PausedAt};
use crate::aws::arn;
use crate::steps::rollout::{Rolled, Target};

/// A deployment's `rolloutState`, as ECS's own controller reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
    /// Its service deployment waits at a pause hook for a person.
    Paused,
    /// No rollout state: ECS shows none (yet) for this deployment.
    Unknown,
}

impl RolloutState {
    pub fn of(deployment: &Deployment) -> Self {
        match deployment.rollout_state() {
            Some(DeploymentRolloutState::InProgress) => Self::InProgress,
            Some(DeploymentRolloutState::Completed) => Self::Completed,
            Some(DeploymentRolloutState::Failed) => Self::Failed,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Paused => "PAUSED",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for RolloutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to start the rollout of one service.
pub(super) enum Start<'a> {
    /// The service already runs our revision: wait on that deployment.
    Wait(&'a Deployment),
    /// Our deployment FAILED and ECS left the service on it (a circuit breaker without rollback):
    /// start it again (`forceNewDeployment`), as the rerun of a deploy is meant to.
    Again(&'a Deployment),
    /// Point the service at our revision.
    Update,
}

pub(super) fn how_to_start<'a>(service: &'a Service, target: &Target) -> Start<'a> {
    let ours = Some(target.task_definition.as_str());
    if service.task_definition() != ours {
        return Start::Update;
    }
    match service
        .deployments()
        .iter()
        .find(|d| d.task_definition() == ours)
    {
        Some(deployment) if RolloutState::of(deployment) == RolloutState::Failed => {
            Start::Again(deployment)
        }
        Some(deployment) => Start::Wait(deployment),
        None => Start::Update,
    }
}

/// One look at every service.
pub(super) struct Poll {
    /// `web: COMPLETED`, `devops: IN_PROGRESS, 1/2 running, 0 failed tasks`.
    pub states: Vec<String>,
    /// Index in `rolled` and reason of each failed rollout.
    pub failed: Vec<(usize, String)>,
    /// Every rollout completed.
    pub done: bool,
    /// Index in `rolled` of each rollout whose service deployment waits at a pause hook.
    pub paused: Vec<usize>,
    /// Stages reached and traffic shifted since the last look, to tell.
    pub news: Vec<String>,
    /// Rollouts completed or paused.
    settled: usize,
}

impl Poll {
    /// Nothing is left to wait for: every rollout completed or waits for a person, one at
    /// least.
    pub fn only_paused(&self) -> bool {
        !self.paused.is_empty() && self.failed.is_empty() && self.states.len() == self.settled
    }
}

/// Judges every service in one poll, so that a failure of one does not hide that another
/// completed in the same poll: the record says how each ended. Each rollout whose service
/// deployment was read is judged by it. `elapsed`: how long the wait has lasted.
pub(super) fn poll(
    (services, deployments): (
        &BTreeMap<String, Service>,
        &BTreeMap<String, ServiceDeployment>,
    ),
    rolled: &mut [Rolled],
    shown: &mut HashSet<String>,
    elapsed: Duration,
) -> Poll {
    let grace_over = elapsed >= SHOW_UP_GRACE;
    let mut seen = Poll {
        states: Vec::new(),
        failed: Vec::new(),
        done: true,
        paused: Vec::new(),
        news: Vec::new(),
        settled: 0,
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
        let ours = rolled
            .service_deployment
            .as_ref()
            .and_then(|arn| deployments.get(arn));
        if let Some(ours) = ours {
            rolled.service_deployment_status = ours.status().map(|s| s.as_str().to_owned());
            let (course, news) =
                service_deployment::news(&rolled.service, &rolled.course, ours, elapsed);
            rolled.course = course;
            seen.news.extend(news);
        }
        let in_stage = elapsed.saturating_sub(rolled.course.since);
        rolled.paused = None;
        match judge(service, rolled, settled, (ours, in_stage)) {
            Verdict::Completed => {
                rolled.rollout_state = RolloutState::Completed;
                seen.settled += 1;
                seen.states.push(format!("{}: COMPLETED", rolled.service));
            }
            Verdict::Paused(at) => {
                rolled.rollout_state = RolloutState::Paused;
                seen.done = false;
                seen.settled += 1;
                seen.states.push(format!(
                    "{}: PAUSED at {} (hook `{}`)",
                    rolled.service, at.stage, at.hook_id
                ));
                rolled.paused = Some(at);
                seen.paused.push(index);
            }
            Verdict::InProgress(state) => {
                seen.done = false;
                seen.states.push(format!("{}: {state}", rolled.service));
            }
            Verdict::Failed(reason) => {
                rolled.rollout_state = RolloutState::Failed;
                seen.done = false;
                seen.states.push(format!("{}: FAILED", rolled.service));
                seen.failed.push((index, reason));
            }
        }
    }
    seen
}

pub(super) enum Verdict {
    Completed,
    InProgress(String),
    Failed(String),
    /// The service deployment waits at a pause hook for a person.
    Paused(PausedAt),
}

/// `settled`: our deployment was seen in a read before, or the grace period is over. `sd`: our
/// service deployment, when it was read, and how long berth has seen its stage: its status is
/// the verdict.
pub(super) fn judge(
    service: &Service,
    rolled: &Rolled,
    settled: bool,
    (sd, in_stage): (Option<&ServiceDeployment>, Duration),
) -> Verdict {
    let ours = service
        .deployments()
        .iter()
        .find(|d| d.id() == Some(rolled.deployment_id.as_str()));
    if let Some(sd) = sd {
        return match service_deployment::judge(sd, ours, in_stage) {
            Verdict::InProgress(state) => ours
                .and_then(|d| gives_up(service, rolled, d))
                .unwrap_or(Verdict::InProgress(state)),
            verdict => verdict,
        };
    }
    match ours {
        Some(deployment) => {
            let state = RolloutState::of(deployment);
            let (running, desired) = (deployment.running_count(), deployment.desired_count());
            match state {
                RolloutState::Completed if running == desired => Verdict::Completed,
                RolloutState::Failed => Verdict::Failed(format!(
                    "deployment `{}` is FAILED: {}",
                    rolled.deployment_id,
                    deployment
                        .rollout_state_reason()
                        .unwrap_or("no reason given")
                )),
                _ => gives_up(service, rolled, deployment).unwrap_or_else(|| {
                    Verdict::InProgress(format!(
                        "{state}, {running}/{desired} running, {} failed tasks",
                        deployment.failed_tasks()
                    ))
                }),
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
            Some(primary) => match RolloutState::of(primary) {
                RolloutState::Completed => Verdict::Completed,
                state => Verdict::InProgress(state.to_string()),
            },
            None => Verdict::InProgress("no deployments".to_owned()),
        },
    }
}

/// After a failure with several services: which revision each one runs now, since the others may
/// have completed (the JSON record says the same in `ends_on`).
pub(super) fn where_each_ends(rolled: &[Rolled]) -> Vec<String> {
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

/// Without a circuit breaker ECS replaces failing tasks for ever: berth gives up at the
/// breaker's threshold.
fn gives_up(service: &Service, rolled: &Rolled, deployment: &Deployment) -> Option<Verdict> {
    let threshold = failure_threshold(deployment.desired_count());
    (!has_circuit_breaker(service) && deployment.failed_tasks() >= threshold).then(|| {
        Verdict::Failed(format!(
            "deployment `{}`: {} tasks of our revision failed and none stayed up; the service has no circuit breaker, so ECS would go on replacing them (berth gives up at the breaker's threshold, {threshold})",
            rolled.deployment_id,
            deployment.failed_tasks(),
        ))
    })
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

/// ECS reads are eventually consistent: right after `UpdateService` a read may still show the
/// old state. Until our deployment has been seen once, or this long has passed, its absence is
/// not taken for a rollback.
pub(super) const SHOW_UP_GRACE: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};

    use std::collections::{BTreeMap, HashSet};
    use std::time::Duration;

    use aws_sdk_ecs::types::{DeploymentCircuitBreaker, DeploymentConfiguration};

    use super::{RolloutState, Start, Verdict, how_to_start, judge, poll, where_each_ends};
    use crate::steps::rollout::{Rolled, Target};

    const OURS: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:8";
    const OLD: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:7";

    fn rolled() -> Rolled {
        Rolled {
            service: "web".into(),
            task_definition: OURS.into(),
            deployment_id: "ecs-svc/ours".into(),
            rollout_state: RolloutState::InProgress,
            already: false,
            ends_on: None,
            service_deployment: None,
            service_deployment_status: None,
            deployment_created: None,
            paused: None,
            course: Default::default(),
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
        assert!(matches!(
            judge(&done, &rolled(), true, (None, Duration::ZERO)),
            Verdict::Completed
        ));
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
            judge(&short, &rolled(), true, (None, Duration::ZERO)),
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
        let Verdict::Failed(reason) = judge(&rolling_back, &rolled(), true, (None, Duration::ZERO))
        else {
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
        let Verdict::Failed(reason) = judge(&rolled_back, &rolled(), true, (None, Duration::ZERO))
        else {
            panic!("a rollback must fail the rollout");
        };
        assert!(reason.contains("rolled back"), "{reason}");
        // A stale read right after UpdateService looks the same: not yet a verdict.
        assert!(matches!(
            judge(&rolled_back, &rolled(), false, (None, Duration::ZERO)),
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
                rollout_state: RolloutState::InProgress,
                already: false,
                ends_on: None,
                service_deployment: None,
                service_deployment_status: None,
                deployment_created: None,
                paused: None,
                course: Default::default(),
            },
        ];
        let seen = poll(
            (&services, &BTreeMap::new()),
            &mut all,
            &mut HashSet::new(),
            Duration::ZERO,
        );
        assert_eq!(seen.failed.len(), 1);
        assert_eq!(seen.failed[0].0, 0);
        assert!(!seen.done);
        assert_eq!(all[0].rollout_state, RolloutState::Failed);
        assert_eq!(
            all[1].rollout_state,
            RolloutState::Completed,
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
            let verdict = judge(
                &failing(failed, desired, breaker),
                &rolled(),
                true,
                (None, Duration::ZERO),
            );
            match verdict {
                Verdict::Failed(reason) => {
                    assert!(fails, "{case}: {reason}");
                    assert!(reason.contains("no circuit breaker"), "{case}: {reason}");
                }
                Verdict::InProgress(_) => assert!(!fails, "{case}"),
                Verdict::Completed | Verdict::Paused(_) => panic!("{case}: settled"),
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
}
