//! Which deploy a rollback goes back to, pure: the one named, if it succeeded; else the newest
//! successful deploy older than the one running now that no rollback undid. A rollback only ever
//! goes back: a second one goes further back, never forward again.

use std::collections::BTreeMap;

use crate::state::record::{DeployRecord, Kind, RolloutOutcome, RunState};

/// Deploy records searched for the one to go back to.
pub(super) const SEARCHED: usize = 30;

/// The deploy to go back to: `to` when given, else the newest successful deploy older than the
/// one running now, that no rollback undid, and whose revisions are not the ones running now.
/// The one running now is the newest successful record whose revisions run (a rollback's: the
/// deploy it went back to). `records` are newest first; `running` is service → revision.
pub fn pick<'a>(
    records: &'a [DeployRecord],
    running: &BTreeMap<String, String>,
    to: Option<&str>,
) -> Result<&'a DeployRecord, String> {
    if let Some(to) = to {
        let Some(record) = records.iter().find(|r| r.deploy_id == to) else {
            return Err(format!(
                "no record of deploy `{to}` among this environment's newest {SEARCHED}"
            ));
        };
        if !landed(record) {
            return Err(format!(
                "deploy `{to}` did not succeed: its services may never have run its revisions"
            ));
        }
        return Ok(record);
    }
    let older_than = running_deploy(records, running).map_or(0, |at| at + 1);
    let undone = undone(records);
    records
        .iter()
        .enumerate()
        .skip(older_than)
        .filter(|(at, record)| {
            record.kind == Kind::Deploy && landed(record) && !undone.contains(at)
        })
        .map(|(_, record)| record)
        .find(|record| {
            revisions_of(record)
                .iter()
                .any(|(service, revision)| running.get(*service) != Some(*revision))
        })
        .ok_or_else(|| {
            "no successful deploy older than the one running now that a rollback could go back to"
                .to_owned()
        })
}

/// A record whose services ran its revisions to the end.
fn landed(record: &DeployRecord) -> bool {
    record.state == RunState::Succeeded && !revisions_of(record).is_empty()
}

/// Where in `records` the deploy running now is: the newest landed record whose revisions all
/// run now, or for a rollback, the deploy it went back to. `None` when no record's revisions run
/// (the services were changed by hand).
fn running_deploy(records: &[DeployRecord], running: &BTreeMap<String, String>) -> Option<usize> {
    let runs = |record: &DeployRecord| {
        revisions_of(record)
            .iter()
            .all(|(service, revision)| running.get(*service) == Some(*revision))
    };
    let at = records.iter().position(|r| landed(r) && runs(r))?;
    match (&records[at].kind, &records[at].rollback_to) {
        (Kind::Rollback, Some(to)) => records.iter().position(|r| &r.deploy_id == to).or(Some(at)),
        _ => Some(at),
    }
}

/// The places in `records` of the deploys a rollback undid: those between it and the deploy it
/// went back to.
fn undone(records: &[DeployRecord]) -> Vec<usize> {
    let mut undone = Vec::new();
    for (at, record) in records.iter().enumerate() {
        if record.kind != Kind::Rollback || !landed(record) {
            continue;
        }
        let back_to = record
            .rollback_to
            .as_ref()
            .and_then(|to| records.iter().position(|r| &r.deploy_id == to));
        if let Some(back_to) = back_to {
            undone.extend(at + 1..back_to);
        }
    }
    undone
}

/// Service → revision a deploy put it on.
fn revisions_of(record: &DeployRecord) -> BTreeMap<&String, &String> {
    record
        .services
        .iter()
        .filter(|(_, rollout)| rollout.outcome == RolloutOutcome::Completed)
        .map(|(service, rollout)| (service, &rollout.revision))
        .collect()
}

