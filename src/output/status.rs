//! `berth status` as text: each service's revision, image, deploy and tasks, the newest deploys,
//! and who holds the lock.

use std::time::Duration;

use crate::aws::arn;
use crate::commands::status::Status;
use crate::state::{self, record};
use crate::text::short_duration;

/// The status for people, one line per fact.
pub fn lines(status: &Status) -> Vec<String> {
    let now = state::now();
    let ago = |at: u64| short_duration(Duration::from_secs(now.saturating_sub(at)));
    let mut lines = vec![format!(
        "environment `{}` (cluster `{}`)",
        status.env, status.cluster
    )];
    for service in &status.services {
        let deploy = match (&service.deploy_id, &service.commit) {
            (Some(id), Some(commit)) => {
                format!("deploy `{id}`, commit {}", crate::text::short_sha(commit))
            }
            (Some(id), None) => format!("deploy `{id}`"),
            _ => "not deployed by berth".to_owned(),
        };
        lines.push(format!(
            "  {:<10} `{}`  {deploy}  {}/{} running{}",
            service.service,
            arn::short(&service.revision),
            service.running,
            service.desired,
            if service.pending > 0 {
                format!(", {} pending", service.pending)
            } else {
                String::new()
            }
        ));
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
    }
    match &status.lock {
        Some(lock) => lines.push(format!(
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
        )),
        None if status.state.is_some() => lines.push("  lock       free".to_owned()),
        None => {
            lines.push("  state      no state bucket yet: berth has not deployed here".to_owned())
        }
    }
    if let Some(attempt) = &status.migration_in_flight {
        lines.push(format!(
            "  migration  attempt {} {}",
            attempt.number,
            match &attempt.task_arn {
                Some(task) => format!("task `{}` started", arn::short(task)),
                None => "claimed, task not started".to_owned(),
            }
        ));
    }
    for deploy in &status.deploys {
        let kind = match deploy.kind {
            record::Kind::Deploy => "deploy",
            record::Kind::Rollback => "rollback",
        };
        lines.push(format!(
            "  {kind:<10} `{}` of commit {}: {}, {} ago{}",
            deploy.deploy_id,
            crate::text::short_sha(&deploy.commit),
            serde_json::to_value(deploy.state)
                .ok()
                .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                .unwrap_or_default(),
            ago(deploy.started_at),
            if deploy.runs > 1 {
                format!(" ({} runs)", deploy.runs)
            } else {
                String::new()
            }
        ));
    }
    lines
}
