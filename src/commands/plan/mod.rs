//! `berth plan`: what `berth deploy` would do, read from ECR and ECS and changing nothing. The
//! same reads as a deploy (the release, the services, each family's revision to come), then
//! each family's next revision as a diff against the one running now, only the keys that change.

mod diff;

pub use diff::Change;
use diff::diff;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::aws;
use crate::aws::ecr;
use crate::current::Current;
use crate::error::Error;
use crate::flags::DeployOptions;
use crate::report::Reporter;
use crate::settings::Promotion;
use crate::settings::{MigrateOrder, Settings};
use crate::state;
use crate::steps::prepare::{self, Prepared};
use crate::steps::promote::copy::Copied;
use crate::steps::promote::{self, Passed};
use crate::steps::register::{self, FamilyPlan};
use crate::steps::rollout;
use crate::steps::schedules;
use crate::taskdef::{self, Changes};
use crate::text::short_duration;

/// What a deploy would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub env: String,
    pub deploy_id: String,
    pub commit: String,
    pub image: PlannedImage,
    pub families: Vec<PlannedFamily>,
    pub services: Vec<PlannedService>,
    /// Scheduled targets that would move (`to` is `family:new` for a revision not registered yet).
    pub schedules: Vec<PlannedTarget>,
    pub migration: Option<PlannedMigration>,
    /// Services on another revision than the last deploy left them on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<crate::state::drift::Drift>,
    /// Whether the deploy would change anything; without a change `berth plan` exits with 6.
    pub changes: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedImage {
    pub tag: String,
    /// Its digest when ECR has the tag: no build, no push.
    pub digest: Option<String>,
    /// What names it: the build context's tree, or the commit and why.
    pub content: crate::release::Content,
    /// `promote_from`: where it comes from instead of a build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PlannedPromotion>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedFamily {
    pub family: String,
    /// The revision running now (or the file's base).
    pub from: String,
    /// This deploy's revision when it is registered already; `None`: a new one would be.
    pub registered: Option<String>,
    /// What the new revision changes, key by key.
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedService {
    pub service: String,
    pub from: String,
    pub to: String,
    /// How ECS deploys it: strategy, bake times, lifecycle hooks.
    pub strategy: String,
    /// The least time its deployment takes (bake times), in seconds.
    pub least_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedTarget {
    pub name: String,
    pub target: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedMigration {
    pub order: MigrateOrder,
    pub family: String,
    pub container: String,
    pub command: Vec<String>,
    pub cluster: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

/// `promote_from`: where the image would come from, and what its copy would move.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedPromotion {
    pub from: String,
    pub deploy_id: String,
    /// The image there, pinned.
    pub source: String,
    pub promotion: Promotion,
    /// What the copy would move; `None` for a reference, or when the image is here already.
    pub copy: Option<Copied>,
}

/// The image the revisions would name: pinned when its digest is known (in ECR, or promoted).
fn pinned(
    promotion: Option<&PlannedPromotion>,
    digest: Option<&str>,
    current: &Current,
    tag: &str,
) -> String {
    let repository = &current.repository.uri;
    match (promotion, digest) {
        (Some(from), _) if from.promotion == Promotion::Reference => from.source.clone(),
        (Some(from), None) => {
            let digest = from
                .source
                .rsplit_once('@')
                .map_or("", |(_, digest)| digest);
            format!("{repository}@{digest}")
        }
        (_, Some(digest)) => format!("{repository}@{digest}"),
        (None, None) => format!("{repository}:{tag}"),
    }
}

/// `requires`, as a deploy checks it: a refusal, or the warning `--force` gives; with
/// `promote_from`, where the image would come from.
async fn guard(
    config: &aws_config::SdkConfig,
    settings: &Settings,
    (ecr_client, current): (&aws_sdk_ecr::Client, &Current),
    (tag, held, force): (&str, &Option<String>, bool),
    reporter: &dyn Reporter,
) -> Result<(Vec<String>, Option<PlannedPromotion>), Error> {
    let Some(upstream) = &settings.requires else {
        return Ok((Vec::new(), None));
    };
    let env = (settings.env.as_str(), upstream);
    let tested = match promote::guard(config, env, current.account(), tag, force).await? {
        Passed::Tested(tested) => tested,
        Passed::Forced(warning) => return Ok((vec![warning], None)),
    };
    reporter.info(&promote::same_image(&upstream.env, &tested));
    promote::ready(
        (config, upstream),
        settings.promotion,
        &tested,
        &settings.env,
    )
    .await?;
    let Some(promotion) = settings.promotion else {
        return Ok((Vec::new(), None));
    };
    let copy = match promotion {
        Promotion::Reference => None,
        Promotion::Copy => {
            let ecr = (ecr_client, &current.repository);
            promote::survey((config, upstream), ecr, (&tested, Some(held.clone()))).await?
        }
    };
    let planned = PlannedPromotion {
        from: upstream.env.clone(),
        deploy_id: tested.deploy_id,
        source: tested.uri,
        promotion,
        copy,
    };
    Ok((Vec::new(), Some(planned)))
}

pub async fn plan(
    settings: &Settings,
    options: DeployOptions,
    reporter: &dyn Reporter,
) -> Result<Plan, Error> {
    // The deploy's own preparation, in its order: what a deploy would refuse before its first
    // write, a plan refuses the same way.
    let local = prepare::local(settings, options)?;
    let config = aws::sdk_config(settings).await?;
    let ecs = aws::ecs_client(&config);
    let ecr_client = aws::ecr_client(&config);
    let tagging = aws::tagging_client(&config);
    // The deploy's record, if any, is read (never written): a rerun's plan is the rerun's.
    let store = state::Store::find(&config, state::Place::of(settings))
        .await
        .map_err(|error| aws::blame_unknown_region(error, &settings.region))?;
    let readers = prepare::Readers {
        ecs: &ecs,
        ecr: &ecr_client,
        tagging: &tagging,
    };
    let journaled = journaled(store.as_ref(), &local.release.deploy_id).await?;
    let (current, Prepared { families, tag, .. }) =
        prepare::in_aws(&readers, store.as_ref(), settings, (&local, journaled)).await?;
    let release = local.release;
    let digest = ecr::digest_of(&ecr_client, &current.repository, &tag).await?;
    let looked = (tag.as_str(), &digest, options.force);
    let found = (&ecr_client, &current);
    let (mut warnings, promotion) = guard(&config, settings, found, looked, reporter).await?;
    let image = pinned(promotion.as_ref(), digest.as_deref(), &current, &tag);

    let (planned, to) = planned_families(&ecs, settings, &current, &families, &image).await?;
    let services = planned_services(&current, &to);
    warnings.extend(too_short(&services, settings.timeouts.rollout));
    for warning in &warnings {
        reporter.info(&format!("warning: {warning}"));
    }
    let survey = schedules::survey_settings(
        &schedules::Clients::new(&config),
        settings,
        current.services.values(),
        &to,
        reporter,
        &mut warnings,
    )
    .await?;
    let targets: Vec<PlannedTarget> = survey
        .iter()
        .flat_map(|survey| &survey.to_move)
        .map(PlannedTarget::from)
        .collect();
    let migration = planned_migration(settings, &current, &to);
    let drift = drifted(store.as_ref(), &current).await?;
    // Scheduled targets berth could not look at may need moving: not "nothing to deploy".
    let changes = digest.is_none()
        || !register::all_registered(&families)
        || services.iter().any(|s| s.from != s.to)
        || !targets.is_empty()
        || !warnings.is_empty();
    Ok(Plan {
        env: settings.env.clone(),
        deploy_id: release.deploy_id,
        commit: release.commit,
        image: PlannedImage {
            tag,
            digest,
            content: release.content,
            promotion,
        },
        families: planned,
        services,
        schedules: targets,
        migration,
        drift,
        changes,
        warnings,
    })
}

/// The services that run another revision than the last deploy left them on.
async fn drifted(
    store: Option<&state::Store>,
    current: &crate::current::Current,
) -> Result<Vec<crate::state::drift::Drift>, Error> {
    let Some(store) = store else {
        return Ok(Vec::new());
    };
    let running = current
        .services
        .iter()
        .map(|(name, s)| {
            (
                name.clone(),
                s.task_definition().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    crate::state::drift::read(store, &running).await
}

/// Each service's move, with how ECS deploys it.
fn planned_services(current: &Current, to: &BTreeMap<String, String>) -> Vec<PlannedService> {
    current
        .families
        .iter()
        .map(|(service, family)| {
            let config = current.services[service].deployment_configuration();
            PlannedService {
                service: service.clone(),
                from: revision_of(&current.services[service]),
                to: to.get(family).cloned().unwrap_or_default(),
                strategy: rollout::strategy(config),
                least_seconds: rollout::least_time(config).as_secs(),
            }
        })
        .collect()
}

/// A warning for each service whose deployment's bake times outlast the rollout's timeout.
fn too_short(services: &[PlannedService], timeout: Duration) -> Vec<String> {
    services
        .iter()
        .filter(|s| Duration::from_secs(s.least_seconds) > timeout)
        .map(|s| {
            format!(
                "`{}` deploys {}: at least {} of bake time, longer than `timeouts.rollout` ({}); the rollout would time out (hint: raise `timeouts.rollout`)",
                s.service,
                s.strategy,
                short_duration(Duration::from_secs(s.least_seconds)),
                short_duration(timeout)
            )
        })
        .collect()
}

/// Each family's revision to come: this deploy's when registered already, else a new one, shown
/// as its changes against the revision running now. With it, family → the revision a deploy
/// would run (`family:new` for one not registered yet).
async fn planned_families(
    ecs: &aws_sdk_ecs::Client,
    settings: &Settings,
    current: &Current,
    families: &BTreeMap<String, FamilyPlan>,
    image: &str,
) -> Result<(Vec<PlannedFamily>, BTreeMap<String, String>), Error> {
    // What each family runs now: its first service's revision (the migration family alone: its
    // latest).
    let running: BTreeMap<&str, &str> = current
        .families
        .iter()
        .map(|(service, family)| {
            let revision = current.services[service]
                .task_definition()
                .unwrap_or_default();
            (family.as_str(), revision)
        })
        .rev()
        .collect();
    let mut planned = Vec::new();
    let mut to = BTreeMap::new();
    for (family, plan) in families {
        match plan {
            FamilyPlan::Registered(described) => {
                to.insert(family.clone(), described.arn.clone());
                planned.push(PlannedFamily {
                    family: family.clone(),
                    from: running
                        .get(family.as_str())
                        .map_or_else(|| described.arn.clone(), |revision| (*revision).to_owned()),
                    registered: Some(described.arn.clone()),
                    changes: Vec::new(),
                });
            }
            FamilyPlan::New { base, containers } => {
                to.insert(family.clone(), format!("{family}:new"));
                let now = match running.get(family.as_str()) {
                    Some(revision) if *revision != base.arn => {
                        taskdef::describe(ecs, revision).await?
                    }
                    _ => base.clone(),
                };
                let next = taskdef::next_revision(
                    base,
                    &Changes {
                        containers,
                        image,
                        set_environment: &settings.environment,
                        remove_environment: &settings.remove_environment,
                        set_secrets: &settings.secrets,
                        tags: BTreeMap::new(),
                    },
                );
                let unchanged = taskdef::next_revision(
                    &now,
                    &Changes {
                        containers: &[],
                        image: "",
                        set_environment: &BTreeMap::new(),
                        remove_environment: &[],
                        set_secrets: &BTreeMap::new(),
                        tags: BTreeMap::new(),
                    },
                );
                planned.push(PlannedFamily {
                    family: family.clone(),
                    from: now.arn.clone(),
                    registered: None,
                    changes: diff(&unchanged, &next),
                });
            }
        }
    }
    Ok((planned, to))
}

/// Whether the lock's journal lists `deploy_id`: a run of it that took the lock may have
/// registered revisions before its record was written.
async fn journaled(store: Option<&state::Store>, deploy_id: &str) -> Result<bool, Error> {
    let Some(store) = store else {
        return Ok(false);
    };
    Ok(state::lock::read(store).await?.lists(deploy_id))
}

fn revision_of(service: &aws_sdk_ecs::types::Service) -> String {
    service.task_definition().unwrap_or_default().to_owned()
}

impl From<&(schedules::Scheduled, String)> for PlannedTarget {
    fn from((scheduled, to): &(schedules::Scheduled, String)) -> Self {
        Self {
            name: scheduled.name.clone(),
            target: scheduled.target.clone(),
            from: scheduled.task_definition.clone(),
            to: to.clone(),
        }
    }
}

/// The migration a deploy would run, with the web service's network settings.
fn planned_migration(
    settings: &Settings,
    current: &Current,
    to: &BTreeMap<String, String>,
) -> Option<PlannedMigration> {
    (settings.migrate != MigrateOrder::Skip).then(|| {
        let web = &current.services[&settings.services[0]];
        let awsvpc = web
            .network_configuration()
            .and_then(|network| network.awsvpc_configuration());
        PlannedMigration {
            order: settings.migrate,
            family: to
                .get(&current.migration_family)
                .cloned()
                .unwrap_or_else(|| current.migration_family.clone()),
            container: settings.migration.container.clone(),
            command: settings.migration.command.clone(),
            cluster: settings.cluster.clone(),
            subnets: awsvpc.map(|v| v.subnets().to_vec()).unwrap_or_default(),
            security_groups: awsvpc
                .map(|v| v.security_groups().to_vec())
                .unwrap_or_default(),
        }
    })
}