/// `<env>-rollback-<time>`, within ECS's 36 characters for `startedBy`.
pub(super) fn rollback_id(env: &str, now: u64) -> String {
    let suffix = format!("-rollback-{now}");
    let env: String = env
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(36 - suffix.len())
        .collect();
    format!("{env}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::record::ServiceRollout;

    fn record(
        id: &str,
        state: RunState,
        revisions: &[(&str, &str, RolloutOutcome)],
    ) -> DeployRecord {
        DeployRecord {
            deploy_id: id.to_owned(),
            commit: "abc1234".to_owned(),
            state,
            services: revisions
                .iter()
                .map(|(service, revision, outcome)| {
                    (
                        (*service).to_owned(),
                        ServiceRollout {
                            revision: (*revision).to_owned(),
                            deployment_id: None,
                            service_deployment: None,
                            outcome: *outcome,
                        },
                    )
                })
                .collect(),
            ..DeployRecord::default()
        }
    }

    fn rollback(id: &str, to: &str, revision: &str) -> DeployRecord {
        DeployRecord {
            kind: Kind::Rollback,
            rollback_to: Some(to.to_owned()),
            ..record(
                id,
                RunState::Succeeded,
                &[("web", revision, RolloutOutcome::Completed)],
            )
        }
    }

    /// One row per situation: the records newest first, the revision `web` runs, `--to`, and the
    /// deploy picked or a part of the refusal.
    #[test]
    fn pick_only_ever_goes_back() {
        use RolloutOutcome::{Completed, Failed};
        let d4 = record("d4", RunState::Succeeded, &[("web", "web:4", Completed)]);
        let d3 = record("d3", RunState::Succeeded, &[("web", "web:3", Completed)]);
        let d2_failed = record("d2", RunState::RolledBack, &[("web", "web:2", Failed)]);
        let d1 = record("d1", RunState::Succeeded, &[("web", "web:1", Completed)]);
        let d0 = record("d0", RunState::Succeeded, &[("web", "web:0", Completed)]);
        let r1 = rollback("r1", "d1", "web:1");
        let all = vec![d3.clone(), d2_failed.clone(), d1.clone(), d0.clone()];
        type Row<'a> = (
            &'a str,
            Vec<DeployRecord>,
            &'a str,
            Option<&'a str>,
            Result<&'a str, &'a str>,
        );
        let rows: Vec<Row> = vec![
            (
                "the successful deploy before the running one",
                all.clone(),
                "web:3",
                None,
                Ok("d1"),
            ),
            (
                "--to an older one",
                all.clone(),
                "web:3",
                Some("d0"),
                Ok("d0"),
            ),
            (
                "--to a failed one",
                all.clone(),
                "web:3",
                Some("d2"),
                Err("did not succeed"),
            ),
            (
                "--to an unknown one",
                all.clone(),
                "web:3",
                Some("dx"),
                Err("no record"),
            ),
            (
                "only the running deploy",
                vec![d3.clone()],
                "web:3",
                None,
                Err("no successful deploy older"),
            ),
            (
                "web was put back on an older deploy's revision by hand: never forward from it",
                vec![d4.clone(), d3.clone()],
                "web:3",
                None,
                Err("no successful deploy older"),
            ),
            (
                "what runs is no deploy's (changed by hand): the newest successful deploy",
                vec![d3.clone(), d1.clone()],
                "web:9",
                None,
                Ok("d3"),
            ),
            (
                "a second rollback goes further back, not forward to what the first undid",
                vec![
                    r1.clone(),
                    d3.clone(),
                    d2_failed.clone(),
                    d1.clone(),
                    d0.clone(),
                ],
                "web:1",
                None,
                Ok("d0"),
            ),
            (
                "a second rollback with nothing older refuses",
                vec![r1.clone(), d3.clone(), d1.clone()],
                "web:1",
                None,
                Err("no successful deploy older"),
            ),
            (
                "a deploy an earlier rollback undid is never gone back to",
                vec![d4.clone(), r1.clone(), d3.clone(), d1.clone(), d0.clone()],
                "web:4",
                None,
                Ok("d1"),
            ),
        ];
        for (case, records, runs, to, want) in &rows {
            let running = BTreeMap::from([("web".to_owned(), (*runs).to_owned())]);
            let got = pick(records, &running, *to).map(|r| r.deploy_id.as_str());
            match (got, want) {
                (Ok(id), Ok(want)) => assert_eq!(id, *want, "{case}"),
                (Err(problem), Err(part)) => assert!(problem.contains(part), "{case}: {problem}"),
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn rollback_ids_fit_started_by() {
        let id = rollback_id("a-very-long-environment-name-indeed", 1_764_300_000);
        assert!(id.len() <= 36, "{id}");
        assert!(id.ends_with("-rollback-1764300000"), "{id}");
    }
}
