//! `berth status`: what runs in one environment now. Each service's revision, image, deploy and
//! commit (from the revision's tags), its tasks and deployments, the newest deploys from the
//! records, a migration in flight, and who holds the lock. Reads only.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ecs::types::Service;
use futures_util::future::try_join_all;
use serde::Serialize;

use crate::aws;
use crate::aws::services;
use crate::error::Error;
use crate::settings::Settings;
use crate::state::drift::{self, Drift};
use crate::state::lock;
use crate::state::record::{self, AttemptOutcome, DeployRecord};
use crate::state::{self, Store};
use crate::steps::rollout::deployments;
use crate::taskdef::{self, DEPLOY_ID_TAG, GIT_SHA_TAG};

/// Deploys shown, newest first.
const RECENT: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub env: String,
    pub cluster: String,
    /// Where the lock and records live; `None` when the state bucket does not exist yet.
    pub state: Option<String>,
    pub services: Vec<ServiceStatus>,
    pub lock: Option<LockStatus>,
    /// The newest deploys of the environment, newest first, as their records tell.
    pub deploys: Vec<DeployRecord>,
    /// A migration attempt of the newest deploy that has not ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration_in_flight: Option<record::Attempt>,
    /// Services on another revision than the last deploy left them on (a `terraform apply`, a
    /// change in the console).
    pub drift: Vec<Drift>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub revision: String,
    pub deploy_id: Option<String>,
    pub commit: Option<String>,
    /// The images of the revision's containers, by container.
    pub images: BTreeMap<String, String>,
    /// Tasks of `revision` running and pending (its primary deployment's counts; during a
    /// rollout the old revision's tasks are under `deployments`), and the service's desired count.
    pub running: i32,
    pub desired: i32,
    pub pending: i32,
    pub deployments: Vec<DeploymentStatus>,
    /// The service's current service deployment, when ECS keeps one and berth may read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_deployment: Option<ServiceDeploymentStatus>,
}

