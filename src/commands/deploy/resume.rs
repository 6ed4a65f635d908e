//! `berth continue`: a person's answer to a deploy whose service deployments wait at a pause
//! hook. It is a rerun of that deploy (the same commit, so the same deploy id) that first
//! answers each pause hook the record names: `CONTINUE`, and the rerun waits on the deployments
//! and finishes the deploy as any rerun does; or, with `--rollback`, `ROLLBACK`, and every
//! service this deploy moved goes back to the revision it ran before, the deploy recorded as
//! rolled back.

use std::time::Duration;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::DeploymentLifecycleHookAction;

use super::{Context, Report};
use crate::aws::{denied_action, failed};
use crate::error::Error;
use crate::flags::Resume;
use crate::state::Record;
use crate::state::record::{DeployRecord, RolloutOutcome, RunState};
use crate::steps::rollout::{PausedAt, deployments, paused_at, step as rollout};
use crate::steps::{Ledger, Step};
use crate::text::short_sha;

/// Before the lock: only a deploy whose record says it is paused is continued; anything else is
/// refused before any change (exit 2).
pub(super) fn check(
    resume: Resume,
    env: &str,
    deploy_id: &str,
    earlier: Option<&DeployRecord>,
) -> Result<(), Error> {
    let verb = match resume {
        Resume::Continue => "continue",
        Resume::Rollback => "continue --rollback",
    };
    match earlier {
        Some(record) if record.state == RunState::Paused => Ok(()),
        Some(record) => Err(Error::Mismatch {
            problem: format!(
                "deploy `{deploy_id}` is not paused: its record says `{}`",
                serde_json::to_value(record.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            hint: format!(
                "`berth {verb}` answers a deploy that waits at a pause hook; `berth status --env {env}` shows the environment's deploys"
            ),
        }),
        None => Err(Error::Mismatch {
            problem: format!("this checkout's deploy `{deploy_id}` never ran on `{env}`"),
            hint: format!(
                "run `berth {verb}` from a checkout of the paused deploy's commit (`berth status --env {env}` names it)"
            ),
        }),
    }
}

/// Under the lock: the answer to each pause hook the record's rollouts wait at.
pub(super) async fn answer(
    cx: &Context<'_>,
    resume: Resume,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Result<(), Error> {
    let ecs = &cx.clients.ecs;
    let waiting = paused(ecs, &record.value).await?;
    let action = match resume {
        Resume::Continue => DeploymentLifecycleHookAction::Continue,
        Resume::Rollback => DeploymentLifecycleHookAction::Rollback,
    };
    cx.lock.check()?;
    for (service, arn, at) in &waiting {
        ecs.continue_service_deployment()
            .service_deployment_arn(arn)
            .hook_id(&at.hook_id)
            .action(action.clone())
            .send()
            .await
            .map_err(|e| {
                denied_action(
                    failed(format!("answering the pause hook of `{service}`"), e),
                    "ecs:ContinueServiceDeployment",
                )
            })?;
        ledger.reporter.info(&format!(
            "`{service}`: pause hook `{}` at {} answered {}",
            at.hook_id,
            at.stage,
            action.as_str()
        ));
    }
    if waiting.is_empty() {
        ledger.reporter.info(
            "no service deployment of this deploy waits at a pause hook any more: the rerun looks at where each is",
        );
    }
    match resume {
        // The rollout step of the rerun waits on them, once ECS shows the answers taken.
        Resume::Continue => taken(ecs, &waiting, cx.settings.timeouts.poll).await,
        Resume::Rollback => {
            let arns: Vec<&str> = waiting.iter().map(|(_, arn, _)| arn.as_str()).collect();
            deployments::settle(ecs, &arns, cx.settings.timeouts.rollout, ledger.reporter).await?;
            back(cx, report, ledger, record).await
        }
    }
}

/// The record's service deployments that wait at a pause hook: service, ARN, where.
async fn paused(
    ecs: &Client,
    record: &DeployRecord,
) -> Result<Vec<(String, String, PausedAt)>, Error> {
    let named: Vec<(String, String)> = record
        .services
        .iter()
        .filter_map(|(service, rollout)| {
            Some((service.clone(), rollout.service_deployment.clone()?))
        })
        .collect();
    let described = deployments::read(ecs, named.iter().map(|(_, arn)| arn.as_str())).await?;
    Ok(named
        .into_iter()
        .filter_map(|(service, arn)| {
            let at = described.get(&arn).and_then(paused_at)?;
            Some((service, arn, at))
        })
        .collect())
}

/// Waits until no answered pause hook shows as awaiting action any more: ECS takes an answer
/// a moment after `ContinueServiceDeployment` returns, and the rerun must not take the hook
/// for one still waiting. At most a minute: after that the rerun judges what it sees.
async fn taken(
    ecs: &Client,
    answered: &[(String, String, PausedAt)],
    poll: Duration,
) -> Result<(), Error> {
    let began = tokio::time::Instant::now();
    while began.elapsed() < Duration::from_secs(60) {
        let now = deployments::read(ecs, answered.iter().map(|(_, arn, _)| arn.as_str())).await?;
        let still = answered.iter().any(|(_, arn, at)| {
            now.get(arn)
                .and_then(paused_at)
                .is_some_and(|now| now.hook_id == at.hook_id)
        });
        if !still {
            return Ok(());
        }
        tokio::time::sleep(poll.min(Duration::from_secs(1))).await;
    }
    Ok(())
}

/// Every service this deploy moved, back on the revision it ran before; the deploy recorded as
/// rolled back.
async fn back(
    cx: &Context<'_>,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Result<(), Error> {
    ledger.start(Step::Rollout);
    let reporter = ledger.reporter;
    let talk = (reporter, &mut ledger.warnings);
    let (ecs, settings, lock) = (&cx.clients.ecs, cx.settings, cx.lock);
    rollout::roll_back(ecs, settings, lock, record, talk, &mut report.rolled_back).await?;
    record
        .update(|r| {
            for service in r.services.values_mut() {
                if service.outcome != RolloutOutcome::Completed {
                    service.outcome = RolloutOutcome::RolledBack;
                }
            }
            r.state = RunState::RolledBack;
        })
        .await?;
    ledger.done(format!(
        "deploy `{}` (commit {}) rolled back at a person's word",
        cx.local.release.deploy_id,
        short_sha(&cx.local.release.commit)
    ));
    Ok(())
}
