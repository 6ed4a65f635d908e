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
use crate::steps::migrate::{self, Migrated};
use crate::steps::prepare::Prepared;
use crate::steps::rollout::{self, Rolled, RolloutState};
use crate::steps::{Ledger, Step, image, schedules};

/// What a rerun reads to know whether its deploy finished.
pub(super) struct Finished<'a> {
    pub settings: &'a Settings,
    pub current: &'a Current,
    pub prepared: &'a Prepared,
    /// The deploy's record, as an earlier run left it.
    pub earlier: &'a DeployRecord,
    /// The environment's lock file, read beside the preparation.
    pub lock: &'a LockFile,
}

impl Finished<'_> {
    /// Whether the deploy finished before and AWS agrees: then `report` is filled from the
    /// record and the run says so; nothing is locked or written.
    pub(super) async fn reported(
        &self,
        ecr_client: &aws_sdk_ecr::Client,
        config: &aws_config::SdkConfig,
        report: &mut Report,
        ledger: &mut Ledger<'_>,
    ) -> Result<bool, Error> {
        let Self {
            settings,
            current,
            prepared,
            earlier,
            lock,
        } = *self;
        if !by_the_record(earlier, lock, settings, current, &prepared.tag) {
            return Ok(false);
        }
        let targets = schedules::Clients::new(config);
        if !in_aws(ecr_client, &targets, settings, current, earlier).await? {
            return Ok(false);
        }
        fill(current, prepared, earlier, report, ledger);
        ledger.reporter.info(&format!(
            "deploy `{}` finished before (its record says succeeded, and AWS agrees): nothing to do, no lock taken",
            earlier.deploy_id
        ));
        Ok(true)
    }
}

