//! What the user asked for on the command line and through `BERTH_*` variables, as plain values.
//!
//! `cli` fills this in from clap; nothing past this point knows about clap.

use std::path::PathBuf;
use std::time::Duration;

/// One invocation of berth.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub command: Command,
    pub output: OutputFormat,
    /// `--env` or `BERTH_ENV`.
    pub env: Option<String>,
    /// `--config` or `BERTH_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--region`.
    pub region: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION` (as the AWS CLI reads them), with the variable's
    /// name: the region when neither `--region` nor `berth.toml` sets one.
    pub aws_region: Option<(&'static str, String)>,
    /// What the deploy may do beyond the default.
    pub deploy: DeployOptions,
    /// `berth deploy` flags that win over berth.toml.
    pub overrides: Overrides,
    /// `berth rollback --to`: the deploy whose revisions to go back to.
    pub rollback_to: Option<String>,
    /// `berth unlock --yes`: no question asked.
    pub yes: bool,
    /// `berth init`: what to read.
    pub init: InitOptions,
    /// `berth run`: what to run, where, and how to follow it.
    pub run: RunOptions,
}

/// `berth run [--service S] [--container C] [--revision R] -- CMD ARGS…`, or `--attach TASK`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The service whose revision, network settings and capacity the task takes; `None`: the
    /// web service (the first of `services`).
    pub service: Option<String>,
    /// The container that runs the command; `None`: the migration's (`migration.container`).
    pub container: Option<String>,
    /// `family:N`, a revision number of the service's family, or an ARN; `None`: the revision
    /// the service runs.
    pub revision: Option<String>,
    /// The command and its arguments; empty with `attach`.
    pub command: Vec<String>,
    /// Print the task and exit once it is started.
    pub detach: bool,
    /// Follow this task (its ARN or id) instead of starting one.
    pub attach: Option<String>,
    /// The `RunTask` `clientToken`: a rerun with the same token follows the task it started.
    pub client_token: Option<String>,
    /// How long to follow the task before leaving it running.
    pub timeout: Option<Duration>,
}

/// `berth init --cluster C --service web --service devops`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub cluster: String,
    pub services: Vec<String>,
}

/// Switches of `berth deploy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeployOptions {
    /// `--new`: a new deploy even when this one already happened.
    pub new: bool,
    /// `--retry-migration`: run the migration again after it failed.
    pub retry_migration: bool,
    /// `--allow-dirty`: build from a work tree with uncommitted changes.
    pub allow_dirty: bool,
    /// `--lock-wait`: how long to wait for another deploy's lock; zero fails at once.
    pub lock_wait: Duration,
    /// `--force`: deploy even though a newer deploy started on the environment since, or the
    /// `requires` environment never ran the image.
    pub force: bool,
    /// `--any-branch`: deploy from another branch than the environment's `branch`.
    pub any_branch: bool,
    /// `berth continue`: the person's answer to a paused deploy, which this run resumes.
    pub resume: Option<Resume>,
}

/// `berth continue [--rollback]`: how a deploy paused at a pause hook goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Let the service deployments go on, and finish the deploy.
    Continue,
    /// Roll them back, and every service the deploy moved with them.
    Rollback,
}

/// Settings of berth.toml that `berth deploy` takes as flags too (the CircleCI orb's
/// parameters); a flag wins over the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--migrate`.
    pub migrate: Option<Migrate>,
    /// `--rollout-timeout`.
    pub rollout_timeout: Option<Duration>,
    /// `--migration-timeout`.
    pub migration_timeout: Option<Duration>,
}

/// `--migrate`: when the migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrate {
    Before,
    After,
    Skip,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Command {
    /// Deploy the app to one environment.
    #[default]
    Deploy,
    /// Show the resolved settings of one environment.
    Config,
    /// Show what runs in one environment now.
    Status,
    /// Put one environment back on the revisions of an earlier deploy.
    Rollback,
    /// Answer a deploy paused at a pause hook, and finish it.
    Continue,
    /// Release one environment's lock.
    Unlock,
    /// Show what a deploy would do.
    Plan,
    /// Write a berth.toml from services that run on ECS.
    Init,
    /// Run a one-off command as a task of a service's revision.
    Run,
}

/// Where results go on stdout: text for people, JSON for programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}
