//! `berth rollback`: every service of one environment back on the revisions of an earlier
//! successful deploy (from the deploy records), under the environment's lock, waited on exactly
//! like a deploy's rollout. The database is not touched: no migration runs.

mod decide;

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
    DeployRecord, Kind, MovedTarget, Record, RolloutOutcome, ServiceRollout,
};
use crate::state::{self, Store, lock};
use crate::steps::rollout::step::note_rollouts;
use crate::steps::rollout::{self, Cluster, Rolled, Target};
use crate::steps::schedules;
use crate::taskdef;
use crate::text::code_list;
pub use decide::pick;
use decide::{SEARCHED, rollback_id};

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
    let Some(store) = Store::find(&config, state::Place::of(settings))
        .await
        .map_err(|error| aws::blame_unknown_region(error, &settings.region))?
    else {
        return Err(nothing_to_roll_back_to(
            settings,
            "berth has no deploy records for it (no state bucket)",
        ));
    };
    // Chosen and checked before the lock: a refused rollback writes nothing, S3 included.
    let seen = lock::read(&store).await?;
    let mut choice = choose(&ecs, &store, &seen, settings, to).await?;
    let deploy_id = rollback_id(&settings.env, state::now());
    report.deploy_id.clone_from(&deploy_id);
    // The commit gone back to: the lock's holder and the journal name it.
    let mut want = want(deploy_id.clone(), &choice.records[choice.target].commit);
    let lock: &lock::Lock = held
        .lock
        .insert(lock::acquire(&store, settings, &want, options.lock_wait, reporter, None).await?);
    // A deploy or rollback that ran meanwhile changes what runs: choose again.
    if lock.file().await.deploys != seen.deploys {
        choice = choose(&ecs, &store, &lock.file().await, settings, to).await?;
    }
    let Choice {
        records,
        current,
        running,
        target,
        targets,
    } = choice;
    let target = &records[target];
    report.to = Some(target.deploy_id.clone());
    report.commit = Some(target.commit.clone());
    left_as_they_are(settings, target, reporter);

    want.commit.clone_from(&target.commit);
    let fresh = fresh_record(&deploy_id, settings, target, &running, &targets);
    let record = begin(lock, &want, fresh, &mut held.record).await?;
    reporter.info(&format!(
        "rollback `{deploy_id}`: {} back to deploy `{}` (commit {}); the database is not touched",
        code_list(targets.iter().map(|t| &t.service)),
        target.deploy_id,
        crate::text::short_sha(&target.commit)
    ));
    let rolled = roll_back(&ecs, settings, &targets, lock, record, reporter, report);
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
    let on = targets
        .iter()
        .map(|t| format!("`{}` on `{}`", t.service, arn::short(&t.task_definition)));
    let on = on.collect::<Vec<_>>().join(", ");
    reporter.info(&format!("rollback `{deploy_id}` finished: {on}"));
    Ok(())
}

/// The rollback goes on: journaled as the newest on the environment, and its record written,
/// `held` so that how the run ends is written to it.
async fn begin<'a>(
    lock: &lock::Lock,
    want: &lock::Want,
    fresh: DeployRecord,
    held: &'a mut Option<Record>,
) -> Result<&'a mut Record, Error> {
    lock.journal(want).await?;
    let (record, _) = Record::open(lock.store(), fresh, (&want.run, &|_| {}), None).await?;
    Ok(held.insert(record))
}

/// The lock a rollback asks for. A rollback is new, so never stale; it is journaled once it is
/// sure to change something, so a refused rollback leaves no trace.
fn want(deploy_id: String, commit: &str) -> lock::Want {
    lock::Want {
        who: lock::who(),
        run: lock::run_id(),
        command: "rollback",
        deploy_id,
        commit: commit.to_owned(),
        check_stale: false,
        force: false,
    }
}

fn revision_of(service: &aws_sdk_ecs::types::Service) -> String {
    service.task_definition().unwrap_or_default().to_owned()
}

/// The deploy to go back to, and what runs now.
struct Choice {
    /// The environment's newest deploy records, newest first.
    records: Vec<DeployRecord>,
    current: BTreeMap<String, aws_sdk_ecs::types::Service>,
    /// Service → the revision it runs now.
    running: BTreeMap<String, String>,
    /// Where in `records` the deploy to go back to is.
    target: usize,
    targets: Vec<Target>,
}