/// Whether the record alone says the deploy finished and nothing moved since, as far as the
/// preparation's reads show (the services, the lock file): pure.
fn by_the_record(
    earlier: &DeployRecord,
    lock: &LockFile,
    settings: &Settings,
    current: &Current,
    tag: &str,
) -> bool {
    let migrated = match earlier.migration.last() {
        _ if settings.migrate == MigrateOrder::Skip => true,
        _ if !earlier.revisions.contains_key(&current.migration_family) => true,
        Some(attempt) => attempt.outcome == AttemptOutcome::Succeeded,
        None => false,
    };
    earlier.state == RunState::Succeeded
        && earlier.kind == Kind::Deploy
        && lock.holder.is_none()
        && lock.newest() == Some(earlier.deploy_id.as_str())
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
async fn in_aws(
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
fn fill(
    current: &Current,
    prepared: &Prepared,
    earlier: &DeployRecord,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
) {
    let repository = &current.repository;
    if let Some(recorded) = &earlier.image {
        let why = image::in_ecr(&repository.name, &prepared.tag);
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
                deployment_id: deployment
                    .and_then(|d| d.id())
                    .unwrap_or_default()
                    .to_owned(),
                rollout_state: RolloutState::Completed,
                already: true,
                ends_on: Some(revision),
                service_deployment: earlier
                    .services
                    .get(service)
                    .and_then(|s| s.service_deployment.clone()),
                service_deployment_status: None,
                deployment_created: None,
                paused: None,
                course: Default::default(),
            }
        })
        .collect();
    ledger.skip(Step::Rollout, rollout::step::ALREADY);
    report.migration = Migrated::latest(earlier).map(|migrated| Migrated {
        already: true,
        ..migrated
    });
    if let Some(migrated) = &report.migration {
        ledger.skip(
            Step::Migrate,
            migrate::step::succeeded_before(&migrated.task_arn),
        );
    }
    if !earlier.schedules.is_empty() {
        ledger.skip(
            Step::Schedules,
            schedules::step::on_new(earlier.schedules.len()),
        );
    }
    report.schedules.clone_from(&earlier.schedules);
    report.deregistered.clone_from(&earlier.deregistered);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};

    use super::by_the_record;
    use crate::aws::ecr::Repository;
    use crate::current::Current;
    use crate::flags::Flags;
    use crate::settings::{Settings, resolve};
    use crate::state::lock::{Holder, LockFile, Started};
    use crate::state::record::{Attempt, AttemptOutcome, DeployRecord, RecordedImage, RunState};

    const REVISION: &str = "arn:aws:ecs:us-east-1:1:task-definition/app-stg-web:8";

    fn settings() -> Settings {
        let text = "repository = \"app\"\nregion = \"us-east-1\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n";
        let flags = Flags {
            env: Some("stg".to_owned()),
            ..Flags::default()
        };
        resolve(text, Path::new("berth.toml"), &flags).unwrap()
    }

    fn deployment(revision: &str, state: DeploymentRolloutState) -> Deployment {
        Deployment::builder()
            .task_definition(revision)
            .rollout_state(state)
            .build()
    }

    fn current(deployments: Vec<Deployment>) -> Current {
        let web = Service::builder()
            .set_deployments(Some(deployments))
            .build();
        Current {
            repository: Repository {
                name: "app".to_owned(),
                uri: "1.dkr.ecr.us-east-1.amazonaws.com/app".to_owned(),
            },
            services: BTreeMap::from([("web".to_owned(), web)]),
            families: vec![("web".to_owned(), "app-stg-web".to_owned())],
            migration_family: "app-stg-web".to_owned(),
        }
    }

    fn record() -> DeployRecord {
        DeployRecord {
            deploy_id: "stg-1".to_owned(),
            state: RunState::Succeeded,
            image: Some(RecordedImage {
                tag: "tag".to_owned(),
                digest: "sha256:1".to_owned(),
                uri: String::new(),
            }),
            revisions: BTreeMap::from([("app-stg-web".to_owned(), REVISION.to_owned())]),
            migration: vec![Attempt {
                number: 0,
                client_token: "t".to_owned(),
                claimed_at: 0,
                task_arn: Some("task".to_owned()),
                outcome: AttemptOutcome::Succeeded,
                exit_codes: None,
                summary: None,
            }],
            ..DeployRecord::default()
        }
    }

    fn started(deploy_id: &str) -> Started {
        Started {
            deploy_id: deploy_id.to_owned(),
            commit: "c".to_owned(),
            at: 0,
            by: "me".to_owned(),
        }
    }

    /// Only a deploy its record calls succeeded, newest on a free lock, with every service
    /// settled on its revision and its migration done, is finished; each row breaks one of these.
    #[test]
    fn a_rerun_is_finished_only_when_the_record_and_the_services_agree() {
        let settings = settings();
        let settled = || vec![deployment(REVISION, DeploymentRolloutState::Completed)];
        let free = LockFile {
            deploys: vec![started("stg-0"), started("stg-1")],
            ..LockFile::default()
        };
        assert!(by_the_record(
            &record(),
            &free,
            &settings,
            &current(settled()),
            "tag"
        ));

        let failed = DeployRecord {
            state: RunState::Failed,
            ..record()
        };
        let unmigrated = DeployRecord {
            migration: Vec::new(),
            ..record()
        };
        let held = LockFile {
            holder: Some(Holder {
                who: "ci".to_owned(),
                run: "r".to_owned(),
                command: "deploy".to_owned(),
                deploy_id: "stg-1".to_owned(),
                commit: "c".to_owned(),
                since: 0,
                expires: 0,
            }),
            ..free.clone()
        };
        let newer = LockFile {
            deploys: vec![started("stg-1"), started("stg-2")],
            ..LockFile::default()
        };
        let rolling = vec![
            deployment(REVISION, DeploymentRolloutState::InProgress),
            deployment("app-stg-web:7", DeploymentRolloutState::Completed),
        ];
        let elsewhere = vec![deployment(
            "app-stg-web:7",
            DeploymentRolloutState::Completed,
        )];
        let rows: [(&str, &DeployRecord, &LockFile, Vec<Deployment>, &str); 7] = [
            ("failed", &failed, &free, settled(), "tag"),
            ("migration not run", &unmigrated, &free, settled(), "tag"),
            ("lock held", &record(), &held, settled(), "tag"),
            ("a newer deploy", &record(), &newer, settled(), "tag"),
            ("still rolling", &record(), &free, rolling, "tag"),
            ("moved elsewhere", &record(), &free, elsewhere, "tag"),
            ("another image", &record(), &free, settled(), "other"),
        ];
        for (why, record, lock, deployments, tag) in rows {
            let finished = by_the_record(record, lock, &settings, &current(deployments), tag);
            assert!(!finished, "{why}");
        }
    }
}
