//! `berth rollback`: every service of one environment back on the revisions of an earlier
//! successful deploy (from the deploy records), under the environment's lock, waited on exactly
//! like a deploy's rollout. The database is not touched: no migration runs.

use std::collections::BTreeMap;

use futures_util::future::try_join_all;
use serde::Serialize;

use crate::aws;
use crate::aws::arn;
use crate::aws::services;
use crate::error::Error;
use crate::flags::DeployOptions;
use crate::report::Reporter;
use crate::settings::Settings;
use crate::state::Held;
use crate::state::record::{
    DeployRecord, Kind, MovedTarget, Record, RolloutOutcome, RunState, ServiceRollout,
};
use crate::state::{self, Store, lock};
use crate::steps::rollout::step::note_rollouts;
use crate::steps::rollout::{self, Rolled, Target};
use crate::steps::schedules;
use crate::taskdef;
use crate::text::code_list;

/// Deploy records searched for the one to go back to.
const SEARCHED: usize = 30;

/// What a rollback did: the record `--output json` prints, also when it failed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub env: String,
    pub deploy_id: String,
    /// The deploy whose revisions the services went back to.
    pub to: Option<String>,
    pub commit: Option<String>,
    pub services: Vec<Rolled>,
    /// Scheduled targets moved back, each with the revision it ran before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<MovedTarget>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

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

pub async fn rollback(
    settings: &Settings,
    options: DeployOptions,
    to: Option<&str>,
    reporter: &dyn Reporter,
    interrupted: impl std::future::Future<Output = ()>,
) -> (Report, Result<(), Error>) {
    let mut report = Report {
        env: settings.env.clone(),
        ..Report::default()
    };
    let mut held = Held::default();
    let result = tokio::select! {
        result = run(settings, options, to, reporter, &mut report, &mut held) => result,
        () = interrupted => Err(Error::Interrupted),
    };
    held.finish(&result, &mut report.warnings, reporter).await;
    (report, result)
}

