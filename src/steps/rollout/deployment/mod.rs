//! The service deployment ECS keeps of each rollout (since October 2024), which berth waits on:
//! named by the `currentServiceDeployment` that `UpdateService` answers with, or, for a rollout
//! this run did not start, found by `ListServiceDeployments` (created since the service's
//! deployment of our revision, its target revision checked to run our task definition). Each
//! look describes them beside `DescribeServices`, and [`decide`] judges them. Where berth may
//! not read them, one warning names the action, and the rollout is judged from
//! `DescribeServices` alone, as before service deployments existed.

pub mod decide;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    CreatedAt, ServiceDeployment, ServiceDeploymentStatus as Status, StopServiceDeploymentStopType,
};
use futures_util::future::try_join_all;

use super::{Cluster, Rolled};
use crate::aws::{arn, denied_action, failed, is_transient};
use crate::error::Error;
use crate::report::{Reporter, warn};
use crate::text::with_causes;

/// `DescribeServiceDeployments` and `DescribeServiceRevisions` take at most this many ARNs.
const BATCH: usize = 20;

/// How long before the service's deployment of our revision its service deployment may have
/// been created: both are made by the same `UpdateService`.
const CREATED_SLACK: Duration = Duration::from_secs(60);

/// Whether the service deployments can be read; off for the rest of the wait after a refusal.
pub(super) struct Reads<'a> {
    on: bool,
    pub(super) reporter: &'a dyn Reporter,
    warnings: &'a mut Vec<String>,
}

impl<'a> Reads<'a> {
    pub(super) fn new(reporter: &'a dyn Reporter, warnings: &'a mut Vec<String>) -> Self {
        Self {
            on: true,
            reporter,
            warnings,
        }
    }

    /// Names the service deployment of each rollout that has none yet (one this run did not
    /// start), when ECS has it.
    pub(super) async fn attach(
        &mut self,
        ecs: &Client,
        cluster: Cluster<'_>,
        rolled: &mut [Rolled],
    ) {
        for rolled in rolled.iter_mut() {
            if !self.on || rolled.service_deployment.is_some() || rolled.deployment_id.is_empty() {
                continue;
            }
            match find(ecs, cluster, rolled).await {
                Ok(found) => rolled.service_deployment = found,
                // Judged from `DescribeServices` this time.
                Err(error) if is_transient(&error) => {}
                Err(error) => self.off(error),
            }
        }
    }

    /// The service deployments of the rollouts, by ARN; none when they cannot be read. A
    /// throttled or unanswered read is the caller's to retry.
    pub(super) async fn look(
        &mut self,
        ecs: &Client,
        rolled: &[Rolled],
    ) -> Result<BTreeMap<String, ServiceDeployment>, Error> {
        let arns: Vec<String> = rolled
            .iter()
            .filter_map(|r| r.service_deployment.clone())
            .collect();
        if !self.on || arns.is_empty() {
            return Ok(BTreeMap::new());
        }
        match describe(ecs, &arns).await {
            Err(error) if is_transient(&error) => Err(error),
            Err(error) => {
                self.off(error);
                Ok(BTreeMap::new())
            }
            found => found,
        }
    }

    /// A read refused (or unknown to the endpoint): judged without from now on, and told once in
    /// the run (a restore's wait after the rollout's meets the same refusal).
    fn off(&mut self, error: Error) {
        self.on = false;
        let refused = match &error {
            Error::AccessDenied {
                iam_action: Some(action),
                ..
            } => format!("`{action}` is denied"),
            other => with_causes(other),
        };
        let warning = format!(
            "{refused}: judging the rollout from `DescribeServices` alone (hint: allow `ecs:ListServiceDeployments`, `ecs:DescribeServiceDeployments` and `ecs:DescribeServiceRevisions` to follow ECS's service deployments)"
        );
        if !self.warnings.contains(&warning) {
            warn(self.reporter, self.warnings, warning);
        }
    }
}

/// The service deployments, by ARN, up to [`BATCH`] a call.
async fn describe(
    ecs: &Client,
    arns: &[String],
) -> Result<BTreeMap<String, ServiceDeployment>, Error> {
    let calls = arns.chunks(BATCH).map(|batch| async move {
        ecs.describe_service_deployments()
            .set_service_deployment_arns(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| {
                denied_action(
                    failed("describing service deployments", e),
                    "ecs:DescribeServiceDeployments",
                )
            })
    });
    Ok(try_join_all(calls)
        .await?
        .iter()
        .flat_map(|output| output.service_deployments())
        .filter_map(|d| Some((d.service_deployment_arn()?.to_owned(), d.clone())))
        .collect())
}

