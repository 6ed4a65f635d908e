//! Settings for one deploy: `berth.toml`, the flags and the `BERTH_*` variables, resolved and
//! checked before anything touches Docker or AWS.
//!
//! Precedence, highest first: flag, `BERTH_*` variable, `[env.NAME]` table, top level of
//! `berth.toml`, built-in default. `AWS_REGION` is the last resort for `region`.

mod check;
mod names;
mod raw;
mod tables;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::error::{ConfigError, Place};
use crate::flags::Flags;
pub use names::is_tag;
use raw::RawFile;

/// File read when neither `--config` nor `BERTH_CONFIG` names one.
pub const DEFAULT_CONFIG: &str = "berth.toml";

/// Everything a deploy to one environment needs, validated. Paths are absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// The configuration file these settings came from.
    pub config: PathBuf,
    /// Name of the environment: the `NAME` of `[env.NAME]`.
    pub env: String,
    /// Branch this environment deploys from; informational.
    pub branch: Option<String>,
    pub region: String,
    /// AWS named profile; `None` leaves the choice to the default credential chain.
    pub profile: Option<String>,
    pub cluster: String,
    /// ECS services to update, in order; the first is the web service.
    pub services: Vec<String>,
    /// ECR repository name.
    pub repository: String,
    /// Create the ECR repository when it does not exist.
    pub create_repository: bool,
    /// A tag moved to each deployed image, such as `stg-latest`.
    pub env_tag: Option<String>,
    /// Containers that take the new image; `None` means every container whose image is in
    /// `repository`.
    pub containers: Option<Vec<String>>,
    pub migrate: MigrateOrder,
    pub build: BuildSettings,
    pub migration: MigrationSettings,
    pub timeouts: Timeouts,
    /// Where berth keeps the environment's lock and deploy records.
    pub state: StateSettings,
    /// What a deploy does to the services that moved when another service's rollout fails.
    pub on_failure: OnFailure,
    /// What a cancelled deploy (SIGINT, SIGTERM) does to the service deployments still in flight.
    pub on_cancel: OnCancel,
    /// Container environment variables to set.
    pub environment: BTreeMap<String, String>,
    /// Container environment variables to remove.
    pub remove_environment: Vec<String>,
    /// Container secrets: variable name → `valueFrom` (an SSM parameter or Secrets Manager ARN).
    pub secrets: BTreeMap<String, String>,
    /// Service → task-definition JSON file (absolute) to build its revision from, instead of
    /// the service's current task definition.
    pub task_definitions: BTreeMap<String, PathBuf>,
    /// The variables of berth's environment that `${VAR}` in those files may take.
    pub task_definition_vars: Vec<String>,
    /// The rules and schedules whose ECS targets follow the deploy (`rule/NAME`,
    /// `schedule/GROUP/NAME`); `None`: every one in the cluster that runs a deployed family.
    pub schedules: Option<Vec<String>>,
    /// After a successful deploy, keep this many newest ACTIVE revisions of each deployed family
    /// (and every one still in use); `None`: deregister nothing.
    pub keep_revisions: Option<usize>,
    /// The environment whose successful deploy an image needs before it comes here
    /// (`requires`, or `promote_from`).
    pub requires: Option<Upstream>,
    /// `promote_from`: the image comes from that environment (the `requires` one), as
    /// `promotion` says; `None`: it is built here.
    pub promotion: Option<Promotion>,
    /// The AWS account the environment lives in (`account`): berth refuses credentials of
    /// another, and an environment of another account names its state bucket by it.
    pub account: Option<String>,
    /// `[hooks]`: commands run around the deploy.
    pub hooks: HookSettings,
}

/// `[hooks]`: shell commands (`sh -c`, in the folder of berth.toml) run at points of a deploy;
/// `None` runs nothing there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HookSettings {
    /// After the lock is taken, before any change; its failure stops the deploy (exit 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_deploy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_deploy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_failure: Option<String>,
    /// Before the migration task; its failure fails the migration (exit 3), which did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_migrate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_migrate: Option<String>,
    /// How long a hook may run before it is killed (a failure).
    #[serde(serialize_with = "human_duration")]
    pub timeout: Duration,
}

