//! Scheduled targets as the deploy moves them: surveyed while the rollout is waited on, the
//! ones that run a deployed family moved to its new revision once the deploy has landed,
//! reported to the ledger.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::Service;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::report::warn;
use crate::settings::Settings;
use crate::state::record::MovedTarget;
use crate::state::{Lock, Record};
use crate::steps::schedules::{self, Clients, Cost, Survey};
use crate::steps::{Ledger, Step};

/// The survey of the scheduled targets, under way beside the rollout: it only reads, so it
/// starts as soon as the revisions are known and costs nothing between ECS's COMPLETED and the
/// exit. Dropped (the deploy failed first), it stops.
pub struct Early {
    clients: Clients,
    revisions: BTreeMap<String, String>,
    survey: JoinHandle<Result<Survey, Error>>,
}

impl Drop for Early {
    fn drop(&mut self) {
        self.survey.abort();
    }
}

/// Starts the survey of the targets `settings` asks for in the cluster `services` run in,
/// decided against `revisions` (family → revision); the record's targets (`known`) are read
/// first. `None` when `schedules = []` turns scheduled tasks off.
pub fn start<'a>(
    clients: &Clients,
    settings: &'a Settings,
    services: impl Iterator<Item = &'a Service>,
    revisions: &BTreeMap<String, String>,
    known: &[MovedTarget],
) -> Option<Early> {
    if settings.schedules.as_ref().is_some_and(Vec::is_empty) {
        return None;
    }
    let cluster = schedules::cluster_arn(services, &settings.cluster).to_owned();
    let listed = settings.schedules.clone();
    let known: Vec<String> = known.iter().map(|m| m.name.clone()).collect();
    let (reader, decided) = (clients.clone(), revisions.clone());
    let survey = tokio::spawn(async move {
        schedules::survey(&reader, &cluster, listed.as_deref(), &decided, &known).await
    });
    Some(Early {
        clients: clients.clone(),
        revisions: revisions.clone(),
        survey,
    })
}

/// Points the rules' and schedules' ECS targets that run a deployed family at its new revision,
/// each read again first. The record lists each with the revision it ran before, written before
/// the first one moves; a rerun finds them moved and skips them. Also what the survey cost.
pub async fn run(
    early: Option<Early>,
    record: &mut Record,
    lock: &Lock,
    ledger: &mut Ledger<'_>,
) -> (Option<Cost>, Result<Vec<MovedTarget>, Error>) {
    let Some(mut early) = early else {
        return (None, Ok(record.value.schedules.clone()));
    };
    let survey = match (&mut early.survey).await {
        Ok(Ok(survey)) => survey,
        Ok(Err(error)) => return (None, Err(error)),
        Err(error) => {
            let error = Error::Mismatch {
                problem: format!("the survey of the scheduled tasks stopped: {error}"),
                hint: "this is a bug".to_owned(),
            };
            return (None, Err(error));
        }
    };
    let cost = Some(survey.cost.clone());
    (cost, follow(&early, survey, record, lock, ledger).await)
}

/// Moves what `survey` found to move, each target read again first.
async fn follow(
    early: &Early,
    survey: Survey,
    record: &mut Record,
    lock: &Lock,
    ledger: &mut Ledger<'_>,
) -> Result<Vec<MovedTarget>, Error> {
    let reporter = ledger.reporter;
    if let Some(warning) = &survey.unseen {
        warn(reporter, &mut ledger.warnings, warning.clone());
    }
    let survey = survey.again(&early.clients, &early.revisions).await?;
    if survey.to_move.is_empty() {
        if survey.on_new == 0 {
            reporter.info("schedules: no rule or schedule in the cluster runs a deployed family");
        } else {
            ledger.skip(Step::Schedules, on_new(survey.on_new));
        }
        return Ok(record.value.schedules.clone());
    }
    ledger.start(Step::Schedules);
    let moved = schedules::follow(&early.clients, &survey, record, lock, reporter).await?;
    ledger.done(format!("{} target(s) moved", survey.to_move.len()));
    Ok(moved)
}

/// Why the step is skipped: `targets` scheduled targets run the new revisions already.
pub fn on_new(targets: usize) -> String {
    format!("{targets} scheduled target(s) run the new revisions")
}
