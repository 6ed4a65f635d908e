//! Turns the merged layer into [`Settings`], checking every value. Each error names the key, the
//! file and, when the value came from the file, its line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;
use toml::Spanned;

use super::check::Check;
use super::names::{is_valid_repository_name, looks_like_region, tidy};
use super::raw::RawLayer;
use super::{MigrateOrder, OnCancel, OnFailure, Settings, Source, Upstream};
use crate::error::ConfigError;
use crate::flags::{Flags, Migrate};

pub const DEFAULT_CONTAINER: &str = "app";
pub const DEFAULT_MIGRATION_COMMAND: [&str; 2] = ["bin/rails", "db:migrate"];
pub const DEFAULT_ROLLOUT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_MIGRATION_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a hook may run (`hooks.timeout`).
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// CircleCI kills a step after 10 minutes without output; stay far below.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// One look a second: a finish is noticed half a second later on average.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
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
    let repository = check.repository(layer.repository)?;
    let region = check.region(layer.region, flags)?;
    let cluster = check.required(layer.cluster, "cluster", "the ECS cluster name")?;
    let cluster = check.non_empty(cluster, "cluster")?;
    let services = check.required(layer.services, "services", "the ECS services to update")?;
    let services = check.name_list(services, "services")?;
    let containers = layer
        .containers
        .map(|containers| check.name_list(containers, "containers"))
        .transpose()?;
    let migrate = check.migrate(layer.migrate, flags)?;

    let config_folder = config.parent().unwrap_or(Path::new(""));
    let build = check.build(layer.build.unwrap_or_default(), config_folder)?;
    let migration = check.migration(layer.migration.unwrap_or_default(), containers.as_deref())?;
    let mut timeouts = check.timeouts(layer.timeouts.unwrap_or_default())?;
    let overrides = flags.overrides;
    timeouts.rollout = overrides.rollout_timeout.unwrap_or(timeouts.rollout);
    timeouts.migration = overrides.migration_timeout.unwrap_or(timeouts.migration);
    let state = check.state(layer.state.unwrap_or_default(), repository.get_ref())?;
    let on_failure = layer
        .on_failure
        .map(|value| check.on_failure(value))
        .transpose()?
        .unwrap_or(OnFailure::Rollback);
    let on_cancel = layer
        .on_cancel
        .map(|value| check.on_cancel(value))
        .transpose()?
        .unwrap_or(OnCancel::Leave);
    let (environment, remove_environment) =
        check.environment(layer.environment, layer.remove_environment)?;
    let task_definitions =
        check.task_definitions(layer.task_definitions, &services, config_folder)?;
    let task_definition_vars = check.task_definition_vars(layer.task_definition_vars)?;
    let schedules = check.schedules(layer.schedules)?;
    let keep_revisions = check.keep_revisions(layer.keep_revisions)?;
    let secrets = check.secrets(layer.secrets, &environment)?;

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
        on_cancel,
        environment,
        remove_environment,
        secrets,
        task_definitions,
        task_definition_vars,
        schedules,
        keep_revisions,
        requires: None,
        promotion: Some(check.promotion(layer.promotion)?),
        account: check.account(layer.account)?,
        hooks: check.hooks(layer.hooks.unwrap_or_default())?,
    })
}

/// `requires = "stg"`: another environment of the file, where its records are. `environments`
/// holds every environment but `settings.env`'s own, and `defined` names them all.
pub(super) fn upstream(
    name: Spanned<String>,
    base: RawLayer<BTreeMap<String, RawLayer>>,
    (environments, defined): (&BTreeMap<String, RawLayer>, &[String]),
    source: &Source<'_>,
    settings: &Settings,
) -> Result<Upstream, ConfigError> {
    let check = Check {
        source,
        env: &settings.env,
    };
    let span = Some(name.span());
    let env = name.into_inner();
    let Some(layer) = environments.get(&env) else {
        let problem = if env == settings.env {
            format!("is `{env}`, the environment itself")
        } else {
            format!("is `{env}`, which is not an environment of this file")
        };
        return Err(check.invalid(
            "requires",
            span,
            problem,
            format!(
                "name the environment whose successful deploy an image needs first, one of {}",
                crate::text::code_list(defined.iter().filter(|d| **d != settings.env))
            ),
        ));
    };
    let merged = base.overlay(layer.clone());
    let upstream = Check { source, env: &env };
    let repository = upstream.repository(merged.repository)?;
    let state = upstream.state(merged.state.unwrap_or_default(), repository.get_ref())?;
    let account = upstream.account(merged.account)?;
    let region = match merged.region {
        Some(region) if looks_like_region(region.get_ref()) => region.into_inner(),
        Some(region) => {
            return Err(upstream.invalid(
                "region",
                Some(region.span()),
                format!("is `{}`, not an AWS region", region.get_ref()),
                "use a region such as `us-east-1`",
            ));
        }
        None => settings.region.clone(),
    };
    Ok(Upstream {
        env,
        region,
        state,
        account,
    })
}

