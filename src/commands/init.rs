//! `berth init`: a commented `berth.toml` for an app that already runs on ECS, read from its
//! services and their task definitions. It writes one new file and changes nothing in AWS.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_sdk_ecs::types::Service;
use serde::Serialize;

use crate::aws::arn;
use crate::aws::services;
use crate::aws::{self, failed};
use crate::error::Error;
use crate::flags::Flags;
use crate::report::Reporter;
use crate::steps::schedules;
use crate::taskdef;

/// What `berth init` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub path: PathBuf,
    pub repository: String,
    pub containers: Vec<String>,
    /// The scheduled targets found in the cluster that run one of the services' families.
    pub schedules: Vec<String>,
}

/// One container of a service's task definition.
struct Container {
    service: String,
    family: String,
    name: String,
    image: String,
}

pub async fn init(flags: &Flags, reporter: &dyn Reporter) -> Result<Written, Error> {
    let path = new_path(flags)?;
    let init = &flags.init;
    let env = flags.env.clone().unwrap_or_else(|| "stg".to_owned());
    let region = flags
        .region
        .clone()
        .or_else(|| flags.aws_region.clone().map(|(_, region)| region))
        .ok_or_else(|| {
            usage(
                "no region to read the services in".to_owned(),
                "pass `--region`, or set `AWS_REGION` (or `AWS_DEFAULT_REGION`)",
            )
        })?;
    let config = aws::sdk_config_for(&region, flags.profile.as_deref(), 3600).await?;
    let ecs = aws::ecs_client(&config);
    let ecr = aws::ecr_client(&config);
    reporter.info(&format!(
        "reading {} in cluster `{}` ({region})",
        crate::text::code_list(&init.services),
        init.cluster
    ));
    let found = services::describe(&ecs, &init.cluster, &init.services)
        .await
        .map_err(|error| aws::blame_unknown_region(error, &region))?;
    let containers = read_containers(&ecs, &init.services, &found).await?;
    let repositories = repository_uris(&ecr).await?;
    let Some((repository, uri)) = app_repository(&repositories, &containers) else {
        return Err(usage(
            format!(
                "no container of {} runs an image of this account's ECR repositories in {region}",
                crate::text::code_list(&init.services)
            ),
            "berth deploys images it pushes to ECR: create the repository, or check `--region` and the services",
        ));
    };
    let (ours, others) = split(&containers, uri);
    let migration_family = containers
        .iter()
        .find(|c| c.service == init.services[0])
        .map(|c| c.family.clone())
        .unwrap_or_default();
    let families: Vec<&str> = containers.iter().map(|c| c.family.as_str()).collect();
    let cluster_arn = schedules::cluster_arn(found.values(), &init.cluster);
    let scheduled = scheduled(&config, cluster_arn, &families, reporter).await;
    let text = berth_toml(&Draft {
        env: &env,
        region: &region,
        cluster: &init.cluster,
        services: &init.services,
        repository,
        containers: &ours,
        everywhere: everywhere(&init.services, &ours, &containers),
        others: &others,
        migration_family: &migration_family,
        scheduled: &scheduled,
    });
    write_new(&path, &text)?;
    Ok(Written {
        path,
        repository: repository.to_owned(),
        containers: ours,
        schedules: scheduled,
    })
}

/// A usage error: `berth init` stops before writing anything.
fn usage(problem: String, hint: &str) -> Error {
    Error::Mismatch {
        problem,
        hint: hint.to_owned(),
    }
}

/// The path to write, refused when a file is there already.
fn new_path(flags: &Flags) -> Result<PathBuf, Error> {
    let path = flags
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("berth.toml"));
    if path.exists() {
        return Err(usage(
            format!(
                "`{}` exists; `berth init` never overwrites it",
                path.display()
            ),
            "move it away first, or pass `--config PATH` to write another file",
        ));
    }
    Ok(path)
}

