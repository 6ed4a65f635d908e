//! Command-line arguments. The only module that knows clap; it hands the rest a plain [`Flags`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::env_vars;
use crate::flags::{
    Command, DeployOptions, Flags, InitOptions, Migrate, OutputFormat, Overrides, Resume,
    RunOptions,
};

/// `0.1.0 (abc1234)`: the crate version and the commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BERTH_GIT_SHA"), ")");

/// Deploy a Dockerised Rails app to AWS ECS/Fargate: build, push, register, roll out, migrate.
#[derive(Debug, Parser)]
#[command(name = "berth", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Deploy the app to one environment of berth.toml
    Deploy(DeployArgs),
    /// Show the resolved settings of one environment, without touching AWS or Docker
    Config(SettingsArgs),
    /// Show what runs in one environment: revisions, deploys, the lock
    Status(SettingsArgs),
    /// Put every service of one environment back on the revisions of an earlier deploy
    Rollback(RollbackArgs),
    /// Answer a deploy paused at a pause hook (exit 7), then finish it
    ///
    /// Run it from a checkout of the paused deploy's commit: it reruns that deploy, which
    /// answers each pause hook and waits on the service deployments as a deploy does.
    Continue(ContinueArgs),
    /// Release one environment's lock, held by a deploy that is gone
    Unlock(UnlockArgs),
    /// Show what a deploy would do, changing nothing (exit 6: nothing to deploy)
    Plan(PlanArgs),
    /// Write a commented berth.toml for an app that already runs on ECS, read from its services
    Init(InitArgs),
    /// Run a one-off command as a task of a service's revision, its logs streamed live
    ///
    /// The task takes the service's revision (or `--revision`), network settings and capacity
    /// (never Fargate Spot). berth ends with the command's exit code; its own codes (1 to 5)
    /// mean the command did not run to one. A rerun with the same `--client-token` (in CircleCI:
    /// the same job) follows the task the first run started instead of starting another.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    settings: SettingsArgs,

    /// The service whose revision, network settings and capacity the task takes [default: the
    /// first of `services`]
    #[arg(long, value_name = "SERVICE")]
    service: Option<String>,

    /// The container that runs the command [default: `migration.container`]
    #[arg(long, value_name = "CONTAINER")]
    container: Option<String>,

    /// The revision to run (`web:15`, `15`, or an ARN) [default: the one the service runs]
    #[arg(long, value_name = "REVISION", conflicts_with = "attach")]
    revision: Option<String>,

    /// Print the task once it is started, and exit 0 without following it
    #[arg(long, conflicts_with = "attach")]
    detach: bool,

    /// Follow a task started before (its ARN or id) to its end, instead of starting one
    #[arg(long, value_name = "TASK")]
    attach: Option<String>,

    /// `RunTask`'s idempotency token (64 characters at most): a rerun with the same token follows
    /// the task the first run started [default: derived from `CIRCLE_WORKFLOW_JOB_ID` and the
    /// command, when set]
    #[arg(long, value_name = "TOKEN", conflicts_with = "attach")]
    client_token: Option<String>,

    /// How long to follow the task (`2h`); it is left running after [default: `timeouts.migration`]
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    timeout: Option<Duration>,

    /// The command and its arguments, after `--`
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    #[command(flatten)]
    settings: SettingsArgs,

    /// The ECS cluster the services run in
    #[arg(long, value_name = "CLUSTER")]
    cluster: String,

    /// A service of the app, the web service first (repeat for each)
    #[arg(long = "service", value_name = "SERVICE", required = true)]
    services: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    settings: SettingsArgs,

    /// Plan a build of a work tree with uncommitted changes
    #[arg(long)]
    allow_dirty: bool,

    /// Plan a deploy from another branch than the environment's `branch` in berth.toml
    #[arg(long)]
    any_branch: bool,

    /// Plan the deploy of an image the `requires` environment never ran, as `deploy --force`
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
struct DeployArgs {
    #[command(flatten)]
    settings: SettingsArgs,