/// Reads the deploys `file` journals and the services, picks the deploy to go back to, and checks
/// that every revision it names can still run. Reads only.
async fn choose(
    ecs: &aws_sdk_ecs::Client,
    store: &Store,
    file: &lock::LockFile,
    settings: &Settings,
    to: Option<&str>,
) -> Result<Choice, Error> {
    let (records, current) = tokio::try_join!(
        crate::state::record::recent(store, file, SEARCHED),
        services::describe(ecs, &settings.cluster, &settings.services),
    )?;
    let running: BTreeMap<String, String> = current
        .iter()
        .map(|(name, service)| (name.clone(), revision_of(service)))
        .collect();
    let picked = pick(&records, &running, to)
        .map_err(|problem| nothing_to_roll_back_to(settings, &problem))?;
    let target = records
        .iter()
        .position(|record| record.deploy_id == picked.deploy_id)
        .unwrap_or_default();
    let targets = targets_of(settings, &records[target]);
    check_usable(ecs, &targets, &records[target].deploy_id).await?;
    Ok(Choice {
        records,
        current,
        running,
        target,
        targets,
    })
}

/// The services the deploy gone back to deployed, each with its revision then.
fn targets_of(settings: &Settings, target: &DeployRecord) -> Vec<Target> {
    settings
        .services
        .iter()
        .filter_map(|service| {
            target.services.get(service).map(|rollout| Target {
                service: service.clone(),
                task_definition: rollout.revision.clone(),
            })
        })
        .collect()
}

/// Names the services the deploy gone back to did not deploy: they stay as they are.
fn left_as_they_are(settings: &Settings, target: &DeployRecord, reporter: &dyn Reporter) {
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
}

/// Every revision to go back to is still ACTIVE: a deregistered one cannot run again. They are
/// looked at side by side.
async fn check_usable(
    ecs: &aws_sdk_ecs::Client,
    targets: &[Target],
    to: &str,
) -> Result<(), Error> {
    let described = try_join_all(
        targets
            .iter()
            .map(|target| taskdef::describe(ecs, &target.task_definition)),
    )
    .await?;
    match targets
        .iter()
        .zip(&described)
        .find(|(_, described)| described.status() == Some("INACTIVE"))
    {
        Some((target, _)) => Err(Error::Mismatch {
            problem: format!(
                "revision `{}` of deploy `{to}` is INACTIVE (deregistered): `{}` cannot go back to it",
                arn::short(&target.task_definition),
                target.service
            ),
            hint: "pick another deploy with `--to DEPLOY_ID` (`berth status` lists them), or deploy the old commit anew".to_owned(),
        }),
        None => Ok(()),
    }
}

/// The rollback's record: what it goes back to, and what each service ran before.
fn fresh_record(
    deploy_id: &str,
    settings: &Settings,
    target: &DeployRecord,
    running: &BTreeMap<String, String>,
    targets: &[Target],
) -> DeployRecord {
    DeployRecord {
        deploy_id: deploy_id.to_owned(),
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
                        service_deployment: None,
                        outcome: RolloutOutcome::Starting,
                    },
                )
            })
            .collect(),
        ..DeployRecord::default()
    }
}

/// The services onto the revisions gone back to, waited on like a rollout; the record learns
/// each deployment and how it ended.
async fn roll_back(
    ecs: &aws_sdk_ecs::Client,
    settings: &Settings,
    targets: &[Target],
    lock: &lock::Lock,
    record: &mut Record,
    reporter: &dyn Reporter,
    report: &mut Report,
) -> Result<(), Error> {
    lock.check()?;
    let started = rollout::start(ecs, Cluster::of(settings), targets, None, reporter).await?;
    report.services = started.rolled;
    let waited = match started.refused {
        Some(refused) => Err(refused),
        None => {
            let cluster = Cluster::of(settings);
            let history = started.history;
            let warnings = &mut report.warnings;
            rollout::wait(
                ecs,
                cluster,
                &mut report.services,
                history,
                reporter,
                warnings,
            )
            .await
        }
    };
    record
        .update(|r| note_rollouts(r, &report.services))
        .await?;
    waited
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
