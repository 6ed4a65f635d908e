//! Which deploy a rollback goes back to, pure: the one named, if it succeeded, or the newest
//! successful deploy whose revisions are not the ones running now.

use std::collections::BTreeMap;

use crate::state::record::{DeployRecord, RolloutOutcome, RunState};

/// Deploy records searched for the one to go back to.
pub(super) const SEARCHED: usize = 30;

/// The deploy to go back to: `to` when given, else the newest successful deploy whose revisions
/// are not the ones running now. `records` are newest first; `running` is service → revision.
pub fn pick<'a>(
    records: &'a [DeployRecord],
    running: &BTreeMap<String, String>,
    to: Option<&str>,
) -> Result<&'a DeployRecord, String> {
    let landed = |record: &&DeployRecord| {
        record.state == RunState::Succeeded && !revisions_of(record).is_empty()
    };
    if let Some(to) = to {
        let Some(record) = records.iter().find(|r| r.deploy_id == to) else {
            return Err(format!(
                "no record of deploy `{to}` among this environment's newest {SEARCHED}"
            ));
        };
        if !landed(&record) {
            return Err(format!(
                "deploy `{to}` did not succeed: its services may never have run its revisions"
            ));
        }
        return Ok(record);
    }
    records
        .iter()
        .filter(landed)
        .find(|record| {
            revisions_of(record)
                .iter()
                .any(|(service, revision)| running.get(*service) != Some(*revision))
        })
        .ok_or_else(|| {
            "no earlier successful deploy with other revisions than the ones running now".to_owned()
        })
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
                            outcome: *outcome,
                        },
                    )
                })
                .collect(),
            ..DeployRecord::default()
        }
    }

    /// One row per situation; records newest first, `web` runs `web:3`.
    #[test]
    fn pick_finds_the_deploy_before_the_running_one() {
        use RolloutOutcome::{Completed, Failed};
        let running = BTreeMap::from([("web".to_owned(), "web:3".to_owned())]);
        let d3 = record("d3", RunState::Succeeded, &[("web", "web:3", Completed)]);
        let d2_failed = record("d2", RunState::RolledBack, &[("web", "web:2", Failed)]);
        let d1 = record("d1", RunState::Succeeded, &[("web", "web:1", Completed)]);
        let d0 = record("d0", RunState::Succeeded, &[("web", "web:0", Completed)]);
        let all = vec![d3.clone(), d2_failed.clone(), d1.clone(), d0.clone()];
        /// Case, records newest first, `--to`, the deploy picked or a part of the refusal.
        type Row<'a> = (
            &'a str,
            Vec<DeployRecord>,
            Option<&'a str>,
            Result<&'a str, &'a str>,
        );
        let rows: &[Row] = &[
            (
                "the successful deploy before the running one",
                all.clone(),
                None,
                Ok("d1"),
            ),
            ("--to an older one", all.clone(), Some("d0"), Ok("d0")),
            (
                "--to a failed one",
                all.clone(),
                Some("d2"),
                Err("did not succeed"),
            ),
            (
                "--to an unknown one",
                all.clone(),
                Some("dx"),
                Err("no record"),
            ),
            (
                "only the running deploy",
                vec![d3.clone()],
                None,
                Err("no earlier"),
            ),
            (
                "the newest deploy is not what runs (changed by hand): it is the target",
                vec![
                    record("d4", RunState::Succeeded, &[("web", "web:4", Completed)]),
                    d3,
                ],
                None,
                Ok("d4"),
            ),
        ];
        for (case, records, to, want) in rows {
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
