//! Roll out: point every service at our revision, then wait on *our* deployment.
//!
//! Success is our deployment's `rolloutState` COMPLETED with running = desired. Failure is
//! FAILED, or our deployment gone while the service points elsewhere (a circuit-breaker
//! rollback). `wait_until_services_stable` is not used: after a rollback the service is stable
//! again, on the old revision, and the waiter reports success.

mod decide;
mod deployment;
/// The service deployments as commands other than the deploy's rollout need them.
pub mod deployments {
    pub use super::deployment::{read, settle, stop_in_flight};
}
mod explain;
mod pace;
pub mod step;

use std::collections::{BTreeMap, HashSet};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{Deployment, DesiredStatus, Service, ServiceDeployment};
use futures_util::future::join_all;
use serde::Serialize;

use crate::aws::arn;
use crate::aws::failed;
use crate::aws::services;
use crate::error::Error;
use crate::report::{Reporter, Watch};
use crate::settings::{Settings, Timeouts, pause_until};
use crate::text::{short_duration, with_causes};
pub use decide::RolloutState;
use decide::{Start, how_to_start, poll};
pub use deployment::decide::{Course, PausedAt, least_time, paused as paused_at, strategy};
use explain::{failure, newest_failing, show_tasks};
use pace::Pace;

/// What the rollout needs of the settings: the cluster, and how long and how often to look.
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    pub name: &'a str,
    pub timeouts: &'a Timeouts,
    /// The environment, for what a person runs next.
    pub env: &'a str,
}

impl<'a> Cluster<'a> {
    pub fn of(settings: &'a Settings) -> Self {
        Self {
            name: &settings.cluster,
            timeouts: &settings.timeouts,
            env: &settings.env,
        }
    }
}

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
    pub rollout_state: RolloutState,
    /// The service already ran our revision when this deploy looked.
    pub already: bool,
    /// The revision the service runs at the end (after a rollback, not ours).
    pub ends_on: Option<String>,
    /// The service deployment ECS keeps of this rollout (its ARN), when berth knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_deployment: Option<String>,
    /// Its status as last seen: `SUCCESSFUL`, `ROLLBACK_SUCCESSFUL`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_deployment_status: Option<String>,
    /// Where its service deployment waits for a person, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<PausedAt>,
    /// When ECS created `deployment_id`: its service deployment was created with it.
    #[serde(skip)]
    pub deployment_created: Option<aws_smithy_types::DateTime>,
    /// The service deployment's stage and traffic as last seen.
    #[serde(skip)]
    pub course: Course,
}

impl Rolled {
    /// The rollout of `target` by `deployment`, which puts the service on our revision.
    fn new(target: &Target, deployment: &Deployment, already: bool) -> Self {
        Self {
            service: target.service.clone(),
            task_definition: target.task_definition.clone(),
            deployment_id: deployment.id().unwrap_or_default().to_owned(),
            rollout_state: RolloutState::of(deployment),
            already,
            ends_on: Some(target.task_definition.clone()),
            service_deployment: None,
            service_deployment_status: None,
            paused: None,
            deployment_created: deployment.created_at().copied(),
            course: Course::default(),
        }
    }

    /// Not rolled out: its update failed and left the service on `ends_on`.
    fn refused(target: &Target, ends_on: Option<String>) -> Self {
        Self {
            service: target.service.clone(),
            task_definition: target.task_definition.clone(),
            deployment_id: String::new(),
            rollout_state: RolloutState::Failed,
            already: false,
            ends_on,
            service_deployment: None,
            service_deployment_status: None,
            paused: None,
            deployment_created: None,
            course: Course::default(),
        }
    }
}

/// Events of the services from before this rollout: history, not news.
pub type History = HashSet<String>;

/// Points each service at its revision (concurrently), unless it already runs it; returns the
/// deployment to wait on for each, and the services' events from before. Every update is sent
/// and answered before this returns, also when one fails: nothing is left in flight.
/// `seen`: the services as this run read them a moment ago, with nothing of berth's in between
/// (else they are described again).
pub async fn start(
    ecs: &Client,
    cluster: Cluster<'_>,
    targets: &[Target],
    seen: Option<&BTreeMap<String, Service>>,
    reporter: &dyn Reporter,
) -> Result<Started, Error> {
    let names: Vec<String> = targets.iter().map(|t| t.service.clone()).collect();
    let current = match seen.filter(|seen| names.iter().all(|name| seen.contains_key(name))) {
        Some(seen) => seen.clone(),
        None => services::describe(ecs, cluster.name, &names).await?,
    };
    let history: History = current
        .values()
        .flat_map(|service| service.events())
        .filter_map(|event| event.id().map(str::to_owned))
        .collect();
    let starts = targets
        .iter()
        .map(|target| start_one(ecs, cluster, &current[&target.service], target, reporter));
    let outcomes = join_all(starts).await;
    let mut started = Started {
        rolled: Vec::new(),
        history,
        refused: None,
    };
    let mut refused = Vec::new();
    for (target, outcome) in targets.iter().zip(outcomes) {
        match outcome {
            Ok(rolled) => started.rolled.push(rolled),
            Err(error) => refused.push((target, error)),
        }
    }
    if !refused.is_empty() {
        settle_refused(ecs, cluster, refused, &mut started).await;
        started
            .rolled
            .sort_by_key(|r| names.iter().position(|name| *name == r.service));
    }
    Ok(started)
}

