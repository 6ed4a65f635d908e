//! `berth status` as text: each service's revision, image, deploy and tasks, the newest deploys,
//! and who holds the lock.

use std::time::Duration;

use crate::aws::arn;
use crate::commands::status::{ServiceStatus, Status};
use crate::state::{self, record};
use crate::text::short_duration;

/// The status for people, one line per fact.
pub fn lines(status: &Status) -> Vec<String> {
    let now = state::now();
    let mut lines = vec![format!(
        "environment `{}` (cluster `{}`)",
        status.env, status.cluster
    )];
    lines.extend(status.services.iter().flat_map(service));
    lines.extend(status.drift.iter().map(|d| {
        format!(
            "  drift: {}; a rerun of that deploy puts it back (`berth deploy --env {}` from its commit), docs/concepts.md \"Terraform and berth\"",
            d.line(),
            status.env
        )
    }));
    lines.push(lock(status, now));
    lines.extend(status.migration_in_flight.iter().map(migration));
    lines.extend(status.deploys.iter().map(|d| deploy(d, now)));
    lines
}

/// A service's revision, deploy and tasks, then each of its deployments still rolling out.
fn service(service: &ServiceStatus) -> Vec<String> {
    let deploy = match (&service.deploy_id, &service.commit) {
        (Some(id), Some(commit)) => {
            format!("deploy `{id}`, commit {}", crate::text::short_sha(commit))
        }
        (Some(id), None) => format!("deploy `{id}`"),
        _ => "not deployed by berth".to_owned(),
    };
    let pending = if service.pending > 0 {
        format!(", {} pending", service.pending)
    } else {
        String::new()
    };
    let mut lines = vec![format!(
        "  {:<10} `{}`  {deploy}  {}/{} running{pending}",
        service.service,
        arn::short(&service.revision),
        service.running,
        service.desired,
    )];
    if let Some(current) = &service.service_deployment {
        let stage = current
            .stage
            .as_deref()
            .map(|s| format!(", stage {s}"))
            .unwrap_or_default();
        let since = current
            .started_at
            .and_then(|at| u64::try_from(at).ok())
            .map(|at| {
                format!(
                    ", started {} ago",
                    short_duration(Duration::from_secs(state::now().saturating_sub(at)))
                )
            })
            .unwrap_or_default();
        lines.push(format!(
            "  {:<10}   service deployment `{}` ({}): {}{stage}{since}",
            "",
            arn::short(&current.arn),
            current.strategy,
            current.status
        ));
    }
    for deployment in service
        .deployments
        .iter()
        .filter(|d| d.rollout_state.as_deref() != Some("COMPLETED"))
    {
        lines.push(format!(
            "  {:<10}   deployment `{}` of `{}`: {} {} ({}/{} running, {} failed)",
            "",
            deployment.id,
            arn::short(&deployment.revision),
            deployment.status,
            deployment.rollout_state.as_deref().unwrap_or("-"),
            deployment.running,
            deployment.desired,
            deployment.failed_tasks
        ));
    }
    lines
}

/// Who holds the lock and for how long, that it is free, or that there is no state yet.
fn lock(status: &Status, now: u64) -> String {
    match &status.lock {
        Some(lock) => format!(
            "  lock       held by {}, lease {}",
            lock.holder.describe(now),
            if lock.lease_left_seconds > 0 {
                format!(
                    "runs out in {}",
                    short_duration(Duration::from_secs(lock.lease_left_seconds))
                )
            } else {
                "ran out: the next deploy takes the lock over".to_owned()
            }
        ),
        None if status.state.is_some() => "  lock       free".to_owned(),
        None => "  state      no state bucket yet: berth has not deployed here".to_owned(),
    }
}

/// The migration attempt of the newest deploy that has not ended.
fn migration(attempt: &record::Attempt) -> String {
    format!(
        "  migration  attempt {} {}",
        attempt.number,
        match &attempt.task_arn {
            Some(task) => format!("task `{}` started", arn::short(task)),
            None => "claimed, task not started".to_owned(),
        }
    )
}

/// One of the newest deploys (or rollbacks): its commit, state and age.
fn deploy(deploy: &record::DeployRecord, now: u64) -> String {
    let kind = match deploy.kind {
        record::Kind::Deploy => "deploy",
        record::Kind::Rollback => "rollback",
    };
    format!(
        "  {kind:<10} `{}` of commit {}: {}, {} ago{}",
        deploy.deploy_id,
        crate::text::short_sha(&deploy.commit),
        serde_json::to_value(deploy.state)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default(),
        short_duration(Duration::from_secs(now.saturating_sub(deploy.started_at))),
        if deploy.runs > 1 {
            format!(" ({} runs)", deploy.runs)
        } else {
            String::new()
        }
    )
}
