//! Register: one new task-definition revision per family this deploy touches, pinned to the
//! image by digest, or this deploy's own revision when an earlier run registered it.
//!
//! Everything is found and checked first ([`plan`]): on a rerun, this deploy's revision from its
//! record or by its deploy-id tag (the newest revisions, then the Resource Groups Tagging API),
//! else the base to make it from, the containers that take the image, the migration container.
//! Only then does anything change.

use std::collections::BTreeMap;

use aws_sdk_ecs::Client as Ecs;
use aws_sdk_ecs::types::{SortOrder, TaskDefinitionStatus};
use futures_util::future::try_join_all;

use crate::aws;
use crate::aws::arn;
use crate::aws::ecr::{Image, Repository};
use crate::current::Current;
use crate::error::Error;
use crate::release::Release;
use crate::report::Reporter;
use crate::settings::{MigrateOrder, Settings};
use crate::taskdef::{self, Changes, DEPLOY_ID_TAG, Described, GIT_SHA_TAG};
use crate::text::code_list;

/// Revisions looked at (newest first) when searching a family for this deploy's revision.
const REVISIONS_SEARCHED: i32 = 10;

/// What a family's next revision is made from.
#[derive(Debug, Clone)]
pub(crate) enum Base {
    /// A task definition in ECS (an ARN, or a family for its latest revision).
    Arn(String),
    /// A task-definition file from the repository.
    File(Described),
}

/// A family this deploy needs a revision of: this deploy's revision when it exists, else the
/// base to make it from and the containers that take the image.
pub enum FamilyPlan {
    Registered(Described),
    New {
        base: Described,
        containers: Vec<String>,
    },
}

impl FamilyPlan {
    /// This deploy's revision, or the one it will be made from: the same containers and platform.
    pub fn definition(&self) -> &Described {
        match self {
            Self::Registered(described)
            | Self::New {
                base: described, ..
            } => described,
        }
    }
}

/// A revision an earlier run of this deploy registered must still be ACTIVE: ECS refuses to run
/// a task of an INACTIVE one, and a scheduled target pointed at it fails every run.
fn check_active(revision: &Described, deploy_id: &str) -> Result<(), Error> {
    match revision.status() {
        Some("ACTIVE") | None => Ok(()),
        Some(status) => Err(Error::Mismatch {
            problem: format!(
                "revision `{}`, which deploy `{deploy_id}` registered, is {status} (deregistered since): ECS runs no task of it, and no service or scheduled target may be moved onto it",
                arn::short(&revision.arn)
            ),
            hint: "deploy again with `--new`: a new deploy id registers new revisions (the image in ECR is reused); nothing was changed".to_owned(),
        }),
    }
}

/// Where this deploy's own revisions may already be.
pub enum Registered<'a> {
    /// The first run of this deploy (no record, and the lock's journal does not list it):
    /// nothing is registered for it yet, so no search.
    Nothing,
    /// No record, but the lock's journal lists the deploy: a run took the lock and may have
    /// registered revisions before its record was written; each family is searched for by tag.
    Unrecorded,
    /// The deploy record's family → revision; a family it does not name is searched for by tag
    /// (an earlier run may have registered it and died before recording it).
    Recorded(&'a BTreeMap<String, String>),
}

/// What each family's next revision is made from: the revision its first service runs (or that
/// service's file), and the migration family's newest revision unless the migration is skipped.
pub(crate) fn bases(
    settings: &Settings,
    current: &Current,
    files: &BTreeMap<String, Described>,
) -> BTreeMap<String, Base> {
    let mut bases = BTreeMap::new();
    for (service, family) in &current.families {
        let base = match files.get(service) {
            Some(file) => Base::File(file.clone()),
            None => Base::Arn(
                current.services[service]
                    .task_definition()
                    .unwrap_or_default()
                    .to_owned(),
            ),
        };
        bases.entry(family.clone()).or_insert(base);
    }
    if settings.migrate != MigrateOrder::Skip {
        bases
            .entry(current.migration_family.clone())
            .or_insert_with(|| Base::Arn(current.migration_family.clone()));
    }
    bases
}

/// The bases in ECS, described side by side, by the ARN or family they are named by. Read
/// beside the state store, before it says whether this deploy registered anything: a first run
/// (the usual one) needs nothing else. A base that cannot be described is left out, and [`plan`]
/// describes it again and names the error.
pub(crate) async fn describe_bases(
    ecs: &Ecs,
    settings: &Settings,
    current: &Current,
    files: &BTreeMap<String, Described>,
) -> BTreeMap<String, Described> {
    let named: Vec<String> = bases(settings, current, files)
        .into_values()
        .filter_map(|base| match base {
            Base::Arn(arn) => Some(arn),
            Base::File(_) => None,
        })
        .collect();
    let described = named.iter().map(|arn| taskdef::describe(ecs, arn));
    named
        .iter()
        .cloned()
        .zip(futures_util::future::join_all(described).await)
        .filter_map(|(arn, described)| Some((arn, described.ok()?)))
        .collect()
}