    /// Start a new deploy even if this commit and these settings were deployed already
    #[arg(long)]
    new: bool,

    /// Run the migration again when this deploy's migration task failed
    #[arg(long)]
    retry_migration: bool,

    /// Build from a work tree with uncommitted changes (the image is tagged `<sha>-dirty-<time>`)
    #[arg(long)]
    allow_dirty: bool,

    #[command(flatten)]
    lock: LockArgs,

    /// Deploy even though a newer deploy of this environment started since this one did, or
    /// the image has no successful deploy in the `requires` environment
    #[arg(long)]
    force: bool,

    /// Deploy from another branch than the environment's `branch` in berth.toml
    #[arg(long)]
    any_branch: bool,

    /// When the migration runs (before or after the rollout, or not at all), overriding
    /// `migrate` in berth.toml
    #[arg(long, value_enum, value_name = "ORDER")]
    migrate: Option<CliMigrate>,

    /// How long a service rollout may take (`20m`), overriding `timeouts.rollout`
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    rollout_timeout: Option<Duration>,

    /// How long the migration task may take (`45m`), overriding `timeouts.migration`
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    migration_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliMigrate {
    Before,
    After,
    Skip,
}

#[derive(Debug, clap::Args)]
struct LockArgs {
    /// Wait this long for another deploy's lock on the environment (`90s`, `15m`) instead of
    /// failing at once
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    lock_wait: Option<Duration>,
}

#[derive(Debug, clap::Args)]
struct RollbackArgs {
    #[command(flatten)]
    settings: SettingsArgs,

    /// The deploy whose revisions to go back to [default: the successful deploy before the one
    /// running now]
    #[arg(long, value_name = "DEPLOY_ID")]
    to: Option<String>,

    #[command(flatten)]
    lock: LockArgs,
}

#[derive(Debug, clap::Args)]
struct ContinueArgs {
    #[command(flatten)]
    settings: SettingsArgs,

    /// Answer ROLLBACK: the paused services go back, and every service the deploy moved with
    /// them
    #[arg(long)]
    rollback: bool,

    #[command(flatten)]
    lock: LockArgs,
}

#[derive(Debug, clap::Args)]
struct UnlockArgs {
    #[command(flatten)]
    settings: SettingsArgs,

    /// Release without asking (needed when stdin is not a terminal)
    #[arg(long)]
    yes: bool,
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| error.to_string())
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_wait(text)? {
        Duration::ZERO => Err("a timeout of zero is not allowed".to_owned()),
        timeout => Ok(timeout),
    }
}

/// Where the settings come from, and where the result goes.
#[derive(Debug, clap::Args)]
struct SettingsArgs {
    /// The environment: a `[env.NAME]` table of berth.toml
    #[arg(long, value_name = "NAME", env = env_vars::BERTH_ENV)]
    env: Option<String>,

    /// Configuration file [default: berth.toml]
    #[arg(long, value_name = "PATH", env = env_vars::BERTH_CONFIG)]
    config: Option<PathBuf>,

    /// AWS region, overriding berth.toml
    #[arg(long, value_name = "REGION")]
    region: Option<String>,

    /// AWS named profile [default: `AWS_PROFILE`, then the default credential chain]
    #[arg(long, value_name = "PROFILE")]
    profile: Option<String>,

