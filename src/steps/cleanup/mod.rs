//! `keep_revisions`: after a successful deploy, the oldest ACTIVE revisions of each deployed
//! family beyond the newest N are deregistered, never one still in use: by any service of the
//! cluster (any of its deployments), by any scheduled target of the account, or by the records
//! of the newest N deploys (what a rollback would go back to); and only revisions this
//! environment's deploys registered.

mod decide;

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;

use crate::aws::arn;
use crate::aws::failed;
use crate::aws::{self, services};
use crate::error::Error;
use crate::settings::Settings;
use crate::state::{self, Lock, Record};
use crate::steps::schedules;
use crate::steps::{Ledger, Step};
use crate::taskdef;
use crate::text::{code_list, with_causes};
pub use decide::{doomed, key};

/// One family's ACTIVE revisions, newest first.
pub async fn active(ecs: &aws_sdk_ecs::Client, family: &str) -> Result<Vec<String>, Error> {
    let mut pages = ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .sort(aws_sdk_ecs::types::SortOrder::Desc)
        .into_paginator()
        .send();
    let mut revisions = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed(format!("listing the revisions of `{family}`"), e))?;
        // The prefix matches longer families too (`web` and `web-worker`).
        revisions.extend(
            page.task_definition_arns()
                .iter()
                .filter(|arn| arn::family(arn) == family)
                .cloned(),
        );
    }
    // Newest first, whatever order the pages came in.
    revisions.sort_by_key(|revision| std::cmp::Reverse(arn::revision(revision)));
    Ok(revisions)
}

/// Every service of the cluster, by name.
pub async fn services_in(ecs: &aws_sdk_ecs::Client, cluster: &str) -> Result<Vec<String>, Error> {
    let mut pages = ecs.list_services().cluster(cluster).into_paginator().send();
    let mut names = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed(format!("listing the services of `{cluster}`"), e))?;
        names.extend(
            page.service_arns()
                .iter()
                .map(|arn| arn::short(arn).to_owned()),
        );
    }
    Ok(names)
}

pub async fn deregister(ecs: &aws_sdk_ecs::Client, revision: &str) -> Result<(), Error> {
    ecs.deregister_task_definition()
        .task_definition(revision)
        .send()
        .await
        .map_err(|e| failed(format!("deregistering `{}`", arn::short(revision)), e))?;
    Ok(())
}

/// What the cleanup needs of the settings: the cluster, the environment (only its own revisions
/// go) and how many of each family's newest revisions stay.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    pub cluster: &'a str,
    pub env: &'a str,
    pub keep: usize,
}

impl<'a> Setup<'a> {
    /// `None` without `keep_revisions`: nothing is deregistered.
    pub fn of(settings: &'a Settings) -> Option<Self> {
        Some(Self {
            cluster: &settings.cluster,
            env: &settings.env,
            keep: settings.keep_revisions?,
        })
    }
}

/// Every revision something uses: the deploy's own, any deployment of any service of the
/// cluster, any scheduled ECS target of the account, and what the newest `keep` deploys' records
/// name (a rollback's targets), as `(family, revision)`. `Err`: a warning, when berth cannot
/// know what is in use, so it deregisters nothing.
async fn in_use(
    config: &SdkConfig,
    cluster: &str,
    keep: usize,
    revisions: &BTreeMap<String, String>,
    lock: &Lock,
) -> Result<Result<BTreeSet<(String, u64)>, String>, Error> {
    let ecs = aws::ecs_client(config);
    let mut in_use: BTreeSet<(String, u64)> = revisions.values().map(|r| key(r)).collect();
    // Every service of the cluster, berth's or not, with every deployment it has.
    let names = services_in(&ecs, cluster).await?;
    let services = services::describe(&ecs, cluster, &names).await?;
    for service in services.values() {
        let running = service
            .deployments()
            .iter()
            .filter_map(|d| d.task_definition());
        in_use.extend(running.chain(service.task_definition()).map(key));
    }
    // Every scheduled ECS target of the account, on every bus and in every cluster, whatever
    // `schedules` says: what one runs must stay.
    match schedules::find(&schedules::Clients::new(config), None, None, &[]).await {
        Ok((found, _)) => in_use.extend(found.iter().map(|t| key(&t.task_definition))),
        Err(error @ Error::AccessDenied { .. }) => {
            let warning = format!(
                "no revision was deregistered: berth must see the scheduled targets to know what they run, and {}",
                with_causes(&error)
            );
            return Ok(Err(warning));
        }
        Err(error) => return Err(error),
    }
    // What the newest deploys of the environment would roll back to.
    let file = lock.file().await;
    for started in file.deploys.iter().rev().take(keep) {
        let Some(earlier) = state::record::read(lock.store(), &started.deploy_id).await? else {
            let warning = format!(
                "no revision was deregistered: the record of deploy `{}` is missing, so what it would roll back to is unknown",
                started.deploy_id
            );
            return Ok(Err(warning));
        };
        let named = earlier.revisions.values().chain(earlier.previous.values());
        in_use.extend(named.map(|r| key(r)));
    }
    Ok(Ok(in_use))
}

/// `keep_revisions`: deregisters each deployed family's ACTIVE revisions beyond the newest `keep`
/// that nothing uses (a service's deployment, a scheduled target, the newest `keep` deploys'
/// records). The record lists them before the first goes; a rerun finds them gone.
pub async fn run(
    config: &SdkConfig,
    setup: Setup<'_>,
    revisions: &BTreeMap<String, String>,
    record: &mut Record,
    lock: &Lock,
    ledger: &mut Ledger<'_>,
) -> Result<Vec<String>, Error> {
    let reporter = ledger.reporter;
    let ecs = aws::ecs_client(config);
    let Setup { cluster, env, keep } = setup;
    let in_use = match in_use(config, cluster, keep, revisions, lock).await? {
        Ok(in_use) => in_use,
        Err(warning) => {
            ledger.warn(warning);
            return Ok(record.value.deregistered.clone());
        }
    };
    // Only revisions this environment's deploys registered: another environment's, or one
    // made by hand, are not this deploy's to remove.
    let mine = format!("{env}-");
    let mut going = Vec::new();
    for family in revisions.keys() {
        let active = active(&ecs, family).await?;
        for revision in doomed(&active, keep, &in_use) {
            let described = taskdef::describe(&ecs, &revision).await?;
            let ours = described
                .tags
                .get(taskdef::DEPLOY_ID_TAG)
                .is_some_and(|id| id.starts_with(&mine));
            if ours {
                going.push(revision);
            }
        }
    }
    if going.is_empty() {
        reporter.info(&format!(
            "cleanup: no unused revision beyond the newest {keep} of each family"
        ));
        return Ok(record.value.deregistered.clone());
    }
    ledger.start(Step::Cleanup);
    let mut listed = record.value.deregistered.clone();
    for revision in &going {
        if !listed.contains(revision) {
            listed.push(revision.clone());
        }
    }
    if record.value.deregistered != listed {
        let planned = listed.clone();
        record.update(|r| r.deregistered = planned).await?;
    }
    for revision in &going {
        lock.check()?;
        deregister(&ecs, revision).await?;
    }
    ledger.done(format!(
        "deregistered {}",
        code_list(going.iter().map(|r| arn::short(r)))
    ));
    Ok(listed)
}