async fn run(
    settings: &Settings,
    options: DeployOptions,
    to: Option<&str>,
    reporter: &dyn Reporter,
    report: &mut Report,
    held: &mut Held,
) -> Result<(), Error> {
    let config = aws::sdk_config(settings).await?;
    let ecs = aws::ecs_client(&config);
    let Some(store) = Store::find(&config, settings)
        .await
        .map_err(|error| aws::blame_unknown_region(error, &settings.region))?
    else {
        return Err(nothing_to_roll_back_to(
            settings,
            "berth has no deploy records for it (no state bucket)",
        ));
    };
    let deploy_id = rollback_id(&settings.env, state::now());
    report.deploy_id.clone_from(&deploy_id);
    let want = lock::Want {
        who: lock::who(),
        run: lock::run_id(),
        command: "rollback",
        deploy_id: deploy_id.clone(),
        commit: String::new(),
        check_stale: false,
        // Journaled once it is sure to change something: a refused rollback leaves no trace.
        journal: false,
        force: false,
    };
    let lock: &lock::Lock = held
        .lock
        .insert(lock::acquire(&store, settings, &want, options.lock_wait, reporter).await?);
    let file = lock.file().await;
    let (records, current) = tokio::try_join!(
        crate::commands::status::recent(&store, &file, SEARCHED),
        services::describe(&ecs, &settings.cluster, &settings.services),
    )?;
    let running: BTreeMap<String, String> = current
        .iter()
        .map(|(name, service)| {
            (
                name.clone(),
                service.task_definition().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let target = pick(&records, &running, to)
        .map_err(|problem| nothing_to_roll_back_to(settings, &problem))?;
    report.to = Some(target.deploy_id.clone());
    report.commit = Some(target.commit.clone());
    let targets: Vec<Target> = settings
        .services
        .iter()
        .filter_map(|service| {
            target.services.get(service).map(|rollout| Target {
                service: service.clone(),
                task_definition: rollout.revision.clone(),
            })
        })
        .collect();
    let skipped: Vec<&String> = settings
        .services
        .iter()
        .filter(|service| !target.services.contains_key(*service))
        .collect();
    if !skipped.is_empty() {
        reporter.info(&format!(
            "deploy `{}` did not deploy {}: left as they are",
            target.deploy_id,
            code_list(skipped)
        ));
    }
    // Every revision must still be usable before anything changes; they are looked at side by side.
    let described = try_join_all(
        targets
            .iter()
            .map(|target| taskdef::describe(&ecs, &target.task_definition)),
    )
    .await?;
    if let Some((target, _)) = targets
        .iter()
        .zip(&described)
        .find(|(_, described)| described.status() == Some("INACTIVE"))
    {
        return Err(Error::Mismatch {
            problem: format!(
                "revision `{}` of deploy `{}` is INACTIVE (deregistered): `{}` cannot go back to it",
                arn::short(&target.task_definition),
                report.to.as_deref().unwrap_or_default(),
                target.service
            ),
            hint: "pick another deploy with `--to DEPLOY_ID` (`berth status` lists them), or deploy the old commit anew".to_owned(),
        });
    }

    lock.journal(&want).await?;
    let fresh = DeployRecord {
        deploy_id: deploy_id.clone(),
        kind: Kind::Rollback,
        env: settings.env.clone(),
        commit: target.commit.clone(),
        rollback_to: Some(target.deploy_id.clone()),
        revisions: target.revisions.clone(),
        image: target.image.clone(),
        previous: running
            .iter()
            .filter(|(service, _)| targets.iter().any(|t| &t.service == *service))
            .map(|(service, revision)| (service.clone(), revision.clone()))
            .collect(),
        services: targets
            .iter()
            .map(|t| {
                (
                    t.service.clone(),
                    ServiceRollout {
                        revision: t.task_definition.clone(),
                        deployment_id: None,
                        outcome: RolloutOutcome::Starting,
                    },
                )
            })
            .collect(),
        ..DeployRecord::default()
    };
    let (record, _) = Record::open(&store, fresh, &want.run).await?;
    let record = held.record.insert(record);
    reporter.info(&format!(
        "rollback `{deploy_id}`: {} back to deploy `{}` (commit {}); the database is not touched",
        code_list(targets.iter().map(|t| &t.service)),
        target.deploy_id,
        crate::text::short_sha(&target.commit)
    ));
    let rolled = async {
        lock.check()?;
        let (started, history) = rollout::start(&ecs, settings, &targets, reporter).await?;
        report.services = started;
        let waited = rollout::wait(&ecs, settings, &mut report.services, history, reporter).await;
        record
            .update(|r| note_rollouts(r, &report.services))
            .await?;
        waited
    };
    tokio::select! {
        result = rolled => result?,
        why = lock.lost() => return Err(Error::LockLost { why }),
    }
    // The scheduled tasks go back with the services.
    let clients = schedules::Clients::new(&config);
    let survey = schedules::survey_settings(
        &clients,
        settings,
        current.values(),
        &target.revisions,
        reporter,
        &mut report.warnings,
    )
    .await?;
    if let Some(survey) = survey.filter(|survey| !survey.to_move.is_empty()) {
        report.schedules = schedules::follow(&clients, &survey, record, lock, reporter).await?;
    }
    reporter.info(&format!(
        "rollback `{deploy_id}` finished: {}",
        targets
            .iter()
            .map(|t| format!("`{}` on `{}`", t.service, arn::short(&t.task_definition)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

fn nothing_to_roll_back_to(settings: &Settings, problem: &str) -> Error {
    Error::Mismatch {
        problem: format!("nothing to roll `{}` back to: {problem}", settings.env),
        hint: format!(
            "`berth status --env {}` lists the recorded deploys; pick one with `--to DEPLOY_ID`",
            settings.env
        ),
    }
}

/// `<env>-rollback-<time>`, within ECS's 36 characters for `startedBy`.
fn rollback_id(env: &str, now: u64) -> String {
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