/// Every container of each service's task definition, services in the order given.
async fn read_containers(
    ecs: &aws_sdk_ecs::Client,
    services: &[String],
    found: &BTreeMap<String, Service>,
) -> Result<Vec<Container>, Error> {
    let mut containers = Vec::new();
    for service in services {
        let revision = found[service].task_definition().unwrap_or_default();
        let described = taskdef::describe(ecs, revision).await?;
        for container in described.definition["containerDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            containers.push(Container {
                service: service.clone(),
                family: described.family().to_owned(),
                name: container["name"].as_str().unwrap_or_default().to_owned(),
                image: container["image"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(containers)
}

/// The app's repository and its URI: the ECR repository most of the containers run an image of.
fn app_repository<'a>(
    repositories: &'a BTreeMap<String, String>,
    containers: &[Container],
) -> Option<(&'a str, &'a str)> {
    let mut runs: BTreeMap<&str, usize> = BTreeMap::new();
    for container in containers {
        if let Some((name, _)) = repositories
            .iter()
            .find(|(_, uri)| of_repository(&container.image, uri))
        {
            *runs.entry(name.as_str()).or_default() += 1;
        }
    }
    let (repository, _) = runs.into_iter().max_by_key(|(_, count)| *count)?;
    Some((repository, repositories[repository].as_str()))
}

/// The names of the containers that run the repository at `uri` (each once), and the containers
/// that run something else.
fn split<'a>(containers: &'a [Container], uri: &str) -> (Vec<String>, Vec<&'a Container>) {
    let mut ours: Vec<String> = Vec::new();
    for container in containers.iter().filter(|c| of_repository(&c.image, uri)) {
        if !ours.contains(&container.name) {
            ours.push(container.name.clone());
        }
    }
    let others = containers
        .iter()
        .filter(|c| !of_repository(&c.image, uri))
        .collect();
    (ours, others)
}

/// Whether every service's family has all of `ours`. `containers` must name containers every
/// family has; when they differ (web's `app`, devops' `worker`), berth's default (every container
/// of the repository) fits each.
fn everywhere(services: &[String], ours: &[String], containers: &[Container]) -> bool {
    services.iter().all(|service| {
        ours.iter().all(|name| {
            containers
                .iter()
                .any(|c| &c.service == service && &c.name == name)
        })
    })
}

/// The scheduled targets in the cluster that run one of `families`, one line each; a warning and
/// none when they cannot be looked for.
async fn scheduled(
    config: &aws_config::SdkConfig,
    cluster_arn: &str,
    families: &[&str],
    reporter: &dyn Reporter,
) -> Vec<String> {
    let clients = schedules::Clients::new(config);
    match schedules::find(&clients, Some(cluster_arn), None, &[]).await {
        Ok((found, _)) => found
            .into_iter()
            .filter(|s| families.contains(&arn::family(&s.task_definition)))
            .map(|s| {
                let target = if s.target.is_empty() {
                    String::new()
                } else {
                    format!(" (target `{}`)", s.target)
                };
                format!(
                    "{}{target} runs `{}`",
                    s.name,
                    arn::short(&s.task_definition)
                )
            })
            .collect(),
        Err(error) => {
            reporter.info(&format!(
                "warning: scheduled tasks were not looked for: {}",
                crate::text::with_causes(&error)
            ));
            Vec::new()
        }
    }
}

/// Writes `text` to `path`, a file that must not exist yet, once it parses: what berth writes,
/// berth reads.
fn write_new(path: &Path, text: &str) -> Result<(), Error> {
    if let Err(error) = toml::from_str::<toml::Table>(text) {
        return Err(usage(
            format!("the berth.toml berth would write does not parse: {error}"),
            "this is a bug; please report it with the command you ran",
        ));
    }
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|error| {
            usage(
                format!("cannot write `{}`: {error}", path.display()),
                "pass `--config PATH` to write it elsewhere",
            )
        })?;
    file.write_all(text.as_bytes()).map_err(|error| {
        usage(
            format!("cannot write `{}`: {error}", path.display()),
            "check the folder's permissions",
        )
    })
}

/// Repository name → its URI, for every ECR repository of the account in the region.
async fn repository_uris(ecr: &aws_sdk_ecr::Client) -> Result<BTreeMap<String, String>, Error> {
    let mut pages = ecr.describe_repositories().into_paginator().send();
    let mut uris = BTreeMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed("listing the ECR repositories", e))?;
        for repository in page.repositories() {
            if let (Some(name), Some(uri)) =
                (repository.repository_name(), repository.repository_uri())
            {
                uris.insert(name.to_owned(), uri.to_owned());
            }
        }
    }
    Ok(uris)
}