/// A service's current service deployment: how ECS deploys it and where it is.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceDeploymentStatus {
    pub arn: String,
    /// `ROLLING`, `BLUE_GREEN`, `LINEAR` or `CANARY`.
    pub strategy: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStatus {
    pub id: String,
    pub status: String,
    pub rollout_state: Option<String>,
    pub revision: String,
    pub running: i32,
    pub desired: i32,
    pub failed_tasks: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct LockStatus {
    pub holder: lock::Holder,
    pub held_seconds: u64,
    /// Seconds until the lease runs out unless renewed; 0 once it has.
    pub lease_left_seconds: u64,
}

pub async fn read(settings: &Settings) -> Result<Status, Error> {
    let config = aws::sdk_config(settings).await?;
    let ecs = aws::ecs_client(&config);
    let (services, store) = tokio::try_join!(
        services::describe(&ecs, &settings.cluster, &settings.services),
        Store::find(&config, state::Place::of(settings)),
    )
    .map_err(|error| aws::blame_unknown_region(error, &settings.region))?;
    let (revisions, current) = tokio::join!(revisions(&ecs, &services), current(&ecs, &services));
    let revisions = revisions?;
    let services = settings
        .services
        .iter()
        .filter_map(|name| services.get(name).map(|service| (name, service)))
        .map(|(name, service)| {
            let mut status = service_status(name, service, &revisions);
            status.service_deployment = service
                .current_service_deployment()
                .and_then(|arn| current.get(arn))
                .map(|d| deployment_status(service, d));
            status
        })
        .collect();
    let mut status = Status {
        env: settings.env.clone(),
        cluster: settings.cluster.clone(),
        state: None,
        services,
        lock: None,
        deploys: Vec::new(),
        migration_in_flight: None,
        drift: Vec::new(),
    };
    if let Some(store) = store {
        read_state(&store, &mut status).await?;
    }
    Ok(status)
}

/// The services' current service deployments. Best effort: where berth may not read them (no
/// `ecs:DescribeServiceDeployments`), the status shows none.
async fn current(
    ecs: &aws_sdk_ecs::Client,
    services: &BTreeMap<String, Service>,
) -> BTreeMap<String, aws_sdk_ecs::types::ServiceDeployment> {
    let arns = services
        .values()
        .filter_map(|service| service.current_service_deployment());
    deployments::read(ecs, arns).await.unwrap_or_default()
}

fn deployment_status(
    service: &Service,
    deployment: &aws_sdk_ecs::types::ServiceDeployment,
) -> ServiceDeploymentStatus {
    ServiceDeploymentStatus {
        arn: deployment
            .service_deployment_arn()
            .unwrap_or_default()
            .to_owned(),
        strategy: service
            .deployment_configuration()
            .and_then(|c| c.strategy())
            .map_or("ROLLING", |s| s.as_str())
            .to_owned(),
        status: deployment.status().map_or("?", |s| s.as_str()).to_owned(),
        stage: deployment.lifecycle_stage().map(|s| s.as_str().to_owned()),
        started_at: deployment
            .started_at()
            .or(deployment.created_at())
            .map(aws_smithy_types::DateTime::secs),
    }
}

/// The task definitions the services run, by ARN: each revision described once, however many
/// services run it.
async fn revisions(
    ecs: &aws_sdk_ecs::Client,
    services: &BTreeMap<String, Service>,
) -> Result<BTreeMap<String, taskdef::Described>, Error> {
    let running: BTreeSet<&str> = services
        .values()
        .filter_map(|service| service.task_definition())
        .collect();
    let revisions =
        try_join_all(running.into_iter().map(|arn| taskdef::describe(ecs, arn))).await?;
    Ok(revisions
        .into_iter()
        .map(|described| (described.arn.clone(), described))
        .collect())
}

/// One service as ECS describes it, with the deploy and commit its revision is tagged with.
fn service_status(
    name: &str,
    service: &Service,
    revisions: &BTreeMap<String, taskdef::Described>,
) -> ServiceStatus {
    let revision = service.task_definition().unwrap_or_default();
    let described = revisions.get(revision);
    // During a rollout the old deployment's tasks run too: the counts are the revision's own.
    let primary = service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY") && d.task_definition() == Some(revision));
    ServiceStatus {
        service: name.to_owned(),
        revision: revision.to_owned(),
        deploy_id: described.and_then(|d| d.tags.get(DEPLOY_ID_TAG).cloned()),
        commit: described.and_then(|d| d.tags.get(GIT_SHA_TAG).cloned()),
        images: described.map(images).unwrap_or_default(),
        running: primary.map_or(service.running_count(), |d| d.running_count()),
        desired: service.desired_count(),
        pending: primary.map_or(service.pending_count(), |d| d.pending_count()),
        deployments: service
            .deployments()
            .iter()
            .map(|d| DeploymentStatus {
                id: d.id().unwrap_or_default().to_owned(),
                status: d.status().unwrap_or_default().to_owned(),
                rollout_state: d.rollout_state().map(|s| s.as_str().to_owned()),
                revision: d.task_definition().unwrap_or_default().to_owned(),
                running: d.running_count(),
                desired: d.desired_count(),
                failed_tasks: d.failed_tasks(),
            })
            .collect(),
        service_deployment: None,
    }
}

/// Container name → image, for the containers of a revision.
fn images(described: &taskdef::Described) -> BTreeMap<String, String> {
    described
        .containers()
        .iter()
        .filter_map(|c| {
            Some((
                c.get("name")?.as_str()?.to_owned(),
                c.get("image")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// What the state bucket tells: the lock's holder, the newest deploys and a migration in flight.
async fn read_state(store: &Store, status: &mut Status) -> Result<(), Error> {
    status.state = Some(store.url(""));
    let file = lock::read(store).await?;
    let now = state::now();
    status.lock = file.holder.clone().map(|holder| LockStatus {
        held_seconds: now.saturating_sub(holder.since),
        lease_left_seconds: holder.expires.saturating_sub(now),
        holder,
    });
    status.deploys = record::recent(store, &file, RECENT).await?;
    status.migration_in_flight = status.deploys.first().and_then(|newest| {
        newest
            .migration
            .last()
            .filter(|a| matches!(a.outcome, AttemptOutcome::Claimed | AttemptOutcome::Started))
            .cloned()
    });
    let running = status
        .services
        .iter()
        .map(|s| (s.service.clone(), s.revision.clone()))
        .collect();
    status.drift = drift::drift(&status.deploys, &running, file.holder.as_ref(), now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{Deployment, Service};

    use super::service_status;

    /// Mid-rollout: the old deployment still runs 2 tasks, the new revision 1 of 2. The service's
    /// own `runningCount` (3) counts both; the status counts the new revision's alone.
    #[test]
    fn a_revision_in_rollout_shows_its_own_running_tasks() {
        let deployment = |id: &str, status: &str, revision: &str, running: i32| {
            Deployment::builder()
                .id(id)
                .status(status)
                .task_definition(revision)
                .running_count(running)
                .desired_count(2)
                .pending_count(1)
                .build()
        };
        let service = Service::builder()
            .task_definition("arn:web:5")
            .running_count(3)
            .desired_count(2)
            .pending_count(1)
            .deployments(deployment("new", "PRIMARY", "arn:web:5", 1))
            .deployments(deployment("old", "ACTIVE", "arn:web:4", 2))
            .build();
        let status = service_status("web", &service, &Default::default());
        assert_eq!((status.running, status.desired), (1, 2));
        assert_eq!(
            status.deployments[1].running, 2,
            "the old one, under deployments"
        );
    }
}