/// Points one service at its revision, unless it runs it already: the deployment to wait on.
async fn start_one(
    ecs: &Client,
    cluster: Cluster<'_>,
    service: &Service,
    target: &Target,
    reporter: &dyn Reporter,
) -> Result<Rolled, Error> {
    let force = match how_to_start(service, target) {
        Start::Wait(deployment) => {
            reporter.info(&format!(
                "`{}` already runs `{}`: waiting on deployment `{}`",
                target.service,
                arn::short(&target.task_definition),
                deployment.id().unwrap_or_default()
            ));
            return Ok(Rolled::new(target, deployment, true));
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
        .cluster(cluster.name)
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
            reason: "ECS accepted the update but shows no deployment of our revision".to_owned(),
        })?;
    reporter.info(&format!(
        "`{}` → `{}`: deployment `{}` started",
        target.service,
        arn::short(&target.task_definition),
        deployment.id().unwrap_or_default()
    ));
    let mut rolled = Rolled::new(target, deployment, false);
    rolled.service_deployment = output
        .service()
        .and_then(|s| s.current_service_deployment())
        .map(str::to_owned);
    Ok(rolled)
}

/// How the services' updates went.
pub struct Started {
    /// Each service's rollout: also of a service whose update failed, to say where it is.
    pub rolled: Vec<Rolled>,
    /// The services' events from before.
    pub history: History,
    /// The first update that failed and left its service where it was.
    pub refused: Option<Error>,
}

/// An update that failed may still have landed (its answer lost): each such service is looked at
/// again. One on our revision moved; one that is not stays, its rollout failed.
async fn settle_refused(
    ecs: &Client,
    cluster: Cluster<'_>,
    refused: Vec<(&Target, Error)>,
    started: &mut Started,
) {
    let names: Vec<String> = refused.iter().map(|(t, _)| t.service.clone()).collect();
    // Best effort: without an answer, each is taken to be where it was.
    let now = services::describe(ecs, cluster.name, &names)
        .await
        .unwrap_or_default();
    for (target, error) in refused {
        let service = now.get(&target.service);
        if let Some(Start::Wait(deployment)) = service.map(|s| how_to_start(s, target)) {
            started.rolled.push(Rolled::new(target, deployment, false));
            continue;
        }
        started.rolled.push(Rolled::refused(
            target,
            service.and_then(|s| s.task_definition().map(str::to_owned)),
        ));
        started.refused.get_or_insert(Error::UpdateFailed {
            service: format!("`{}`", target.service),
            source: Box::new(error),
        });
    }
}

/// Waits until every deployment completed, one failed, or the timeout passed: judged by each
/// service deployment where ECS lets berth read them, else by `DescribeServices` alone (a
/// warning in `warnings` says so).
pub async fn wait(
    ecs: &Client,
    cluster: Cluster<'_>,
    rolled: &mut [Rolled],
    seen_events: History,
    reporter: &dyn Reporter,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    let watch = Watch::new(cluster.timeouts.heartbeat);
    let mut reads = deployment::Reads::new(reporter, warnings);
    reads.attach(ecs, cluster, rolled).await;
    let looking = look_until_done(ecs, cluster, rolled, seen_events, &mut reads, &watch);
    watch
        .around(reporter, "waiting on the rollout", looking)
        .await
}

/// The rollout ran into `timeouts.rollout`: the tasks of the services not completed are shown,
/// and the newest failing one is the cause.
async fn timed_out(
    ecs: &Client,
    cluster: Cluster<'_>,
    rolled: &[Rolled],
    state: String,
    reporter: &dyn Reporter,
) -> Error {
    let mut seen_tasks = Vec::new();
    for rolled in rolled
        .iter()
        .filter(|r| r.rollout_state != RolloutState::Completed)
    {
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            seen_tasks.extend(show_tasks(ecs, cluster, rolled, status, reporter).await);
        }
    }
    Error::RolloutTimeout {
        timeout: short_duration(cluster.timeouts.rollout),
        state,
        cause: newest_failing(&seen_tasks),
    }
}

