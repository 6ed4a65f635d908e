//! A service deployment's verdict, pure: one row per status ECS gives it, and why it failed,
//! read from what ECS says of it (the circuit breaker's count, the alarms, the hooks, the
//! rollback). The I/O around it is in [`super`].

use std::time::Duration;

use aws_sdk_ecs::types::{
    Deployment, DeploymentConfiguration, DeploymentLifecycleHookStatus,
    DeploymentLifecycleHookTargetType, DeploymentStrategy, ServiceDeployment,
    ServiceDeploymentLifecycleStage as Stage, ServiceDeploymentRollbackMonitorsStatus as Monitor,
    ServiceDeploymentStatus as Status,
};
use serde::Serialize;

use super::super::decide::Verdict;
use crate::aws::arn;
use crate::text::short_duration;

/// Where a paused service deployment waits: the stage, and the pause hook a person answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PausedAt {
    pub stage: String,
    pub hook_id: String,
}

/// What berth last saw of a service deployment's course: a change is news.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Course {
    pub stage: Option<String>,
    /// The production traffic on our revision, in percent.
    pub weight: Option<f64>,
    /// How long into the wait berth first saw `stage`.
    pub since: Duration,
}

/// The verdict on `ours`, the service deployment of this rollout. `legacy`: its deployment as
/// `DescribeServices` shows it, for the tasks that failed where no circuit breaker counts them.
/// `in_stage`: how long berth has seen its current stage (for the bake time left).
pub fn judge(ours: &ServiceDeployment, legacy: Option<&Deployment>, in_stage: Duration) -> Verdict {
    let id = id(ours);
    let status = ours.status().map_or("UNKNOWN", Status::as_str);
    match ours.status() {
        Some(Status::Successful) => Verdict::Completed,
        Some(Status::InProgress) if let Some(paused) = paused(ours) => Verdict::Paused(paused),
        Some(Status::Pending | Status::InProgress) => {
            Verdict::InProgress(progress(ours, legacy, in_stage))
        }
        Some(Status::RollbackRequested | Status::RollbackInProgress) => Verdict::Failed(format!(
            "ECS is rolling service deployment `{id}` back ({status}): {}",
            why(ours)
        )),
        Some(Status::RollbackSuccessful) => Verdict::Failed(format!(
            "ECS rolled service deployment `{id}` back: {}",
            why(ours)
        )),
        Some(Status::RollbackFailed) => Verdict::Failed(format!(
            "ECS could not roll service deployment `{id}` back (ROLLBACK_FAILED): {}",
            why(ours)
        )),
        Some(Status::StopRequested | Status::Stopped) => Verdict::Failed(format!(
            "service deployment `{id}` was stopped ({status}): {}",
            why(ours)
        )),
        // A status newer than this berth: not a verdict; the rollout's timeout bounds the wait.
        _ => Verdict::InProgress(format!("{status} (a status berth does not know)")),
    }
}

/// The pause hook the deployment waits at, if it waits at one.
pub fn paused(ours: &ServiceDeployment) -> Option<PausedAt> {
    let hook = ours.lifecycle_hook_details().iter().find(|h| {
        h.target_type() == Some(&DeploymentLifecycleHookTargetType::Pause)
            && h.status() == Some(&DeploymentLifecycleHookStatus::AwaitingAction)
    })?;
    Some(PausedAt {
        stage: ours.lifecycle_stage().map_or("?", Stage::as_str).to_owned(),
        hook_id: hook.hook_id().unwrap_or("?").to_owned(),
    })
}