/// How a promoted image comes to this environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Promotion {
    /// Copied by digest into this environment's repository (the default).
    Copy,
    /// Pinned by digest to the source environment's repository, which this account must be
    /// allowed to pull from.
    Reference,
}

/// Another environment of berth.toml, as far as this one reads it: where its records are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upstream {
    pub env: String,
    pub region: String,
    pub state: StateSettings,
    /// Its `account`, when berth.toml says.
    pub account: Option<String>,
}

/// When the database migration runs relative to the service rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrateOrder {
    /// After the new revision is rolled out (the default).
    After,
    /// Before the rollout, so the new code never sees the old schema.
    Before,
    /// Not at all.
    Skip,
}

/// `[state]`: the S3 bucket and prefix of the lock and the deploy records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateSettings {
    /// `None`: `berth-state-<account>-<region>`, created on first use when `create` allows.
    pub bucket: Option<String>,
    /// Names the app: objects live under `<prefix>/<env>/`. Default: the repository name.
    pub prefix: String,
    /// Create the bucket when it does not exist.
    pub create: bool,
    /// How long the lock holds without renewal: a holder killed outright loses it after this.
    #[serde(serialize_with = "human_duration")]
    pub lease: Duration,
}

/// `on_cancel`: when a deploy is cancelled during its rollout (SIGINT, SIGTERM).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnCancel {
    /// The deployments go on in ECS (the default); a rerun attaches to them.
    #[default]
    Leave,
    /// ECS rolls back each service deployment still in flight (`StopServiceDeployment`).
    Rollback,
}

/// `on_failure`: when a service's rollout fails, what happens to the services that had moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Roll them back to the revisions they ran before the deploy (the default): one commit per
    /// environment.
    Rollback,
    /// Leave them where they are.
    Leave,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildSettings {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub target: Option<String>,
    /// `os/arch` or `os/arch/variant`; `None`: the task definitions' `runtimePlatform`.
    pub platform: Option<String>,
    pub args: BTreeMap<String, String>,
    /// Build args whose values come from berth's environment and are never shown.
    pub secret_args: Vec<String>,
    pub builder: Builder,
    /// Build with the environment's previous image as a cache source, and write cache metadata
    /// into the image (`[build] cache`, default on).
    pub cache: bool,
    /// More cache sources, tried after berth's own (`[build] cache_from`).
    pub cache_from: Vec<String>,
}

impl BuildSettings {
    /// The Dockerfile relative to the context, as the engine takes it; `None` when it lies outside.
    pub fn dockerfile_in_context(&self) -> Option<&Path> {
        self.dockerfile.strip_prefix(&self.context).ok()
    }
}

/// Which of the engine's builders runs the Dockerfile (`[build] builder` in berth.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    /// BuildKit when the engine offers it, else the classic builder.
    #[default]
    Auto,
    Classic,
    #[serde(rename = "buildkit")]
    BuildKit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationSettings {
    /// Task definition family to run; `None` means the family of the first service's task.
    pub family: Option<String>,
    pub container: String,
    pub command: Vec<String>,
    /// Where the migration task runs; `None`: as the web service, but never on Fargate Spot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Vec<CapacityProvider>>,
}

/// One item of a capacity-provider strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapacityProvider {
    pub capacity_provider: String,
    pub weight: i32,
    pub base: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    #[serde(serialize_with = "human_duration")]
    pub rollout: Duration,
    #[serde(serialize_with = "human_duration")]
    pub migration: Duration,
    /// How often to look at AWS while waiting (default 1 s): a migration's and a lock wait's
    /// looks start this far apart; a rollout's come this often on average, paced by
    /// `steps/rollout/pace.rs`.
    #[serde(serialize_with = "human_duration")]
    pub poll: Duration,
    /// Longest silence while waiting: a status line at least this often (CI kills silent steps).
    #[serde(serialize_with = "human_duration")]
    pub heartbeat: Duration,
}

impl Timeouts {
    /// Waits until the next look, `poll` after the start of the one before (`looked`), so that
    /// an answer's round trip does not stretch the interval; never longer than a minute from
    /// now, whatever `poll` says, so that a heartbeat is never late.
    pub async fn pause(&self, looked: tokio::time::Instant) {
        pause_until(looked + self.poll).await;
    }
}

