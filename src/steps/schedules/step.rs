//! Scheduled targets as the deploy moves them: surveyed once the deploy has landed, the ones
//! that run a deployed family moved to its new revision, reported to the ledger.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::Service;

use crate::error::Error;
use crate::settings::Settings;
use crate::state::record::MovedTarget;
use crate::state::{Lock, Record};
use crate::steps::schedules::{self, Clients};
use crate::steps::{Ledger, Step};

/// Points the rules' and schedules' ECS targets that run a deployed family at its new revision.
/// The record lists each with the revision it ran before, written before the first one moves; a
/// rerun finds them moved and skips them.
pub async fn run<'a>(
    clients: &Clients,
    settings: &'a Settings,
    services: impl Iterator<Item = &'a Service>,
    revisions: &BTreeMap<String, String>,
    record: &mut Record,
    lock: &Lock,
    ledger: &mut Ledger<'_>,
) -> Result<Vec<MovedTarget>, Error> {
    let reporter = ledger.reporter;
    let survey = schedules::survey_settings(
        clients,
        settings,
        services,
        revisions,
        reporter,
        &mut ledger.warnings,
    )
    .await?;
    let Some(survey) = survey else {
        return Ok(record.value.schedules.clone());
    };
    if survey.to_move.is_empty() {
        if survey.on_new == 0 {
            reporter.info("schedules: no rule or schedule in the cluster runs a deployed family");
        } else {
            ledger.skip(
                Step::Schedules,
                format!(
                    "{} scheduled target(s) run the new revisions",
                    survey.on_new
                ),
            );
        }
        return Ok(record.value.schedules.clone());
    }
    ledger.start(Step::Schedules);
    let moved = schedules::follow(clients, &survey, record, lock, reporter).await?;
    ledger.done(format!("{} target(s) moved", survey.to_move.len()));
    Ok(moved)
}