/// What changed since `before`, told once: a stage reached, a step of production traffic.
pub fn news(
    service: &str,
    before: &Course,
    ours: &ServiceDeployment,
    now: Duration,
) -> (Course, Vec<String>) {
    let stage = ours.lifecycle_stage().map(|s| s.as_str().to_owned());
    let weight = ours
        .target_service_revision()
        .and_then(|t| t.requested_production_traffic_weight());
    let mut lines = Vec::new();
    let moved = stage != before.stage;
    if moved && let Some(stage) = &stage {
        let bake = match stage.as_str() {
            "BAKE_TIME" => bake_minutes(ours).map(|m| format!(" ({m}m)")),
            _ => None,
        };
        let passed = passed(before.stage.as_deref(), stage);
        let passed = if passed.is_empty() {
            String::new()
        } else {
            format!(", passed {}", passed.join(", "))
        };
        lines.push(format!(
            "`{service}`: stage {stage}{}{passed}",
            bake.unwrap_or_default()
        ));
    }
    if weight != before.weight
        && let Some(weight) = weight
        && stage.as_deref() == Some("PRODUCTION_TRAFFIC_SHIFT")
    {
        lines.push(format!(
            "`{service}`: production traffic {weight}% on the new revision"
        ));
    }
    let since = if moved { now } else { before.since };
    (
        Course {
            stage,
            weight,
            since,
        },
        lines,
    )
}

/// The lifecycle stages in the order ECS goes through them
/// (<https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ServiceDeployment.html>).
const STAGES: [&str; 10] = [
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
    "BAKE_TIME",
    "CLEAN_UP",
];

/// The stages ECS went through between two looks (from the first one when berth saw none
/// before): a look every poll misses a stage that took less.
fn passed(before: Option<&str>, now: &str) -> Vec<&'static str> {
    let at = |stage: &str| STAGES.iter().position(|s| *s == stage);
    let from = match before {
        Some(before) => at(before).map(|i| i + 1),
        None => at("PRE_SCALE_UP"),
    };
    match (from, at(now)) {
        (Some(from), Some(to)) if from < to => STAGES[from..to].to_vec(),
        _ => Vec::new(),
    }
}

fn bake_minutes(ours: &ServiceDeployment) -> Option<i32> {
    ours.deployment_configuration()
        .and_then(|c| c.bake_time_in_minutes())
}

/// `IN_PROGRESS, 1/2 running, 1/3 tasks failed, stage BAKE_TIME, bake time: 4m 12s of 10m left`.
fn progress(ours: &ServiceDeployment, legacy: Option<&Deployment>, in_stage: Duration) -> String {
    let status = ours.status().map_or("UNKNOWN", Status::as_str);
    let mut parts = vec![status.to_owned()];
    if let Some(target) = ours.target_service_revision() {
        parts.push(format!(
            "{}/{} running",
            target.running_task_count(),
            target.requested_task_count()
        ));
    }
    match ours.deployment_circuit_breaker() {
        Some(breaker) if breaker.status() == Some(&Monitor::Monitoring) => parts.push(format!(
            "{}/{} tasks failed",
            breaker.failure_count(),
            breaker.threshold()
        )),
        _ => parts.extend(legacy.map(|d| format!("{} failed tasks", d.failed_tasks()))),
    }
    if let Some(stage) = ours.lifecycle_stage() {
        parts.push(format!("stage {}", stage.as_str()));
        match stage {
            Stage::BakeTime => parts.extend(bake_minutes(ours).map(|minutes| {
                let total = Duration::from_secs(u64::try_from(minutes).unwrap_or(0) * 60);
                format!(
                    "bake time: {} of {} left",
                    short_duration(total.saturating_sub(in_stage)),
                    short_duration(total)
                )
            })),
            Stage::ProductionTrafficShift => parts.extend(
                ours.target_service_revision()
                    .and_then(|t| t.requested_production_traffic_weight())
                    .map(|w| format!("production traffic {w}%")),
            ),
            _ => {}
        }
    }
    parts.join(", ")
}