    /// Format of the result on stdout; progress always goes to stderr
    #[arg(long, value_enum, default_value_t = CliOutput::Text, env = env_vars::BERTH_OUTPUT)]
    output: CliOutput,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliOutput {
    Text,
    Json,
}

/// Parses the process arguments. A usage error is printed as every error is, with a `hint:`
/// line, and exits with code 2; `--help` and `--version` print and exit 0.
pub fn parse() -> Flags {
    match Cli::try_parse() {
        Ok(cli) => cli.into_flags(),
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => {
            eprint!("{}", usage_error(&error));
            std::process::exit(i32::from(crate::error::ExitStatus::Usage.code()))
        }
    }
}

/// Clap's message, its "For more information" line replaced by a hint.
fn usage_error(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let body: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("For more information"))
        .collect();
    let hint = if text.contains("<DURATION>") {
        "a duration reads like `90s`, `15m` or `1h 30m`; `berth <command> --help` lists every flag"
    } else {
        "`berth --help` lists the commands, `berth <command> --help` every flag and its values"
    };
    format!("{}\nhint: {hint}\n", body.join("\n").trim_end())
}

impl Cli {
    fn into_flags(self) -> Flags {
        match self.command {
            CliCommand::Deploy(args) => Flags {
                deploy: DeployOptions {
                    new: args.new,
                    retry_migration: args.retry_migration,
                    allow_dirty: args.allow_dirty,
                    lock_wait: args.lock.lock_wait.unwrap_or_default(),
                    force: args.force,
                    any_branch: args.any_branch,
                    resume: None,
                },
                overrides: Overrides {
                    migrate: args.migrate.map(|order| match order {
                        CliMigrate::Before => Migrate::Before,
                        CliMigrate::After => Migrate::After,
                        CliMigrate::Skip => Migrate::Skip,
                    }),
                    rollout_timeout: args.rollout_timeout,
                    migration_timeout: args.migration_timeout,
                },
                ..args.settings.into_flags(Command::Deploy)
            },
            CliCommand::Config(args) => args.into_flags(Command::Config),
            CliCommand::Status(args) => args.into_flags(Command::Status),
            CliCommand::Rollback(args) => Flags {
                deploy: DeployOptions {
                    lock_wait: args.lock.lock_wait.unwrap_or_default(),
                    ..DeployOptions::default()
                },
                rollback_to: args.to,
                ..args.settings.into_flags(Command::Rollback)
            },
            CliCommand::Continue(args) => Flags {
                deploy: DeployOptions {
                    lock_wait: args.lock.lock_wait.unwrap_or_default(),
                    resume: Some(if args.rollback {
                        Resume::Rollback
                    } else {
                        Resume::Continue
                    }),
                    ..DeployOptions::default()
                },
                ..args.settings.into_flags(Command::Continue)
            },
            CliCommand::Plan(args) => Flags {
                deploy: DeployOptions {
                    allow_dirty: args.allow_dirty,
                    any_branch: args.any_branch,
                    force: args.force,
                    ..DeployOptions::default()
                },
                ..args.settings.into_flags(Command::Plan)
            },
            CliCommand::Init(args) => Flags {
                init: InitOptions {
                    cluster: args.cluster,
                    services: args.services,
                },
                ..args.settings.into_flags(Command::Init)
            },
            CliCommand::Unlock(args) => Flags {
                yes: args.yes,
                ..args.settings.into_flags(Command::Unlock)
            },
            CliCommand::Run(args) => Flags {
                run: RunOptions {
                    service: args.service,
                    container: args.container,
                    revision: args.revision,
                    command: args.command,
                    detach: args.detach,
                    attach: args.attach,
                    client_token: args.client_token,
                    timeout: args.timeout,
                },
                ..args.settings.into_flags(Command::Run)
            },
        }
    }
}

impl SettingsArgs {
    fn into_flags(self, command: Command) -> Flags {
        Flags {
            command,
            output: match self.output {
                CliOutput::Text => OutputFormat::Text,
                CliOutput::Json => OutputFormat::Json,
            },
            env: self.env,
            config: self.config,
            region: self.region,
            profile: self.profile,
            aws_region: env_vars::aws_region(),
            deploy: DeployOptions::default(),
            overrides: Overrides::default(),
            init: InitOptions::default(),
            run: RunOptions::default(),
            rollback_to: None,
            yes: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
