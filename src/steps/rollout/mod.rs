//! Roll out: point every service at our revision, then wait on *our* deployment ([`wait`]).
//!
//! Success is our service deployment SUCCESSFUL ([`deployment`]); where berth may not read
//! service deployments, our deployment's `rolloutState` COMPLETED with running = desired.
//! Failure is a rollback, a stop, FAILED, or our deployment gone while the service points
//! elsewhere. `wait_until_services_stable` is not used: after a rollback the service is stable
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
pub mod timeline;
mod wait;

use std::collections::{BTreeMap, HashSet};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{Deployment, Service};
use futures_util::future::join_all;
use serde::Serialize;

use crate::aws::arn;
use crate::aws::failed;
use crate::aws::services;
use crate::error::Error;
use crate::report::Reporter;
use crate::settings::{Settings, Timeouts};
pub use decide::RolloutState;
use decide::{Start, how_to_start};
pub use deployment::decide::{Course, PausedAt, least_time, paused as paused_at, strategy};
pub use wait::wait;

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