/// Waits until `next`, never longer than a minute from now, so that a heartbeat is never late.
pub async fn pause_until(next: tokio::time::Instant) {
    let latest = tokio::time::Instant::now() + Duration::from_secs(60);
    tokio::time::sleep_until(next.min(latest)).await;
}

fn human_duration<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*duration))
}

/// Reads the configuration file named by the flags and resolves the settings for the chosen
/// environment.
pub fn load(flags: &Flags) -> Result<Settings, ConfigError> {
    let path = flags
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let text = fs_err::read_to_string(&path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            ConfigError::NotFound {
                path: path.display().to_string(),
            }
        } else if error.kind() == std::io::ErrorKind::InvalidData {
            ConfigError::NotText {
                path: path.display().to_string(),
            }
        } else {
            ConfigError::Read(error)
        }
    })?;
    resolve(&text, &path, flags)
}

/// Resolves settings from the text of a configuration file at `path`; reads nothing.
pub fn resolve(text: &str, path: &Path, flags: &Flags) -> Result<Settings, ConfigError> {
    let source = Source {
        file: path.display().to_string(),
        text,
    };
    let mut raw: RawFile = toml::from_str(text).map_err(|error| source.syntax_error(&error))?;

    let mut environments = raw.env.take().unwrap_or_default();
    let defined: Vec<String> = environments.keys().cloned().collect();
    let Some(env) = flags.env.clone() else {
        return Err(ConfigError::NoEnvironment {
            file: source.file,
            defined,
        });
    };
    let Some(env_layer) = environments.remove(&env) else {
        return Err(ConfigError::UnknownEnvironment {
            file: source.file,
            name: env,
            defined,
        });
    };

    let config = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let base = raw.clone();
    let layer = raw.overlay(env_layer);
    let (requires, promote_from) = (layer.requires.clone(), layer.promote_from.clone());
    let mut settings = validate::validate(layer, &source, &config, &env, flags)?;
    let check = check::Check {
        source: &source,
        env: &env,
    };
    if let Some(name) = check.one_upstream(requires, promote_from.as_ref())? {
        let envs = (&environments, defined.as_slice());
        settings.requires = Some(validate::upstream(name, base, envs, &source, &settings)?);
    }
    if promote_from.is_none() {
        settings.promotion = None;
    }
    Ok(settings)
}

/// The text of the configuration file, to turn byte offsets into `file:line:column`.
struct Source<'a> {
    file: String,
    text: &'a str,
}

impl Source<'_> {
    fn place(&self, span: Option<std::ops::Range<usize>>) -> Place {
        Place {
            file: self.file.clone(),
            position: span.map(|span| self.line_and_column(span.start)),
        }
    }

    fn line_and_column(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let place = self.place(error.span());
        let snippet = match place.position {
            Some((line, _)) => {
                let content = self.text.lines().nth(line - 1).unwrap_or_default();
                format!("\n{line:>5} | {content}")
            }
            None => String::new(),
        };
        let message = error.message().trim_end();
        // A table berth once read and no longer does: say so, rather than "unknown field".
        let message = if message.starts_with("unknown field `registry`") {
            "`[registry]` was removed: berth pushes to the ECR registry of the account and `region` it deploys to, at ECR's own endpoint; remove the table".to_owned()
        } else {
            message.to_owned()
        };
        ConfigError::Syntax {
            place,
            message,
            snippet,
        }
    }
}

#[cfg(test)]
mod tests;

/// A name of `schedules` in berth.toml, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    Rule { bus: Option<String>, name: String },
    Schedule { group: String, name: String },
}

/// `rule/NAME`, `rule/BUS/NAME` or `schedule/GROUP/NAME`; `None` for anything else.
pub fn parse_listed(entry: &str) -> Option<Listed> {
    let parts: Vec<&str> = entry.split('/').collect();
    if parts.iter().any(|part| part.is_empty()) {
        return None;
    }
    match parts.as_slice() {
        ["rule", name] => Some(Listed::Rule {
            bus: None,
            name: (*name).to_owned(),
        }),
        ["rule", bus, name] => Some(Listed::Rule {
            bus: Some((*bus).to_owned()),
            name: (*name).to_owned(),
        }),
        ["schedule", group, name] => Some(Listed::Schedule {
            group: (*group).to_owned(),
            name: (*name).to_owned(),
        }),
        _ => None,
    }
}
