//! Drift: a service that runs another revision than the last deploy left it on, as a later
//! `terraform apply` (or a person in the console) does when it puts the service back on the
//! revision Terraform knows. A pure function of the newest records and what the services run.

use std::collections::BTreeMap;

use serde::Serialize;

use super::lock::Holder;
use super::record::{DeployRecord, RolloutOutcome};
use crate::aws::arn;

/// One service on another revision than the last deploy left it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub service: String,
    /// The revision the service runs (its ARN).
    pub runs: String,
    /// The revision the last deploy (or rollback) that moved it left it on.
    pub left: String,
    /// That deploy.
    pub deploy_id: String,
}

impl Drift {
    /// "`web` runs `web:12`, but deploy `stg-…` left it on `web:15`".
    pub fn line(&self) -> String {
        format!(
            "`{}` runs `{}`, but deploy `{}` left it on `{}`",
            self.service,
            arn::short(&self.runs),
            self.deploy_id,
            arn::short(&self.left)
        )
    }
}

/// The services (name → the revision it runs) that drifted from where the newest record that
/// moved each one left it. `records`: newest first. Nothing is said while a deploy holds the
/// lock (its rollout moves services), nor of a service whose last record left it mid-way (a
/// rollout that failed or paused: where it is then is ECS's to say).
pub fn drift(
    records: &[DeployRecord],
    running: &BTreeMap<String, String>,
    holder: Option<&Holder>,
    now: u64,
) -> Vec<Drift> {
    if holder.is_some_and(|h| h.expires > now) {
        return Vec::new();
    }
    running
        .iter()
        .filter_map(|(service, runs)| {
            let (record, rollout) = records
                .iter()
                .find_map(|r| r.services.get(service).map(|rollout| (r, rollout)))?;
            let left = match rollout.outcome {
                RolloutOutcome::Completed => rollout.revision.clone(),
                RolloutOutcome::RolledBack => record.previous.get(service)?.clone(),
                _ => return None,
            };
            (arn::short(&left) != arn::short(runs)).then(|| Drift {
                service: service.clone(),
                runs: runs.clone(),
                left,
                deploy_id: record.deploy_id.clone(),
            })
        })
        .collect()
}

/// What drifted, read from the environment's state: the lock's holder and the newest records.
/// `running`: service → the revision it runs.
pub async fn read(
    store: &super::Store,
    running: &BTreeMap<String, String>,
) -> Result<Vec<Drift>, crate::error::Error> {
    let file = super::lock::read(store).await?;
    let records = super::record::recent(store, &file, RECORDS_READ).await?;
    Ok(drift(&records, running, file.holder.as_ref(), super::now()))
}

/// Records read for it: every deploy moves every service, so the newest few decide.
const RECORDS_READ: usize = 5;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::drift;
    use crate::state::lock::Holder;
    use crate::state::record::{DeployRecord, RolloutOutcome, ServiceRollout};

    const ARN: &str = "arn:aws:ecs:us-east-1:1:task-definition/";

    fn record(id: &str, web: Option<(&str, RolloutOutcome)>, previous: &str) -> DeployRecord {
        DeployRecord {
            deploy_id: id.into(),
            services: web
                .map(|(revision, outcome)| {
                    let rollout = ServiceRollout {
                        revision: format!("{ARN}{revision}"),
                        deployment_id: None,
                        service_deployment: None,
                        outcome,
                    };
                    ("web".to_owned(), rollout)
                })
                .into_iter()
                .collect(),
            previous: [("web".to_owned(), format!("{ARN}{previous}"))].into(),
            ..DeployRecord::default()
        }
    }

    #[test]
    fn a_service_moved_off_the_last_deploys_revision_is_named() {
        use RolloutOutcome::{Completed, Failed, RolledBack};
        let holder = |expires| Holder {
            who: "ci".into(),
            run: "r".into(),
            command: "deploy".into(),
            deploy_id: "stg-new".into(),
            commit: "c".into(),
            since: 0,
            expires,
        };
        let runs =
            |revision: &str| BTreeMap::from([("web".to_owned(), format!("{ARN}{revision}"))]);
        let done = record("stg-15", Some(("web:15", Completed)), "web:12");
        /// Case, the records (newest first), what `web` runs, the lock's holder, and where the
        /// deploy left it when that is drift.
        type Row = (
            &'static str,
            Vec<DeployRecord>,
            &'static str,
            Option<Holder>,
            Option<&'static str>,
        );
        let cases: [Row; 7] = [
            (
                "on the deploy's revision",
                vec![done.clone()],
                "web:15",
                None,
                None,
            ),
            (
                "put back by terraform",
                vec![done.clone()],
                "web:12",
                None,
                Some("web:15"),
            ),
            (
                "a deploy in flight moves it",
                vec![done.clone()],
                "web:12",
                Some(holder(200)),
                None,
            ),
            (
                "its lease ran out",
                vec![done.clone()],
                "web:12",
                Some(holder(50)),
                Some("web:15"),
            ),
            (
                "rolled back: left on the revision before",
                vec![
                    record("stg-16", Some(("web:16", RolledBack)), "web:15"),
                    done.clone(),
                ],
                "web:16",
                None,
                Some("web:15"),
            ),
            (
                "the newest rollout failed: ECS says where it is",
                vec![
                    record("stg-16", Some(("web:16", Failed)), "web:15"),
                    done.clone(),
                ],
                "web:12",
                None,
                None,
            ),
            (
                "a newer deploy that did not touch it: the one that did decides",
                vec![record("stg-17", None, "web:15"), done],
                "web:12",
                None,
                Some("web:15"),
            ),
        ];
        for (case, records, running, holder, left) in cases {
            let found = drift(&records, &runs(running), holder.as_ref(), 100);
            let got = found.first().map(|d| d.left.trim_start_matches(ARN));
            assert_eq!(got, left, "{case}: {found:?}");
            if let Some(d) = found.first() {
                assert!(
                    d.line()
                        .starts_with(&format!("`web` runs `{running}`, but deploy")),
                    "{}",
                    d.line()
                );
            }
        }
    }
}