/// Finds or plans each family's revision and checks the settings against it (our containers,
/// the migration container) while nothing is changed yet. `described`: bases read already
/// ([`describe_bases`]).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn plan(
    ecs: &Ecs,
    tagging: &aws_sdk_resourcegroupstagging::Client,
    settings: &Settings,
    release: &Release,
    current: &Current,
    files: &BTreeMap<String, Described>,
    registered: Registered<'_>,
    described: &BTreeMap<String, Described>,
) -> Result<BTreeMap<String, FamilyPlan>, Error> {
    let bases = bases(settings, current, files);
    // Families are looked up side by side: a deploy waits for the slowest, not for the sum.
    let registered = &registered;
    let lookups = bases.into_iter().map(|(family, base)| async move {
        let (found, newest) = match registered {
            // A first run reads only the base: in steady state a search would describe the
            // family's newest ten revisions on every deploy.
            Registered::Nothing => (None, Vec::new()),
            // Journaled, no record: a run may have registered before its record was written.
            Registered::Unrecorded => {
                find_revision(ecs, tagging, &family, &release.deploy_id).await?
            }
            // The deploy record names the revision an earlier run registered: no search needed.
            Registered::Recorded(recorded) => match recorded.get(&family) {
                Some(arn) => {
                    let described = taskdef::describe(ecs, arn).await?;
                    check_active(&described, &release.deploy_id)?;
                    return Ok((family, FamilyPlan::Registered(described)));
                }
                None => find_revision(ecs, tagging, &family, &release.deploy_id).await?,
            },
        };
        let plan = match found {
            Some(existing) => FamilyPlan::Registered(existing),
            None => {
                let base = match base {
                    // Usually among the revisions just read: the service's own, or the newest.
                    Base::Arn(arn) => match newest
                        .into_iter()
                        .find(|d| d.arn == arn || (arn == family && d.family() == family))
                    {
                        Some(found) => found,
                        None => match described.get(&arn) {
                            Some(read) => read.clone(),
                            None => taskdef::describe(ecs, &arn).await?,
                        },
                    },
                    Base::File(file) => file,
                };
                let containers = our_containers(settings, &base, &current.repository)?;
                FamilyPlan::New { base, containers }
            }
        };
        Ok::<_, Error>((family, plan))
    });
    let plans: BTreeMap<String, FamilyPlan> = try_join_all(lookups).await?.into_iter().collect();
    if let Some(plan) = plans.get(&current.migration_family) {
        taskdef::check_migration_container(plan.definition(), &settings.migration.container)?;
    }
    Ok(plans)
}

/// Whether every family's revision was registered by an earlier run of this deploy.
pub(crate) fn all_registered(plans: &BTreeMap<String, FamilyPlan>) -> bool {
    plans
        .values()
        .all(|plan| matches!(plan, FamilyPlan::Registered(_)))
}

/// Registers the planned revisions, pinned to the image; returns every family's revision.
pub(crate) async fn register(
    ecs: &Ecs,
    tagging: &aws_sdk_resourcegroupstagging::Client,
    release: &Release,
    image: &Image,
    settings: &Settings,
    plans: BTreeMap<String, FamilyPlan>,
    reporter: &dyn Reporter,
) -> Result<BTreeMap<String, Described>, Error> {
    let registrations = plans.into_iter().map(|(family, plan)| async move {
        let (base, containers) = match plan {
            FamilyPlan::Registered(existing) => return Ok::<_, Error>((family, existing)),
            FamilyPlan::New { base, containers } => (base, containers),
        };
        let tags = BTreeMap::from([
            (DEPLOY_ID_TAG.to_owned(), release.deploy_id.clone()),
            (GIT_SHA_TAG.to_owned(), release.commit.clone()),
        ]);
        let input = taskdef::next_revision(
            &base,
            &Changes {
                containers: &containers,
                image: &image.uri,
                set_environment: &settings.environment,
                remove_environment: &settings.remove_environment,
                set_secrets: &settings.secrets,
                tags,
            },
        );
        let registered = register_once(ecs, tagging, &family, &release.deploy_id, &input).await?;
        reporter.info(&format!(
            "registered `{}` from `{}`, new image in {}",
            arn::short(&registered.arn),
            arn::short(&base.arn),
            code_list(&containers)
        ));
        Ok((family, registered))
    });
    Ok(try_join_all(registrations).await?.into_iter().collect())
}

/// Attempts at registering one revision, the first included.
const REGISTER_ATTEMPTS: u32 = 4;

