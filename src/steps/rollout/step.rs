//! The rollout as the deploy runs it: the record learns each service's previous revision before
//! `UpdateService`, and each deployment and outcome after; `on_failure = "rollback"` moves every
//! service back, waited on like a rollout.

use std::collections::BTreeMap;

use aws_sdk_ecs::Client as Ecs;

use crate::aws::arn;
use crate::current::Current;
use crate::error::Error;
use crate::report::Reporter;
use crate::settings::Settings;
use crate::state::record::{DeployRecord, RolloutOutcome, RunState, ServiceRollout};
use crate::state::{Lock, Record};
use crate::steps::rollout::{self, Cluster, Rolled, RolloutState, Target, deployments};
use crate::steps::{Ledger, Step};
use crate::text::code_list;

/// A note for the record, written with the rollout's start.
pub type Note<'a> = Box<dyn FnOnce(&mut DeployRecord) + Send + 'a>;

/// Rolls out and waits; `rolled` holds each service's deployment and state, also on failure.
/// The record has each service's previous revision before `UpdateService` is called, and each
/// outcome after. `fresh`: `current` was read a moment ago, with nothing of berth's in between
/// (no build, no migration), so the rollout starts from it. `beside`: the record's opening
/// write noted each service's previous revision already ([`previous`]), so the rollout's start
/// is written beside the `UpdateService` calls, with this note; else before them.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    ecs: &Ecs,
    cluster: Cluster<'_>,
    (current, fresh): (&Current, bool),
    targets: &[Target],
    lock: &Lock,
    (record, beside): (&mut Record, Option<Note<'_>>),
    ledger: &mut Ledger<'_>,
    rolled: &mut Vec<Rolled>,
) -> Result<(), Error> {
    ledger.start(Step::Rollout);
    let seen = fresh.then_some(&current.services);
    let started = match beside {
        Some(note) => {
            lock.check()?;
            let noting = record.update(|r| {
                note(r);
                note_starting(r, current, targets);
            });
            let starting = rollout::start(ecs, cluster, targets, seen, ledger.reporter);
            let (noted, started) = tokio::join!(noting, starting);
            let started = started?;
            if let Err(error) = noted {
                // The updates went out: the report says where each service is.
                *rolled = started.rolled;
                return Err(error);
            }
            started
        }
        None => {
            // Noted with the revisions already unless the migration ran in between: then
            // nothing to write.
            record
                .update(|r| note_starting(r, current, targets))
                .await?;
            lock.check()?;
            rollout::start(ecs, cluster, targets, seen, ledger.reporter).await?
        }
    };
    *rolled = started.rolled;
    if let Some(refused) = started.refused {
        record.update(|r| note_rollouts(r, rolled)).await?;
        return Err(refused);
    }
    // Each deployment is noted with the record's next write: a rerun finds it in ECS (the
    // service runs our revision), and the record already says the rollout was starting.
    record.stage(|r| note_rollouts(r, rolled));
    attach_recorded(rolled, record);
    let reporter = ledger.reporter;
    let waited = rollout::wait(
        ecs,
        cluster,
        rolled,
        started.history,
        reporter,
        &mut ledger.warnings,
    )
    .await;
    if waited.is_ok() {
        // Completed: the next write of the record takes it along; a rerun reads ECS anyway.
        record.stage(|r| note_rollouts(r, rolled));
    } else {
        record.update(|r| note_rollouts(r, rolled)).await?;
    }
    waited?;
    if rolled.iter().all(|r| r.already) {
        ledger.already_done(ALREADY);
    } else {
        ledger.done(
            rolled
                .iter()
                .map(|r| format!("{} {}", r.service, r.deployment_id))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    Ok(())
}

/// A rollout this run found under way (a rerun) waits on the service deployment the record
/// names for it, if the record names one of this revision.
fn attach_recorded(rolled: &mut [Rolled], record: &Record) {
    for rolled in rolled.iter_mut().filter(|r| r.service_deployment.is_none()) {
        rolled.service_deployment = record
            .value
            .services
            .get(&rolled.service)
            .filter(|s| s.revision == rolled.task_definition)
            .and_then(|s| s.service_deployment.clone());
    }
}

/// Why the rollout is skipped: every service runs the deploy's revision.
pub const ALREADY: &str = "services already on this deploy's revisions";

/// Before the first `UpdateService`: the revision each service runs (what a rollback goes back
/// to) and each rollout as starting.
pub fn note_starting(record: &mut DeployRecord, current: &Current, targets: &[Target]) {
    let ours = targets
        .iter()
        .map(|t| (t.service.clone(), t.task_definition.clone()))
        .collect();
    note_previous(record, &previous(current, &ours));
    for target in targets {
        record
            .services
            .entry(target.service.clone())
            .or_insert_with(|| ServiceRollout {
                revision: target.task_definition.clone(),
                deployment_id: None,
                service_deployment: None,
                outcome: RolloutOutcome::Starting,
            });
    }
}

/// Each service's revision from before this deploy, what a rollback goes back to, unless it runs
/// this deploy's revision already (on a rerun): `ours` is service → this deploy's revision,
/// where it is known. Known before anything is registered, it can go into the record's opening
/// write, so that it is on record before any `UpdateService`.
pub fn previous(current: &Current, ours: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    current
        .families
        .iter()
        .filter_map(|(service, _)| {
            let runs = current.services[service].task_definition()?;
            (ours.get(service).map(String::as_str) != Some(runs))
                .then(|| (service.clone(), runs.to_owned()))
        })
        .collect()
}

/// [`previous`] into the record; the first run's view stands.
pub fn note_previous(record: &mut DeployRecord, previous: &BTreeMap<String, String>) {
    for (service, runs) in previous {
        record
            .previous
            .entry(service.clone())
            .or_insert_with(|| runs.clone());
    }
}

/// Each service's deployment and rollout state, as the rollout knows them now.
pub fn note_rollouts(record: &mut DeployRecord, rolled: &[Rolled]) {
    for rolled in rolled {
        let outcome = match rolled.rollout_state {
            RolloutState::Completed => RolloutOutcome::Completed,
            RolloutState::Failed => RolloutOutcome::Failed,
            RolloutState::Paused => RolloutOutcome::Paused,
            RolloutState::InProgress | RolloutState::Unknown => RolloutOutcome::InProgress,
        };
        record.services.insert(
            rolled.service.clone(),
            ServiceRollout {
                revision: rolled.task_definition.clone(),
                // None: its update failed, and it did not move.
                deployment_id: Some(rolled.deployment_id.clone()).filter(|id| !id.is_empty()),
                service_deployment: rolled.service_deployment.clone(),
                outcome,
            },
        );
    }
}

/// `on_failure = "rollback"`: a service's rollout failed, so every service this deploy moved
/// goes back to the revision it ran before, waited on like a rollout: one commit per environment.
pub async fn roll_back(
    ecs: &Ecs,
    settings: &Settings,
    lock: &Lock,
    record: &mut Record,
    (reporter, warnings): (&dyn Reporter, &mut Vec<String>),
    rolled_back: &mut Vec<Rolled>,
) -> Result<(), Error> {
    let back: Vec<Target> = settings
        .services
        .iter()
        .filter_map(|service| {
            record.value.previous.get(service).map(|revision| Target {
                service: service.clone(),
                task_definition: revision.clone(),
            })
        })
        .collect();
    if back.is_empty() {
        return Ok(());
    }
    reporter.info(&format!(
        "rolling {} back to the revisions they ran before this deploy (`on_failure = \"rollback\"`)",
        code_list(back.iter().map(|t| &t.service))
    ));
    lock.check()?;
    // A deployment still in flight is rolled back by ECS itself; the others by `UpdateService`.
    let named: Vec<(String, String)> = back
        .iter()
        .filter_map(|t| {
            let arn = record
                .value
                .services
                .get(&t.service)?
                .service_deployment
                .clone()?;
            Some((t.service.clone(), arn))
        })
        .collect();
    let timeout = settings.timeouts.rollout;
    deployments::stop_in_flight(ecs, &named, timeout, reporter).await;
    let started = rollout::start(ecs, Cluster::of(settings), &back, None, reporter).await?;
    *rolled_back = started.rolled;
    if let Some(refused) = started.refused {
        return Err(refused);
    }
    rollout::wait(
        ecs,
        Cluster::of(settings),
        rolled_back,
        started.history,
        reporter,
        warnings,
    )
    .await?;
    record
        .update(|r| {
            for target in &back {
                if let Some(service) = r.services.get_mut(&target.service) {
                    service.outcome = RolloutOutcome::RolledBack;
                }
            }
            r.state = RunState::RolledBack;
        })
        .await?;
    reporter.info(&format!(
        "rolled back: {}",
        back.iter()
            .map(|t| format!("`{}` on `{}`", t.service, arn::short(&t.task_definition)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}