impl Check<'_> {
    /// `--migrate`, else berth.toml's `migrate` (checked either way), else after the rollout.
    fn migrate(
        &self,
        migrate: Option<Spanned<String>>,
        flags: &Flags,
    ) -> Result<MigrateOrder, ConfigError> {
        let migrate = migrate
            .map(|migrate| self.migrate_order(migrate))
            .transpose()?
            .unwrap_or(MigrateOrder::After);
        Ok(match flags.overrides.migrate {
            Some(Migrate::Before) => MigrateOrder::Before,
            Some(Migrate::After) => MigrateOrder::After,
            Some(Migrate::Skip) => MigrateOrder::Skip,
            None => migrate,
        })
    }

    fn repository(
        &self,
        repository: Option<Spanned<String>>,
    ) -> Result<Spanned<String>, ConfigError> {
        let repository = self.required(repository, "repository", "the ECR repository name")?;
        if !is_valid_repository_name(repository.get_ref()) {
            return Err(self.invalid(
                "repository",
                Some(repository.span()),
                format!("is `{}`, not a valid ECR repository name", repository.get_ref()),
                "use 2 to 256 characters: lowercase letters, digits and `.`, `_`, `-` between them, `/` between path parts",
            ));
        }
        Ok(repository)
    }

    /// `--region`, else berth.toml's, else `AWS_REGION`, else `AWS_DEFAULT_REGION`; a bad one is blamed on where it came
    /// from.
    fn region(
        &self,
        region: Option<Spanned<String>>,
        flags: &Flags,
    ) -> Result<String, ConfigError> {
        let env = self.env;
        let (region, place, key) = match (&flags.region, region, &flags.aws_region) {
            (Some(region), _, _) => (region.clone(), from_outside("command line"), "--region"),
            (None, Some(region), _) => {
                let place = self.source.place(Some(region.span()));
                (self.non_empty(region, "region")?, place, "region")
            }
            (None, None, Some((name, region))) => {
                (region.clone(), from_outside("environment"), *name)
            }
            (None, None, None) => {
                return Err(ConfigError::Missing {
                    file: self.source.file.clone(),
                    key: format!("env.{env}.region"),
                    hint: format!(
                        "set `region` in `[env.{env}]` or at the top level of berth.toml, pass `--region`, or set `{}` (or `{}`)",
                        crate::env_vars::AWS_REGION,
                        crate::env_vars::AWS_DEFAULT_REGION
                    ),
                });
            }
        };
        let invalid = |problem: String, hint: &str| ConfigError::Invalid {
            place: place.clone(),
            key: key.to_owned(),
            problem,
            hint: hint.to_owned(),
        };
        if region.is_empty() {
            return Err(invalid(
                "is empty".to_owned(),
                "pass a region such as `us-east-1`",
            ));
        }
        if !looks_like_region(&region) {
            return Err(invalid(
                format!("is `{region}`, which is not an AWS region name"),
                "use a region such as `us-east-1` or `eu-west-2` (`aws ec2 describe-regions` lists them)",
            ));
        }
        Ok(region)
    }

    /// `environment` and `remove_environment`: a variable in one of them only.
    fn environment(
        &self,
        environment: Option<BTreeMap<String, String>>,
        remove: Option<Spanned<Vec<String>>>,
    ) -> Result<(BTreeMap<String, String>, Vec<String>), ConfigError> {
        let environment = environment.unwrap_or_default();
        let remove = remove
            .map(|names| self.name_list(names, "remove_environment"))
            .transpose()?
            .unwrap_or_default();
        if let Some(name) = remove.iter().find(|name| environment.contains_key(*name)) {
            return Err(self.invalid(
                "remove_environment",
                None,
                format!("removes `{name}`, which `environment` sets"),
                "keep the variable in only one of `environment` and `remove_environment`",
            ));
        }
        Ok((environment, remove))
    }

    /// `secrets`: variable → `valueFrom`, none of them also in `environment`.
    fn secrets(
        &self,
        secrets: Option<BTreeMap<String, Spanned<String>>>,
        environment: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut checked = BTreeMap::new();
        for (name, value_from) in secrets.unwrap_or_default() {
            if environment.contains_key(&name) {
                return Err(self.invalid(
                    &format!("secrets.{name}"),
                    Some(value_from.span()),
                    "is also set in `environment`",
                    "a variable comes either from `environment` or from `secrets`, not both",
                ));
            }
            let value_from = self.non_empty(value_from, &format!("secrets.{name}"))?;
            checked.insert(name, value_from);
        }
        Ok(checked)
    }

    /// Service → task-definition file, each keyed by one of `services`, relative to berth.toml.
    fn task_definitions(
        &self,
        files: Option<BTreeMap<String, Spanned<String>>>,
        services: &[String],
        config_folder: &Path,
    ) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
        let mut task_definitions = BTreeMap::new();
        for (service, file) in files.unwrap_or_default() {
            if !services.contains(&service) {
                return Err(self.invalid(
                    &format!("task_definitions.{service}"),
                    Some(file.span()),
                    format!("names `{service}`, which is not in `services`"),
                    "key each file by the service it is for, one of `services`",
                ));
            }
            let file = self.non_empty(file, &format!("task_definitions.{service}"))?;
            task_definitions.insert(service, tidy(&config_folder.join(file)));
        }
        Ok(task_definitions)
    }

    fn task_definition_vars(
        &self,
        vars: Option<Spanned<Vec<String>>>,
    ) -> Result<Vec<String>, ConfigError> {
        // `[]`, the documented default, is the same as leaving the key out.
        let Some(vars) = vars.filter(|vars| !vars.get_ref().is_empty()) else {
            return Ok(Vec::new());
        };
        let span = vars.span();
        let vars = self.name_list(vars, "task_definition_vars")?;
        if let Some(name) = vars.iter().find(|name| name.starts_with("AWS_")) {
            return Err(self.invalid(
                "task_definition_vars",
                Some(span),
                format!("lists `{name}`: `AWS_*` variables are never put in task definitions"),
                "give the task an IAM role (`taskRoleArn`) instead of credentials, and name other values without the `AWS_` prefix",
            ));
        }
        Ok(vars)
    }

    /// `schedules = []` turns the scheduled targets off; a list names them; unset finds them.
    fn schedules(
        &self,
        list: Option<Spanned<Vec<String>>>,
    ) -> Result<Option<Vec<String>>, ConfigError> {
        let list = match list {
            None => return Ok(None),
            Some(list) if list.get_ref().is_empty() => return Ok(Some(Vec::new())),
            Some(list) => list,
        };
        let span = list.span();
        let names = self.name_list(list, "schedules")?;
        if let Some(bad) = names
            .iter()
            .find(|name| super::parse_listed(name).is_none())
        {
            return Err(self.invalid(
                "schedules",
                Some(span),
                format!("lists `{bad}`, which names no rule or schedule"),
                "write `rule/NAME` (the default event bus), `rule/BUS/NAME` or `schedule/GROUP/NAME`; `schedules = []` moves none",
            ));
        }
        Ok(Some(names))
    }

    fn keep_revisions(&self, keep: Option<Spanned<i64>>) -> Result<Option<usize>, ConfigError> {
        let Some(keep) = keep else {
            return Ok(None);
        };
        match usize::try_from(*keep.get_ref()) {
            Ok(count) if count >= 1 => Ok(Some(count)),
            _ => Err(self.invalid(
                "keep_revisions",
                Some(keep.span()),
                format!("is {}, not a number of revisions to keep", keep.get_ref()),
                "keep at least 1 (berth never deregisters a revision in use either), or remove the key to keep them all",
            )),
        }
    }
}

/// A value that came from outside the file: the command line or the environment.
fn from_outside(what: &str) -> crate::error::Place {
    crate::error::Place {
        file: what.to_owned(),
        position: None,
    }
}