/// Registers one revision exactly once. `RegisterTaskDefinition` is not idempotent: a retry after
/// a lost answer would register a second revision. So the SDK does not retry it; berth does, and
/// before each retry looks for the revision by this deploy's tag: found, the first call landed.
async fn register_once(
    ecs: &Ecs,
    tagging: &aws_sdk_resourcegroupstagging::Client,
    family: &str,
    deploy_id: &str,
    input: &serde_json::Map<String, serde_json::Value>,
) -> Result<Described, Error> {
    let mut attempt = 1;
    loop {
        let error = match taskdef::register(ecs, input).await {
            Ok(registered) => return Ok(registered),
            Err(error) => error,
        };
        // Only a call that may not have reached ECS, or that ECS could not finish, is retried.
        let transient = aws::is_transient(&error);
        if !transient || attempt >= REGISTER_ATTEMPTS {
            return Err(error);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
        if let (Some(found), _) = find_revision(ecs, tagging, family, deploy_id).await? {
            return Ok(found);
        }
        attempt += 1;
    }
}

/// The containers that take our image: `containers` from berth.toml, else those whose image is in
/// our repository. Sidecars with other images are never touched.
fn our_containers(
    settings: &Settings,
    base: &Described,
    repository: &Repository,
) -> Result<Vec<String>, Error> {
    let available: Vec<String> = base
        .containers()
        .iter()
        .map(|c| {
            format!(
                "`{}` ({})",
                c.get("name").and_then(|v| v.as_str()).unwrap_or("?"),
                c.get("image").and_then(|v| v.as_str()).unwrap_or("?")
            )
        })
        .collect();
    let chosen = match &settings.containers {
        Some(names) => {
            if let Some(missing) = names.iter().find(|n| base.container(n).is_none()) {
                return Err(Error::Mismatch {
                    problem: format!(
                        "task definition `{}` has no container `{missing}`; it has {}",
                        arn::short(&base.arn),
                        available.join(", ")
                    ),
                    hint: "fix `containers` in berth.toml".to_owned(),
                });
            }
            names.clone()
        }
        None => taskdef::containers_in_repository(base, &repository.uri),
    };
    if chosen.is_empty() {
        return Err(Error::Mismatch {
            problem: format!(
                "no container of `{}` uses `{}`; it has {}",
                arn::short(&base.arn),
                repository.uri,
                available.join(", ")
            ),
            hint: "name the containers that take the image with `containers = [\"app\"]` in berth.toml".to_owned(),
        });
    }
    Ok(chosen)
}

/// This deploy's revision of `family`, if an earlier run registered it. The newest revisions are
/// read first (strongly consistent, and where a rerun's revision usually is); past them the
/// Resource Groups Tagging API finds the revision by its deploy-id tag, however old.
async fn find_revision(
    ecs: &Ecs,
    tagging: &aws_sdk_resourcegroupstagging::Client,
    family: &str,
    deploy_id: &str,
) -> Result<(Option<Described>, Vec<Described>), Error> {
    let listed = ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(TaskDefinitionStatus::Active)
        .sort(SortOrder::Desc)
        .max_results(REVISIONS_SEARCHED)
        .send()
        .await
        .map_err(|e| aws::failed(format!("listing revisions of `{family}`"), e))?;
    let mut arns: Vec<&str> = listed
        .task_definition_arns()
        .iter()
        .map(String::as_str)
        .filter(|arn| arn::family(arn) == family)
        .collect();
    arns.sort_by_key(|arn| std::cmp::Reverse(arn::revision(arn)));
    arns.truncate(REVISIONS_SEARCHED as usize);
    let newest = try_join_all(arns.iter().map(|arn| taskdef::describe(ecs, arn))).await?;
    if let Some(found) = newest
        .iter()
        .find(|d| d.tags.get(DEPLOY_ID_TAG).map(String::as_str) == Some(deploy_id))
    {
        return Ok((Some(found.clone()), newest));
    }
    if listed.next_token().is_none() && arns.len() < REVISIONS_SEARCHED as usize {
        return Ok((None, newest)); // every revision of the family was read
    }
    let tagged = tagging
        .get_resources()
        .resource_type_filters("ecs:task-definition")
        .tag_filters(
            aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                .key(DEPLOY_ID_TAG)
                .values(deploy_id)
                .build(),
        )
        .send()
        .await;
    let tagged = match tagged {
        Ok(tagged) => tagged,
        Err(error)
            if error.as_service_error().and_then(|e| e.meta().code())
                == Some("AccessDeniedException") =>
        {
            tracing::warn!(
                "cannot search revisions of `{family}` older than the newest {REVISIONS_SEARCHED} for this deploy \
                 (`tag:GetResources` denied): a rerun of an old deploy would register a new revision"
            );
            return Ok((None, newest));
        }
        Err(error) => {
            return Err(aws::failed(
                format!("searching older revisions of `{family}` for this deploy id"),
                error,
            ));
        }
    };
    let found = tagged
        .resource_tag_mapping_list()
        .iter()
        .filter_map(|mapping| mapping.resource_arn())
        .filter(|arn| arn::family(arn) == family)
        .max_by_key(|arn| arn::revision(arn));
    match found {
        Some(arn) => {
            let described = taskdef::describe(ecs, arn).await?;
            let active = described.status() == Some("ACTIVE");
            Ok((active.then_some(described), newest))
        }
        None => Ok((None, newest)),
    }
}
