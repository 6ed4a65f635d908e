//! A rerun of a deploy that finished. When its record says `succeeded`, no run holds the lock and
//! no deploy or rollback started on the environment since, and AWS still shows what the record
//! says (the image's tag in ECR, every service on the deploy's revision with that one deployment
//! COMPLETED, the migration succeeded, every target the deploy moved still on its revision), the
//! rerun reports the record and stops: it takes no lock and writes nothing. Anything else goes
//! the whole way, under the lock, as any rerun.

use aws_sdk_ecs::types::Service;

use super::Report;
use crate::aws::ecr::{self, Image};
use crate::current::Current;
use crate::error::Error;
use crate::settings::{MigrateOrder, Settings};
use crate::state::lock::LockFile;
use crate::state::record::{AttemptOutcome, DeployRecord, Kind, RunState};
use crate::steps::migrate::Migrated;
use crate::steps::prepare::Prepared;
use crate::steps::rollout::{RolloutState, Rolled};
use crate::steps::image::short_tag;
use crate::steps::{Ledger, Step, schedules};

/// Whether the record alone says the deploy finished and nothing moved since, as far as the
/// preparation's reads show (the services, the lock file): pure.
pub(super) fn by_the_record(
    earlier: &DeployRecord,
    lock: &LockFile,
    settings: &Settings,
    current: &Current,
    tag: &str,
) -> bool {
    let newest = lock.deploys.last().map(|started| started.deploy_id.as_str());
    let migrated = match earlier.migration.last() {
        _ if settings.migrate == MigrateOrder::Skip => true,
        _ if !earlier.revisions.contains_key(&current.migration_family) => true,
        Some(attempt) => attempt.outcome == AttemptOutcome::Succeeded,
        None => false,
    };
    earlier.state == RunState::Succeeded
        && earlier.kind == Kind::Deploy
        && lock.holder.is_none()
        && newest == Some(earlier.deploy_id.as_str())
        && earlier.image.as_ref().is_some_and(|image| image.tag == tag)
        && migrated
        && current.families.iter().all(|(service, family)| {
            let revision = earlier.revisions.get(family).map(String::as_str);
            revision.is_some_and(|revision| settled_on(&current.services[service], revision))
        })
}

/// The service runs `revision` and nothing else: its one deployment COMPLETED.
fn settled_on(service: &Service, revision: &str) -> bool {
    match service.deployments() {
        [deployment] => {
            deployment.task_definition() == Some(revision)
                && RolloutState::of(deployment) == RolloutState::Completed
        }
        _ => false,
    }
}

/// The rest, read from AWS at once: the image's tag (and the environment tag) on the recorded
/// digest, and each target the deploy moved still on its revision.
pub(super) async fn in_aws(
    ecr_client: &aws_sdk_ecr::Client,
    targets: &schedules::Clients,
    settings: &Settings,
    current: &Current,
    earlier: &DeployRecord,
) -> Result<bool, Error> {
    let Some(image) = &earlier.image else {
        return Ok(false);
    };
    let repository = &current.repository;
    let tags = std::iter::once(&image.tag).chain(&settings.env_tag);
    let tagged = futures_util::future::try_join_all(
        tags.map(|tag| ecr::digest_of(ecr_client, repository, tag)),
    );
    let moved = futures_util::future::try_join_all(
        earlier
            .schedules
            .iter()
            .map(|moved| schedules::still_on(targets, moved)),
    );
    let (tagged, moved) = tokio::try_join!(tagged, moved)?;
    let tagged = tagged
        .iter()
        .all(|digest| digest.as_deref() == Some(image.digest.as_str()));
    Ok(tagged && moved.into_iter().all(|on| on))
}

/// The report of the finished deploy, from its record and the services as read, every step
/// told as already done.
pub(super) fn report(
    current: &Current,
    prepared: &Prepared,
    earlier: &DeployRecord,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
) {
    let repository = &current.repository;
    if let Some(recorded) = &earlier.image {
        let why = format!("`{}:{}` is in ECR", repository.name, short_tag(&prepared.tag));
        ledger.skip(Step::Build, why.clone());
        ledger.skip(Step::Push, why);
        report.image = Some(Image {
            repository: repository.name.clone(),
            tag: recorded.tag.clone(),
            digest: recorded.digest.clone(),
            uri: repository.pinned(&recorded.digest),
        });
    }
    ledger.skip(Step::Register, "the deploy's record names its revisions");
    report.revisions.clone_from(&earlier.revisions);
    report.services = current
        .families
        .iter()
        .map(|(service, family)| {
            let revision = earlier.revisions[family].clone();
            let deployment = current.services[service].deployments().first();
            Rolled {
                service: service.clone(),
                task_definition: revision.clone(),
                deployment_id: deployment.and_then(|d| d.id()).unwrap_or_default().to_owned(),
                rollout_state: RolloutState::Completed,
                already: true,
                ends_on: Some(revision),
            }
        })
        .collect();
    ledger.skip(Step::Rollout, "services already on this deploy's revisions");
    report.migration = Migrated::latest(earlier).map(|migrated| Migrated {
        already: true,
        ..migrated
    });
    if let Some(migrated) = &report.migration {
        ledger.skip(
            Step::Migrate,
            format!(
                "migration task `{}` of this deploy succeeded",
                crate::aws::arn::short(&migrated.task_arn)
            ),
        );
    }
    if !earlier.schedules.is_empty() {
        ledger.skip(
            Step::Schedules,
            format!(
                "{} scheduled target(s) run the new revisions",
                earlier.schedules.len()
            ),
        );
    }
    report.schedules.clone_from(&earlier.schedules);
    report.deregistered.clone_from(&earlier.deregistered);
}
