//! What a deploy checks and reads before its first write. `berth deploy` and `berth plan` both
//! run it, in the same order, so a plan refuses exactly what a deploy would refuse before
//! touching anything; a plan then stops, where a deploy takes the lock and goes on.
//!
//! 1. [`local()`]: the checks that need no AWS and no Docker: the task-definition files, the
//!    release (commit, branch, deploy id), the Dockerfile and its build target, the secret build
//!    args and the engine's TLS certificates.
//! 2. [`current()`]: the services, the repository and the families, read from AWS.
//! 3. [`families()`]: each family's revision, found or planned and checked against the settings
//!    (on a rerun, the revisions its record names must still be ACTIVE), the platform the image
//!    is built for, and the image tag.
//!
//! [`in_aws()`] runs 2 and 3 as both commands do.

use std::collections::BTreeMap;

use aws_sdk_ecs::Client as Ecs;

use crate::aws;
use crate::current::{self, Current};
use crate::error::Error;
use crate::flags::DeployOptions;
use crate::release::Release;
use crate::settings::Settings;
use crate::state::{Store, Stored, record};
use crate::steps::image::{self, dockerfile::check_dockerfile};
use crate::steps::register::{self, FamilyPlan, Registered};
use crate::taskdef::{self, Described};

/// What the local checks found: the task-definition files and the release.
#[derive(Debug)]
pub struct Local {
    /// Service → its task-definition file, read and checked.
    pub files: BTreeMap<String, Described>,
    pub release: Release,
}

/// The task-definition files (their contents are an input of the deploy id), the release, the
/// Dockerfile with its build target, the secret build args and the engine's TLS certificates.
/// Nothing here reads AWS or Docker.
pub fn local(settings: &Settings, options: DeployOptions) -> Result<Local, Error> {
    let files: BTreeMap<String, Described> = settings
        .task_definitions
        .iter()
        .map(|(service, path)| {
            let file = taskdef::from_file(path, &settings.task_definition_vars)?;
            Ok((service.clone(), file))
        })
        .collect::<Result<_, Error>>()?;
    let inputs = files
        .values()
        .map(|d| serde_json::Value::Object(d.definition.clone()).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let context = &settings.build.context;
    if !context.is_dir() {
        return Err(Error::Mismatch {
            problem: format!(
                "`build.context` `{}` is not a folder",
                context.display()
            ),
            hint: "set `build.context` in berth.toml to the folder the image is built from (relative to berth.toml; default: its own folder)".to_owned(),
        });
    }
    let release = Release::discover(settings, options, &inputs)?;
    check_dockerfile(&settings.build.dockerfile, settings.build.target.as_deref())?;
    image::secret_args(&settings.build)?;
    crate::docker::check_tls()?;
    Ok(Local { files, release })
}

/// What the deploy starts from in AWS; an unknown region is named as such.
pub async fn current(
    ecs: &Ecs,
    ecr_client: &aws_sdk_ecr::Client,
    settings: &Settings,
    local: &Local,
) -> Result<Current, Error> {
    current::read(ecs, ecr_client, settings, &local.files)
        .await
        .map_err(|error| aws::blame_unknown_region(error, &settings.region))
}

/// The clients the preparation reads AWS with.
pub struct Readers<'a> {
    pub ecs: &'a Ecs,
    pub ecr: &'a aws_sdk_ecr::Client,
    pub tagging: &'a aws_sdk_resourcegroupstagging::Client,
}

/// [`current()`], then [`families()`]: on a rerun, the revisions the deploy's record names
/// (read from `store`, written nowhere) are checked to be there and ACTIVE.
pub async fn in_aws(
    aws: &Readers<'_>,
    store: Option<&Store>,
    settings: &Settings,
    (local, journaled): (&Local, bool),
) -> Result<(Current, Prepared), Error> {
    let deploy_id = &local.release.deploy_id;
    let earlier = async {
        match store {
            Some(store) => record::read_stored(store, deploy_id).await,
            None => Ok(None),
        }
    };
    let (earlier, current) = tokio::join!(earlier, current(aws.ecs, aws.ecr, settings, local));
    let (earlier, current) = (earlier?, current?);
    let read = (&current, earlier, &BTreeMap::new());
    let prepared = with_record(aws, settings, (local, journaled), read).await?;
    Ok((current, prepared))
}