/// [`wait`]'s looks at the services, one per poll.
async fn look_until_done(
    ecs: &Client,
    cluster: Cluster<'_>,
    rolled: &mut [Rolled],
    mut seen_events: History,
    reads: &mut deployment::Reads<'_>,
    watch: &Watch,
) -> Result<(), Error> {
    let reporter = reads.reporter;
    let names: Vec<String> = rolled.iter().map(|r| r.service.clone()).collect();
    let mut shown: HashSet<String> = HashSet::new();
    let mut pace = Pace::new(cluster.timeouts.poll, tokio::time::Instant::now());
    if rolled.iter().all(|r| !r.already) {
        // Each service was just updated, and `UpdateService` answered with its deployment: nothing
        // has started yet, so the first look waits as a look while tasks start would.
        pause_until(pace.next(tokio::time::Instant::now(), false)).await;
    }
    loop {
        let looked = tokio::time::Instant::now();
        pace.look(looked);
        // A service gone in the middle of the rollout fails the rollout (exit 1), not the settings.
        let (services, deployments) = match look(ecs, cluster.name, &names, rolled, reads).await {
            Ok(seen) => seen,
            // Throttled or unanswered even after the SDK's retries: look again at the next poll.
            Err(error) if crate::aws::is_transient(&error) => {
                watch.beat(
                    reporter,
                    &format!(
                        "AWS did not answer ({}); looking again",
                        with_causes(&error)
                    ),
                );
                pause_until(pace.next(looked, false)).await;
                if watch.elapsed() < cluster.timeouts.rollout {
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
        tell_new_events(services.values(), &mut seen_events, reporter);
        let seen = poll(
            (&services, &deployments),
            rolled,
            &mut shown,
            watch.elapsed(),
        );
        for line in &seen.news {
            reporter.info(line);
        }
        if !seen.failed.is_empty() {
            return Err(failure(ecs, cluster, &services, rolled, seen.failed, reporter).await);
        }
        if seen.only_paused() {
            return Err(paused(cluster, rolled, &seen.states, reporter));
        }
        let (states, done) = (seen.states, seen.done);
        let state = states.join(", ");
        if done {
            reporter.info(&format!("rollout finished: {state}"));
            return Ok(());
        }
        if watch.elapsed() >= cluster.timeouts.rollout {
            return Err(timed_out(ecs, cluster, rolled, state, reporter).await);
        }
        watch.beat(reporter, &state);
        let near = all_running(&services, rolled) || failing(&services, rolled);
        pause_until(pace.next(looked, near)).await;
    }
}

/// Every rollout completed or waits at a pause hook: a person decides how it goes on.
fn paused(
    cluster: Cluster<'_>,
    rolled: &[Rolled],
    states: &[String],
    reporter: &dyn Reporter,
) -> Error {
    reporter.info(&format!("rollout paused: {}", states.join(", ")));
    let waiting: Vec<String> = rolled
        .iter()
        .filter_map(|r| {
            let at = r.paused.as_ref()?;
            Some(format!(
                "`{}` waits at {} for pause hook `{}`",
                r.service, at.stage, at.hook_id
            ))
        })
        .collect();
    Error::Paused {
        what: format!("the rollout is paused: {}", waiting.join("; ")),
        env: cluster.env.to_owned(),
    }
}

/// One look: the services and, where they can be read, their service deployments, at once.
async fn look(
    ecs: &Client,
    cluster: &str,
    names: &[String],
    rolled: &[Rolled],
    reads: &mut deployment::Reads<'_>,
) -> Result<
    (
        BTreeMap<String, Service>,
        BTreeMap<String, ServiceDeployment>,
    ),
    Error,
> {
    let (services, deployments) = tokio::join!(
        services::describe(ecs, cluster, names),
        reads.look(ecs, rolled)
    );
    Ok((services?, deployments?))
}

/// Every service's deployment of our revision runs all the tasks it wants: the deployment may
/// complete at any moment.
fn all_running(services: &BTreeMap<String, Service>, rolled: &[Rolled]) -> bool {
    rolled.iter().all(|r| {
        services.get(&r.service).is_some_and(|service| {
            service
                .deployments()
                .iter()
                .find(|d| d.id() == Some(r.deployment_id.as_str()))
                .is_some_and(|d| d.running_count() >= d.desired_count())
        })
    })
}

/// A service's deployment of our revision has tasks that failed: the circuit breaker (or berth's
/// own threshold without one) may end the rollout at any moment.
fn failing(services: &BTreeMap<String, Service>, rolled: &[Rolled]) -> bool {
    rolled.iter().any(|r| {
        services.get(&r.service).is_some_and(|service| {
            service
                .deployments()
                .iter()
                .any(|d| d.id() == Some(r.deployment_id.as_str()) && d.failed_tasks() > 0)
        })
    })
}

/// The services' events not told yet, oldest first.
fn tell_new_events<'a>(
    services: impl Iterator<Item = &'a Service>,
    seen_events: &mut History,
    reporter: &dyn Reporter,
) {
    for service in services {
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
}