/// Why ECS rolled back or stopped: what triggered it (the circuit breaker with its count, the
/// alarms by name, a hook by its function), else the reason ECS gives.
pub fn why(ours: &ServiceDeployment) -> String {
    let mut causes = Vec::new();
    if let Some(breaker) = ours.deployment_circuit_breaker()
        && breaker.status() == Some(&Monitor::Triggered)
    {
        causes.push(format!(
            "the circuit breaker counted {}/{} failed tasks",
            breaker.failure_count(),
            breaker.threshold()
        ));
    }
    if let Some(alarms) = ours.alarms()
        && alarms.status() == Some(&Monitor::Triggered)
    {
        let names: Vec<String> = alarms
            .triggered_alarm_names()
            .iter()
            .map(|name| format!("`{name}`"))
            .collect();
        causes.push(format!("alarm {} in ALARM", names.join(", ")));
    }
    for hook in ours.lifecycle_hook_details() {
        if let Some(
            status @ (DeploymentLifecycleHookStatus::Failed
            | DeploymentLifecycleHookStatus::TimedOut),
        ) = hook.status()
        {
            let target = hook
                .target_arn()
                .map_or_else(|| "a pause hook".to_owned(), |t| format!("`{t}`"));
            let stage = ours
                .lifecycle_stage()
                .map_or(String::new(), |s| format!(" at {}", s.as_str()));
            causes.push(format!(
                "lifecycle hook {target} {}{stage}",
                status.as_str()
            ));
        }
    }
    if causes.is_empty() {
        let reason = ours
            .rollback()
            .and_then(|r| r.reason())
            .or(ours.status_reason());
        causes.push(
            reason
                .unwrap_or("ECS gave no reason")
                .trim_end_matches('.')
                .to_owned(),
        );
    }
    causes.join("; ")
}

/// A service deployment's id: the last part of its ARN.
pub fn id(ours: &ServiceDeployment) -> &str {
    arn::short(ours.service_deployment_arn().unwrap_or("?"))
}

/// How ECS deploys a service, in a few words: its strategy, bake times and lifecycle hooks.
pub fn strategy(config: Option<&DeploymentConfiguration>) -> String {
    let Some(config) = config else {
        return "ROLLING".to_owned();
    };
    let name = config.strategy().map_or("ROLLING", |s| s.as_str());
    let mut parts = vec![name.to_owned()];
    if let Some(linear) = config.linear_configuration() {
        parts.push(format!(
            "steps of {}% every {}m",
            linear.step_percent().unwrap_or(10.0),
            linear.step_bake_time_in_minutes().unwrap_or(6)
        ));
    }
    if let Some(canary) = config.canary_configuration() {
        parts.push(format!(
            "canary {}% for {}m",
            canary.canary_percent().unwrap_or(5.0),
            canary.canary_bake_time_in_minutes().unwrap_or(10)
        ));
    }
    if let Some(bake) = config.bake_time_in_minutes() {
        parts.push(format!("bake time {bake}m"));
    }
    for hook in config.lifecycle_hooks() {
        let stages: Vec<&str> = hook.lifecycle_stages().iter().map(|s| s.as_str()).collect();
        let what = match hook.target_type() {
            Some(DeploymentLifecycleHookTargetType::Pause) => "pause hook".to_owned(),
            _ => format!("hook `{}`", hook.hook_target_arn().unwrap_or("?")),
        };
        parts.push(format!("{what} at {}", stages.join(", ")));
    }
    parts.join(", ")
}