/// The newest service deployment of the service that puts it on our task definition, created
/// since the service's deployment of it.
async fn find(
    ecs: &Client,
    cluster: Cluster<'_>,
    rolled: &Rolled,
) -> Result<Option<String>, Error> {
    let mut created = CreatedAt::builder();
    if let Some(since) = rolled.deployment_created {
        let secs = since.secs() - CREATED_SLACK.as_secs() as i64;
        created = created.after(aws_smithy_types::DateTime::from_secs(secs));
    }
    let listed = ecs
        .list_service_deployments()
        .cluster(cluster.name)
        .service(&rolled.service)
        .created_at(created.build())
        .send()
        .await
        .map_err(|e| {
            denied_action(
                failed(
                    format!("listing the service deployments of `{}`", rolled.service),
                    e,
                ),
                "ecs:ListServiceDeployments",
            )
        })?;
    // Newest first, as ECS lists them.
    let briefs = listed.service_deployments();
    let revisions: Vec<String> = briefs
        .iter()
        .filter_map(|b| b.target_service_revision_arn().map(str::to_owned))
        .take(BATCH)
        .collect();
    if revisions.is_empty() {
        return Ok(None);
    }
    let described = ecs
        .describe_service_revisions()
        .set_service_revision_arns(Some(revisions))
        .send()
        .await
        .map_err(|e| {
            denied_action(
                failed("describing service revisions", e),
                "ecs:DescribeServiceRevisions",
            )
        })?;
    let ours: Vec<&str> = described
        .service_revisions()
        .iter()
        .filter(|r| r.task_definition() == Some(rolled.task_definition.as_str()))
        .filter_map(|r| r.service_revision_arn())
        .collect();
    Ok(briefs
        .iter()
        .find(|b| {
            b.target_service_revision_arn()
                .is_some_and(|r| ours.contains(&r))
        })
        .and_then(|b| b.service_deployment_arn().map(str::to_owned)))
}

/// The service deployments named, as ECS describes them, by ARN.
pub async fn read<'a>(
    ecs: &Client,
    arns: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, ServiceDeployment>, Error> {
    let arns: Vec<String> = arns.map(str::to_owned).collect();
    if arns.is_empty() {
        return Ok(BTreeMap::new());
    }
    describe(ecs, &arns).await
}

/// Waits until ECS has finished each rollback it was asked for, within `timeout`.
pub async fn settle(
    ecs: &Client,
    arns: &[&str],
    timeout: Duration,
    reporter: &dyn Reporter,
) -> Result<(), Error> {
    let began = tokio::time::Instant::now();
    loop {
        let now = read(ecs, arns.iter().copied()).await?;
        let open: Vec<&ServiceDeployment> = now
            .values()
            .filter(|d| {
                !matches!(
                    d.status(),
                    Some(
                        Status::RollbackSuccessful
                            | Status::RollbackFailed
                            | Status::Stopped
                            | Status::Successful
                    )
                )
            })
            .collect();
        if open.is_empty() {
            for deployment in now.values() {
                reporter.info(&format!(
                    "service deployment `{}`: {}",
                    arn::short(deployment.service_deployment_arn().unwrap_or("?")),
                    deployment.status().map_or("?", Status::as_str)
                ));
            }
            return Ok(());
        }
        if began.elapsed() >= timeout {
            return Err(Error::RolloutTimeout {
                timeout: crate::text::short_duration(timeout),
                state: format!("{} service deployment(s) still rolling back", open.len()),
                cause: None,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Asks ECS to roll back each of these service deployments (service, ARN) that is still in
/// flight (`StopServiceDeployment`, `ROLLBACK`) and waits until it has, within `timeout`: ECS's
/// own rollback, to the revision the deployment started from. The services whose deployment
/// ECS rolled back; a stop refused is told, and the caller moves that service back itself.
pub async fn stop_in_flight(
    ecs: &Client,
    named: &[(String, String)],
    timeout: Duration,
    reporter: &dyn Reporter,
) -> Vec<String> {
    let arns: Vec<&str> = named.iter().map(|(_, arn)| arn.as_str()).collect();
    let Ok(now) = read(ecs, arns.into_iter()).await else {
        return Vec::new();
    };
    let mut stopped = Vec::new();
    for (service, arn) in named {
        let in_flight = now
            .get(arn)
            .is_some_and(|d| matches!(d.status(), Some(Status::Pending | Status::InProgress)));
        if !in_flight {
            continue;
        }
        let asked = ecs
            .stop_service_deployment()
            .service_deployment_arn(arn)
            .stop_type(StopServiceDeploymentStopType::Rollback)
            .send()
            .await
            .map_err(|e| {
                denied_action(
                    failed(format!("stopping the service deployment of `{service}`"), e),
                    "ecs:StopServiceDeployment",
                )
            });
        match asked {
            Ok(_) => {
                reporter.info(&format!(
                    "`{service}`: its service deployment `{}` was still in flight: ECS rolls it back (`StopServiceDeployment`)",
                    arn::short(arn)
                ));
                stopped.push((service.clone(), arn.clone()));
            }
            Err(error) => reporter.info(&format!(
                "`{service}`: {}: moved back by `UpdateService` instead",
                with_causes(&error)
            )),
        }
    }
    let arns: Vec<&str> = stopped.iter().map(|(_, arn)| arn.as_str()).collect();
    if let Err(error) = settle(ecs, &arns, timeout, reporter).await {
        reporter.info(&format!("ECS's rollback: {}", with_causes(&error)));
    }
    stopped.into_iter().map(|(service, _)| service).collect()
}