/// Whether `image` (`uri:tag` or `uri@sha256:…`) is of the repository at `uri`.
fn of_repository(image: &str, uri: &str) -> bool {
    image
        .strip_prefix(uri)
        .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
}

/// What the file is written from.
struct Draft<'a> {
    env: &'a str,
    region: &'a str,
    cluster: &'a str,
    services: &'a [String],
    repository: &'a str,
    containers: &'a [String],
    /// Every service's family has all of `containers`.
    everywhere: bool,
    others: &'a [&'a Container],
    migration_family: &'a str,
    scheduled: &'a [String],
}

/// The file: every value TOML-quoted, every choice explained.
fn berth_toml(draft: &Draft<'_>) -> String {
    let sections = [
        header(draft),
        image(draft),
        migration(draft),
        environment(draft),
    ];
    sections
        .join(&String::new())
        .into_iter()
        .map(|line| line + "\n")
        .collect()
}

/// `text` as a TOML string.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// `items` as a TOML list of strings, on one line.
fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| quote(item)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Where the file comes from and how it is read.
fn header(draft: &Draft<'_>) -> Vec<String> {
    vec![
        format!(
            "# berth settings, written by `berth init` from {} in cluster `{}`.",
            crate::text::code_list(draft.services),
            draft.cluster
        ),
        "# Top-level keys are defaults for every environment; an `[env.NAME]` table overrides"
            .to_owned(),
        "# them. docs/configuration.md lists every key.".to_owned(),
    ]
}

/// The repository and the containers that take its image; the others, commented, keep theirs.
fn image(draft: &Draft<'_>) -> Vec<String> {
    let containers = if draft.everywhere {
        format!("containers = {}", list(draft.containers))
    } else {
        format!(
            "# Unset: every container running this repository's image, here {} (not every service has all of them).",
            crate::text::code_list(draft.containers)
        )
    };
    let mut lines = vec![
        "# The ECR repository berth pushes the app's image to.".to_owned(),
        format!("repository = {}", quote(draft.repository)),
        "# The containers that take each new image; every other container keeps its own."
            .to_owned(),
        containers,
    ];
    lines.extend(draft.others.iter().map(|other| {
        format!(
            "#   `{}` of `{}` runs `{}` and keeps it",
            other.name, other.service, other.image
        )
    }));
    lines
}

/// The `[migration]` table: the first service's family runs `bin/rails db:migrate`.
fn migration(draft: &Draft<'_>) -> Vec<String> {
    vec![
        "[migration]".to_owned(),
        format!(
            "# A one-off task of `{}`'s family (the first service) runs this command in the container",
            draft.services[0]
        ),
        "# below, with the service's network settings, after each rollout (`migrate = \"before\"`"
            .to_owned(),
        "# runs it first, `\"skip\"` never).".to_owned(),
        format!(
            "# family = {}   # the default: the first service's family",
            quote(draft.migration_family)
        ),
        format!(
            "container = {}",
            quote(draft.containers.first().map_or("app", String::as_str))
        ),
        format!(
            "command = {}",
            list(&["bin/rails".to_owned(), "db:migrate".to_owned()])
        ),
    ]
}

/// The `[env.NAME]` table: where the services run, the branch, and the scheduled tasks found.
fn environment(draft: &Draft<'_>) -> Vec<String> {
    // A bare TOML key when it can be one (`stg`), quoted otherwise.
    let bare = draft
        .env
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let name = if bare {
        draft.env.to_owned()
    } else {
        quote(draft.env)
    };
    let branch = if draft.env == "prd" {
        "master"
    } else {
        "develop"
    };
    let mut lines = vec![
        format!("[env.{name}]"),
        format!("region = {}", quote(draft.region)),
        format!("cluster = {}", quote(draft.cluster)),
        "# In order; the first is the web service.".to_owned(),
        format!("services = {}", list(draft.services)),
        "# The branch this environment deploys from; a deploy from another is refused.".to_owned(),
        format!("# branch = {}", quote(branch)),
    ];
    if draft.scheduled.is_empty() {
        lines.push("# No scheduled task in the cluster runs these families.".to_owned());
    } else {
        lines.push("# Scheduled tasks that follow each deploy (found by default; `schedules = []` stops it):".to_owned());
        lines.extend(draft.scheduled.iter().map(|s| format!("#   {s}")));
    }
    lines
}
