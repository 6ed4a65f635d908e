//! What a deploy starts from, read from AWS before anything changes: the repository, the services
//! and the task family of each, and the family the migration runs in. Every step that plans from
//! it takes it from here.

use std::collections::BTreeMap;

use aws_sdk_ecs::Client as Ecs;
use aws_sdk_ecs::types::Service;

use crate::aws::arn;
use crate::aws::ecr::{self, Repository};
use crate::aws::services;
use crate::error::Error;
use crate::settings::Settings;
use crate::taskdef::Described;

/// The AWS state a deploy starts from, read before anything changes.
pub struct Current {
    pub repository: Repository,
    pub services: BTreeMap<String, Service>,
    /// Family of each service, in `settings.services` order.
    pub families: Vec<(String, String)>,
    /// Family of the migration task.
    pub migration_family: String,
}

impl Current {
    /// The account, as a service's ARN names it.
    pub fn account(&self) -> Option<&str> {
        (self.services.values()).find_map(|service| service.service_arn().and_then(arn::account))
    }
}

/// `account`: the credentials must be that account's, as the services' ARNs say.
fn check_account(settings: &Settings, found: Option<&str>) -> Result<(), Error> {
    match (&settings.account, found) {
        (Some(wanted), Some(found)) if wanted != found => Err(Error::Mismatch {
            problem: format!(
                "`{}` lives in account `{wanted}` (`account`), but the credentials are account `{found}`'s",
                settings.env
            ),
            hint: format!(
                "deploy `{}` with credentials of account `{wanted}` (its role, or `--profile`)",
                settings.env
            ),
        }),
        _ => Ok(()),
    }
}

/// Reads what the deploy builds on, and checks the settings against it; changes nothing.
pub async fn read(
    ecs: &Ecs,
    ecr_client: &aws_sdk_ecr::Client,
    settings: &Settings,
    files: &BTreeMap<String, Described>,
) -> Result<Current, Error> {
    // ECR beside ECS: the two lookups do not depend on each other.
    let (repository, services) = tokio::try_join!(
        ecr::repository(ecr_client, settings),
        services::describe(ecs, &settings.cluster, &settings.services)
    )?;
    for (name, service) in &services {
        services::check_controller(name, service)?;
    }
    let families: Vec<(String, String)> = settings
        .services
        .iter()
        .map(|name| {
            let family = match files.get(name) {
                Some(file) => file.family().to_owned(),
                None => {
                    arn::family(services[name].task_definition().unwrap_or_default()).to_owned()
                }
            };
            (name.clone(), family)
        })
        .collect();
    let migration_family = settings
        .migration
        .family
        .clone()
        .unwrap_or_else(|| families[0].1.clone());
    let current = Current {
        repository,
        services,
        families,
        migration_family,
    };
    check_account(settings, current.account())?;
    Ok(current)
}
