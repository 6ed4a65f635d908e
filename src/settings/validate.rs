//! Turns the merged layer into [`Settings`], checking every value. Each error names the key, the
//! file and, when the value came from the file, its line and column.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::check::Check;
use super::names::{is_valid_repository_name, looks_like_region, tidy};
use super::raw::RawLayer;
use super::{MigrateOrder, OnFailure, Settings, Source};
use crate::error::ConfigError;
use crate::flags::{Flags, Migrate};

pub const DEFAULT_CONTAINER: &str = "app";
pub const DEFAULT_MIGRATION_COMMAND: [&str; 2] = ["bin/rails", "db:migrate"];
pub const DEFAULT_ROLLOUT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_MIGRATION_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// CircleCI kills a step after 10 minutes without output; stay far below.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// Long enough to ride out a slow S3 call or a short pause of the machine; short enough that a
/// rerun after a crash waits little.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Renewal happens three times a lease: shorter leases would leave no room for a slow renewal.
pub(super) const MIN_LEASE: Duration = Duration::from_secs(3);

pub(super) fn validate(
    layer: RawLayer,
    source: &Source<'_>,
    config: &Path,
    env: &str,
    flags: &Flags,
) -> Result<Settings, ConfigError> {
    let check = Check { source, env };

    let repository = check.required(layer.repository, "repository", "the ECR repository name")?;
    if !is_valid_repository_name(repository.get_ref()) {
        return Err(check.invalid(
            "repository",
            Some(repository.span()),
            format!("is `{}`, not a valid ECR repository name", repository.get_ref()),
            "use 2 to 256 characters: lowercase letters, digits and `.`, `_`, `-` between them, `/` between path parts",
        ));
    }

    let region = match (&flags.region, layer.region, &flags.aws_region) {
        (Some(region), _, _) => region.clone(),
        (None, Some(region), _) => check.non_empty(region, "region")?,
        (None, None, Some(region)) => region.clone(),
        (None, None, None) => {
            return Err(ConfigError::Missing {
                file: source.file.clone(),
                key: format!("env.{env}.region"),
                hint: format!(
                    "set `region` in `[env.{env}]` or at the top level of berth.toml, pass `--region`, or set `{}`",
                    crate::env_vars::AWS_REGION
                ),
            });
        }
    };
    if region.is_empty() {
        return Err(check.invalid(
            "region",
            None,
            "is empty",
            "pass a region such as `us-east-1`",
        ));
    }
    if !looks_like_region(&region) {
        return Err(check.invalid(
            "region",
            None,
            format!("is `{region}`, which is not an AWS region name"),
            "use a region such as `us-east-1` or `eu-west-2` (`aws ec2 describe-regions` lists them)",
        ));
    }

    let cluster = check.required(layer.cluster, "cluster", "the ECS cluster name")?;
    let cluster = check.non_empty(cluster, "cluster")?;
    let services = check.required(layer.services, "services", "the ECS services to update")?;
    let services = check.name_list(services, "services")?;
    let containers = layer
        .containers
        .map(|containers| check.name_list(containers, "containers"))
        .transpose()?;
    let migrate = layer
        .migrate
        .map(|migrate| check.migrate_order(migrate))
        .transpose()?
        .unwrap_or(MigrateOrder::After);
    let migrate = match flags.overrides.migrate {
        Some(Migrate::Before) => MigrateOrder::Before,
        Some(Migrate::After) => MigrateOrder::After,
        Some(Migrate::Skip) => MigrateOrder::Skip,
        None => migrate,
    };

    let config_folder = config.parent().unwrap_or(Path::new(""));
    let build = check.build(layer.build.unwrap_or_default(), config_folder)?;
    let migration = check.migration(layer.migration.unwrap_or_default(), containers.as_deref())?;
    let mut timeouts = check.timeouts(layer.timeouts.unwrap_or_default())?;
    timeouts.rollout = flags.overrides.rollout_timeout.unwrap_or(timeouts.rollout);
    timeouts.migration = flags
        .overrides
        .migration_timeout
        .unwrap_or(timeouts.migration);
    let state = check.state(layer.state.unwrap_or_default(), repository.get_ref())?;
    let on_failure = layer
        .on_failure
        .map(|value| check.on_failure(value))
        .transpose()?
        .unwrap_or(OnFailure::Rollback);

    let environment = layer.environment.unwrap_or_default();
    let remove_environment = layer
        .remove_environment
        .map(|names| check.name_list(names, "remove_environment"))
        .transpose()?
        .unwrap_or_default();
    if let Some(name) = remove_environment
        .iter()
        .find(|name| environment.contains_key(*name))
    {
        return Err(check.invalid(
            "remove_environment",
            None,
            format!("removes `{name}`, which `environment` sets"),
            "keep the variable in only one of `environment` and `remove_environment`",
        ));
    }
    let mut task_definitions = BTreeMap::new();
    for (service, file) in layer.task_definitions.unwrap_or_default() {
        if !services.contains(&service) {
            return Err(check.invalid(
                &format!("task_definitions.{service}"),
                Some(file.span()),
                format!("names `{service}`, which is not in `services`"),
                "key each file by the service it is for, one of `services`",
            ));
        }
        let file = check.non_empty(file, &format!("task_definitions.{service}"))?;
        task_definitions.insert(service, tidy(&config_folder.join(file)));
    }
    let task_definition_vars = match layer.task_definition_vars {
        None => Vec::new(),
        Some(vars) => {
            let span = vars.span();
            let vars = check.name_list(vars, "task_definition_vars")?;
            if let Some(name) = vars.iter().find(|name| name.starts_with("AWS_")) {
                return Err(check.invalid(
                    "task_definition_vars",
                    Some(span),
                    format!("lists `{name}`: `AWS_*` variables are never put in task definitions"),
                    "give the task an IAM role (`taskRoleArn`) instead of credentials, and name other values without the `AWS_` prefix",
                ));
            }
            vars
        }
    };
    // `schedules = []` turns the scheduled targets off; a list names them; unset finds them.
    let schedules = match layer.schedules {
        None => None,
        Some(list) if list.get_ref().is_empty() => Some(Vec::new()),
        Some(list) => {
            let span = list.span();
            let names = check.name_list(list, "schedules")?;
            if let Some(bad) = names
                .iter()
                .find(|name| super::parse_listed(name).is_none())
            {
                return Err(check.invalid(
                    "schedules",
                    Some(span),
                    format!("lists `{bad}`, which names no rule or schedule"),
                    "write `rule/NAME` (the default event bus), `rule/BUS/NAME` or `schedule/GROUP/NAME`; `schedules = []` moves none",
                ));
            }
            Some(names)
        }
    };
    let keep_revisions = match layer.keep_revisions {
        None => None,
        Some(keep) => match usize::try_from(*keep.get_ref()) {
            Ok(keep) if keep >= 1 => Some(keep),
            _ => {
                return Err(check.invalid(
                    "keep_revisions",
                    Some(keep.span()),
                    format!("is {}, not a number of revisions to keep", keep.get_ref()),
                    "keep at least 1 (berth never deregisters a revision in use either), or remove the key to keep them all",
                ));
            }
        },
    };
    let mut secrets = BTreeMap::new();
    for (name, value_from) in layer.secrets.unwrap_or_default() {
        if environment.contains_key(&name) {
            return Err(check.invalid(
                &format!("secrets.{name}"),
                Some(value_from.span()),
                "is also set in `environment`",
                "a variable comes either from `environment` or from `secrets`, not both",
            ));
        }
        let value_from = check.non_empty(value_from, &format!("secrets.{name}"))?;
        secrets.insert(name, value_from);
    }

    Ok(Settings {
        config: config.to_owned(),
        env: env.to_owned(),
        branch: layer.branch,
        region,
        profile: flags.profile.clone(),
        cluster,
        services,
        repository: repository.into_inner(),
        create_repository: layer.create_repository.unwrap_or(false),
        env_tag: layer.env_tag.map(|tag| check.image_tag(tag)).transpose()?,
        containers,
        migrate,
        build,
        migration,
        timeouts,
        state,
        on_failure,
        environment,
        remove_environment,
        secrets,
        task_definitions,
        task_definition_vars,
        schedules,
        keep_revisions,
    })
}