/// [`families()`] on a rerun of the deploy whose record (`earlier`, read already) names its
/// revisions, which must still be there and ACTIVE; the record is kept in what comes back.
/// `journaled`: the lock's journal lists the deploy, so an earlier run took the lock for it and
/// may have registered revisions before its record was written: they are searched for.
/// `described`: the bases read already ([`register::describe_bases`]).
pub async fn with_record(
    aws: &Readers<'_>,
    settings: &Settings,
    (local, journaled): (&Local, bool),
    (current, earlier, described): (
        &Current,
        Option<Stored<record::DeployRecord>>,
        &BTreeMap<String, Described>,
    ),
) -> Result<Prepared, Error> {
    let registered = match &earlier {
        Some(record) => Registered::Recorded(&record.value.revisions),
        None if journaled => Registered::Unrecorded,
        None => Registered::Nothing,
    };
    let mut prepared = families(aws, settings, local, current, (registered, described)).await?;
    prepared.earlier = earlier;
    Ok(prepared)
}

/// Service → this deploy's revision, for the services whose family an earlier run registered
/// it in.
pub fn registered(current: &Current, prepared: &Prepared) -> BTreeMap<String, String> {
    current
        .families
        .iter()
        .filter_map(|(service, family)| match prepared.families.get(family)? {
            FamilyPlan::Registered(described) => Some((service.clone(), described.arn.clone())),
            FamilyPlan::New { .. } => None,
        })
        .collect()
}

/// Each family's revision, the platform and the image tag.
pub struct Prepared {
    /// Family → this deploy's revision when registered already, else the one it is made from.
    pub families: BTreeMap<String, FamilyPlan>,
    pub platform: String,
    pub tag: String,
    /// The image the first service runs now and that service: the build's first cache source.
    /// `None` when that service's revision comes from a file (a placeholder, not what runs) or
    /// runs no image of our repository.
    pub running: Option<(String, String)>,
    /// The record an earlier run of this deploy wrote, as the preparation read it.
    pub earlier: Option<Stored<record::DeployRecord>>,
    /// What ECR held for `tag` when it was looked up beside taking the lock (`None` inside: not
    /// there); `None`: not looked up yet.
    pub in_ecr: Option<Option<String>>,
}

/// Finds or plans each family's revision (`registered` says where this deploy's own may be),
/// and from them the platform and the image tag.
pub async fn families(
    aws: &Readers<'_>,
    settings: &Settings,
    local: &Local,
    current: &Current,
    (registered, described): (Registered<'_>, &BTreeMap<String, Described>),
) -> Result<Prepared, Error> {
    let families = register::plan(
        aws.ecs,
        aws.tagging,
        settings,
        &local.release,
        current,
        &local.files,
        registered,
        described,
    )
    .await?;
    let definitions: Vec<&Described> = families.values().map(FamilyPlan::definition).collect();
    let platform = taskdef::build_platform(settings.build.platform.as_deref(), &definitions)?;
    let tag = local.release.image_tag(&settings.build, &platform);
    let running = current.families.first().and_then(|(service, family)| {
        if local.files.contains_key(service) {
            return None;
        }
        let base = families.get(family)?.definition();
        let container = taskdef::containers_in_repository(base, &current.repository.uri)
            .into_iter()
            .next()?;
        let image = base.container(&container)?.get("image")?.as_str()?;
        Some((image.to_owned(), service.clone()))
    });
    Ok(Prepared {
        families,
        platform,
        tag,
        running,
        earlier: None,
        in_ecr: None,
    })
}