/// The least time a deployment of `config` takes: its bake time and, for LINEAR and CANARY,
/// each step's bake time (ECS's defaults where unset), however fast the tasks start.
pub fn least_time(config: Option<&DeploymentConfiguration>) -> Duration {
    let Some(config) = config else {
        return Duration::ZERO;
    };
    let mut minutes = f64::from(config.bake_time_in_minutes().unwrap_or(0));
    match config.strategy() {
        Some(DeploymentStrategy::Linear) => {
            let linear = config.linear_configuration();
            let step = linear.and_then(|l| l.step_percent()).unwrap_or(10.0);
            let bake = linear
                .and_then(|l| l.step_bake_time_in_minutes())
                .unwrap_or(6);
            // No step bake after the last step, the one that reaches 100%.
            let steps = (100.0 / step).ceil() - 1.0;
            minutes += steps.max(0.0) * f64::from(bake);
        }
        Some(DeploymentStrategy::Canary) => {
            let canary = config.canary_configuration();
            minutes += f64::from(
                canary
                    .and_then(|c| c.canary_bake_time_in_minutes())
                    .unwrap_or(10),
            );
        }
        _ => {}
    }
    Duration::from_secs_f64(minutes * 60.0)
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{
        DeploymentLifecycleHookDetail, DeploymentLifecycleHookStatus, Rollback, ServiceDeployment,
        ServiceDeploymentAlarms, ServiceDeploymentCircuitBreaker, ServiceDeploymentLifecycleStage,
        ServiceDeploymentRollbackMonitorsStatus as Monitor, ServiceDeploymentStatus as Status,
        ServiceRevisionSummary,
    };

    use std::time::Duration;

    use super::{Course, Verdict, judge, news};

    const ARN: &str = "arn:aws:ecs:us-east-1:1:service-deployment/stg/web/abcDEF123";

    fn deployment(status: Status) -> aws_sdk_ecs::types::builders::ServiceDeploymentBuilder {
        ServiceDeployment::builder()
            .service_deployment_arn(ARN)
            .status(status)
            .target_service_revision(
                ServiceRevisionSummary::builder()
                    .requested_task_count(2)
                    .running_task_count(1)
                    .build(),
            )
    }

    fn breaker(status: Monitor, failed: i32) -> ServiceDeploymentCircuitBreaker {
        ServiceDeploymentCircuitBreaker::builder()
            .status(status)
            .failure_count(failed)
            .threshold(3)
            .build()
    }

    fn said(verdict: Verdict) -> (&'static str, String) {
        match verdict {
            Verdict::Completed => ("completed", String::new()),
            Verdict::Paused(at) => ("paused", format!("{} {}", at.stage, at.hook_id)),
            Verdict::InProgress(state) => ("waiting", state),
            Verdict::Failed(reason) => ("failed", reason),
        }
    }

    /// Every status ECS gives a service deployment is a row.
    #[test]
    fn every_status_is_a_row() {
        let triggered = breaker(Monitor::Triggered, 3);
        let rows = [
            (
                "success",
                deployment(Status::Successful).build(),
                "completed",
                "",
            ),
            (
                "pending",
                deployment(Status::Pending).build(),
                "waiting",
                "PENDING, 1/2 running",
            ),
            (
                "in progress, the breaker counting",
                deployment(Status::InProgress)
                    .deployment_circuit_breaker(breaker(Monitor::Monitoring, 1))
                    .lifecycle_stage(ServiceDeploymentLifecycleStage::BakeTime)
                    .build(),
                "waiting",
                "IN_PROGRESS, 1/2 running, 1/3 tasks failed, stage BAKE_TIME",
            ),
            (
                "rolled back by the breaker",
                deployment(Status::RollbackSuccessful)
                    .deployment_circuit_breaker(triggered.clone())
                    .rollback(
                        Rollback::builder()
                            .reason("The circuit breaker did it.")
                            .build(),
                    )
                    .build(),
                "failed",
                "ECS rolled service deployment `abcDEF123` back: the circuit breaker counted 3/3 failed tasks",
            ),
            (
                "rolling back",
                deployment(Status::RollbackInProgress)
                    .deployment_circuit_breaker(triggered.clone())
                    .build(),
                "failed",
                "ECS is rolling service deployment `abcDEF123` back (ROLLBACK_IN_PROGRESS): the circuit breaker",
            ),
            (
                "rollback asked for",
                deployment(Status::RollbackRequested)
                    .rollback(Rollback::builder().reason("A user asked.").build())
                    .build(),
                "failed",
                "(ROLLBACK_REQUESTED): A user asked",
            ),
            (
                "the rollback failed",
                deployment(Status::RollbackFailed)
                    .status_reason("No earlier revision.")
                    .build(),
                "failed",
                "could not roll service deployment `abcDEF123` back (ROLLBACK_FAILED): No earlier revision",
            ),
            (
                "stopped by a newer deployment",
                deployment(Status::Stopped)
                    .status_reason("A newer service deployment started.")
                    .build(),
                "failed",
                "service deployment `abcDEF123` was stopped (STOPPED): A newer service deployment started",
            ),
            (
                "stopping",
                deployment(Status::StopRequested).build(),
                "failed",
                "(STOP_REQUESTED): ECS gave no reason",
            ),
            (
                "an alarm rolled it back",
                deployment(Status::RollbackSuccessful)
                    .alarms(
                        ServiceDeploymentAlarms::builder()
                            .status(Monitor::Triggered)
                            .triggered_alarm_names("web-5xx")
                            .build(),
                    )
                    .build(),
                "failed",
                "alarm `web-5xx` in ALARM",
            ),
            (
                "a hook failed",
                deployment(Status::RollbackSuccessful)
                    .lifecycle_stage(ServiceDeploymentLifecycleStage::PostTestTrafficShift)
                    .lifecycle_hook_details(
                        DeploymentLifecycleHookDetail::builder()
                            .target_arn("arn:aws:lambda:us-east-1:1:function:smoke")
                            .status(DeploymentLifecycleHookStatus::Failed)
                            .build(),
                    )
                    .build(),
                "failed",
                "lifecycle hook `arn:aws:lambda:us-east-1:1:function:smoke` FAILED at POST_TEST_TRAFFIC_SHIFT",
            ),
            (
                "a status from a newer ECS",
                deployment(Status::from("SOMETHING_NEW")).build(),
                "waiting",
                "SOMETHING_NEW (a status berth does not know)",
            ),
        ];
        for (case, ours, verdict, text) in rows {
            let (got, said) = said(judge(&ours, None, Duration::ZERO));
            assert_eq!(got, verdict, "{case}: {said}");
            assert!(said.contains(text), "{case}: {said:?} lacks {text:?}");
        }
    }

    /// Without a circuit breaker ECS counts no failures on the service deployment: the tasks that
    /// failed come from the service's own deployment.
    #[test]
    fn without_a_breaker_the_failed_tasks_come_from_the_services_deployment() {
        let ours = deployment(Status::InProgress)
            .deployment_circuit_breaker(
                ServiceDeploymentCircuitBreaker::builder()
                    .status(Monitor::Disabled)
                    .build(),
            )
            .build();
        let legacy = aws_sdk_ecs::types::Deployment::builder()
            .failed_tasks(2)
            .build();
        let (_, state) = said(judge(&ours, Some(&legacy), Duration::ZERO));
        assert_eq!(state, "IN_PROGRESS, 1/2 running, 2 failed tasks");
    }

    fn baking(stage: ServiceDeploymentLifecycleStage) -> ServiceDeployment {
        deployment(Status::InProgress)
            .lifecycle_stage(stage)
            .deployment_configuration(
                aws_sdk_ecs::types::DeploymentConfiguration::builder()
                    .bake_time_in_minutes(10)
                    .build(),
            )
            .build()
    }

    #[test]
    fn the_bake_time_left_counts_from_when_berth_saw_it_begin() {
        let (_, state) = said(judge(
            &baking(ServiceDeploymentLifecycleStage::BakeTime),
            None,
            Duration::from_secs(348),
        ));
        assert_eq!(
            state,
            "IN_PROGRESS, 1/2 running, stage BAKE_TIME, bake time: 4m 12s of 10m left"
        );
    }

    #[test]
    fn a_pause_hook_awaiting_action_pauses_the_rollout() {
        let paused = deployment(Status::InProgress)
            .lifecycle_stage(ServiceDeploymentLifecycleStage::PostScaleUp)
            .lifecycle_hook_details(
                DeploymentLifecycleHookDetail::builder()
                    .hook_id("ecs-pause-abc")
                    .target_type(aws_sdk_ecs::types::DeploymentLifecycleHookTargetType::Pause)
                    .status(DeploymentLifecycleHookStatus::AwaitingAction)
                    .build(),
            )
            .build();
        assert_eq!(
            said(judge(&paused, None, Duration::ZERO)),
            ("paused", "POST_SCALE_UP ecs-pause-abc".to_owned())
        );
        // A Lambda hook at work is no pause.
        let asking = deployment(Status::InProgress)
            .lifecycle_hook_details(
                DeploymentLifecycleHookDetail::builder()
                    .target_type(aws_sdk_ecs::types::DeploymentLifecycleHookTargetType::AwsLambda)
                    .status(DeploymentLifecycleHookStatus::InProgress)
                    .build(),
            )
            .build();
        assert_eq!(said(judge(&asking, None, Duration::ZERO)).0, "waiting");
    }

    #[test]
    fn news_tells_each_stage_and_traffic_step_once() {
        let shift = |weight: f64| {
            deployment(Status::InProgress)
                .lifecycle_stage(ServiceDeploymentLifecycleStage::ProductionTrafficShift)
                .target_service_revision(
                    ServiceRevisionSummary::builder()
                        .requested_production_traffic_weight(weight)
                        .build(),
                )
                .build()
        };
        let start = Course::default();
        let (course, lines) = news("web", &start, &shift(34.0), Duration::from_secs(5));
        assert_eq!(
            lines,
            [
                "`web`: stage PRODUCTION_TRAFFIC_SHIFT, passed PRE_SCALE_UP, SCALE_UP, POST_SCALE_UP, TEST_TRAFFIC_SHIFT, POST_TEST_TRAFFIC_SHIFT",
                "`web`: production traffic 34% on the new revision"
            ]
        );
        assert_eq!(course.since, Duration::from_secs(5));
        let (same, none) = news("web", &course, &shift(34.0), Duration::from_secs(6));
        assert!(none.is_empty());
        assert_eq!(same.since, Duration::from_secs(5), "the stage began at 5 s");
        let (_, step) = news("web", &same, &shift(68.0), Duration::from_secs(9));
        assert_eq!(step, ["`web`: production traffic 68% on the new revision"]);
        let (_, bake) = news(
            "web",
            &same,
            &baking(ServiceDeploymentLifecycleStage::BakeTime),
            Duration::from_secs(9),
        );
        assert_eq!(
            bake,
            ["`web`: stage BAKE_TIME (10m), passed POST_PRODUCTION_TRAFFIC_SHIFT"]
        );
    }

    #[test]
    fn a_strategy_needs_its_bake_times_at_least() {
        use aws_sdk_ecs::types::{
            CanaryConfiguration, DeploymentConfiguration, DeploymentStrategy, LinearConfiguration,
        };
        let rows = [
            (
                "rolling",
                DeploymentConfiguration::builder().build(),
                0,
                "ROLLING",
            ),
            (
                "blue/green",
                DeploymentConfiguration::builder()
                    .strategy(DeploymentStrategy::BlueGreen)
                    .bake_time_in_minutes(10)
                    .build(),
                600,
                "BLUE_GREEN, bake time 10m",
            ),
            (
                "linear: 3 steps, 2 bakes between them",
                DeploymentConfiguration::builder()
                    .strategy(DeploymentStrategy::Linear)
                    .bake_time_in_minutes(1)
                    .linear_configuration(
                        LinearConfiguration::builder()
                            .step_percent(34.0)
                            .step_bake_time_in_minutes(5)
                            .build(),
                    )
                    .build(),
                660,
                "LINEAR, steps of 34% every 5m, bake time 1m",
            ),
            (
                "linear, ECS's defaults: 10 steps of 10%, 6m apart",
                DeploymentConfiguration::builder()
                    .strategy(DeploymentStrategy::Linear)
                    .build(),
                9 * 360,
                "LINEAR",
            ),
            (
                "canary",
                DeploymentConfiguration::builder()
                    .strategy(DeploymentStrategy::Canary)
                    .canary_configuration(
                        CanaryConfiguration::builder()
                            .canary_percent(5.0)
                            .canary_bake_time_in_minutes(15)
                            .build(),
                    )
                    .build(),
                900,
                "CANARY, canary 5% for 15m",
            ),
        ];
        for (case, config, seconds, said) in rows {
            assert_eq!(
                super::least_time(Some(&config)),
                Duration::from_secs(seconds),
                "{case}"
            );
            assert_eq!(super::strategy(Some(&config)), said, "{case}");
        }
    }
}
