//! `berth config`: the resolved settings of one environment, read from berth.toml, the `BERTH_*`
//! variables and the flags, without touching AWS or Docker.

use crate::settings::{
    BuildSettings, MigrateOrder, OnCancel, OnFailure, Settings, StateSettings, Timeouts,
};
use crate::text::code_list;

/// One line of the text: its label and its value.
type Row = (&'static str, String);

/// The resolved settings, one line per aspect, values in backticks. Environment values are not
/// shown, only their names.
pub fn lines(settings: &Settings) -> Vec<String> {
    let header = format!(
        "settings of environment `{}` from `{}`",
        settings.env,
        settings.config.display()
    );
    let rows = [
        target(settings),
        build(&settings.build),
        environment(settings),
        run(settings),
    ];
    std::iter::once(header)
        .chain(
            rows.into_iter()
                .flatten()
                .map(|(label, value)| format!("  {label:<13} {value}")),
        )
        .collect()
}

/// Where the deploy goes: branch, account, cluster, services and the image's repository.
fn target(settings: &Settings) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some(branch) = &settings.branch {
        rows.push(("branch", format!("`{branch}`")));
    }
    let profile = settings.profile.as_ref().map_or_else(
        || "default credential chain".to_owned(),
        |profile| format!("`{profile}`"),
    );
    let created = if settings.create_repository {
        " (created if missing)"
    } else {
        ""
    };
    let containers = match &settings.containers {
        Some(containers) => code_list(containers),
        None => format!(
            "every container whose image is in `{}`",
            settings.repository
        ),
    };
    rows.extend([
        ("region", format!("`{}`", settings.region)),
        ("profile", profile),
        ("cluster", format!("`{}`", settings.cluster)),
        ("services", code_list(&settings.services)),
        ("repository", format!("`{}`{created}", settings.repository)),
        ("containers", containers),
    ]);
    rows
}

/// How the image is built, with the names (never the values) of its secret args.
fn build(build: &BuildSettings) -> Vec<Row> {
    let target = build
        .target
        .as_ref()
        .map_or_else(String::new, |target| format!(", target `{target}`"));
    let platform = build.platform.as_ref().map_or_else(
        || "the task definitions' `runtimePlatform`".to_owned(),
        |platform| format!("`{platform}`"),
    );
    let mut rows = vec![(
        "build",
        format!(
            "`{}` with `{}`{target} for {platform}",
            build.context.display(),
            build.dockerfile.display(),
        ),
    )];
    if !build.args.is_empty() {
        let args: Vec<String> = build.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("build args", args.join(" ")));
    }
    if !build.secret_args.is_empty() {
        let names = code_list(&build.secret_args);
        rows.push((
            "secret args",
            format!("{names} (values from the environment)"),
        ));
    }
    rows
}

/// The names of the container variables set, removed and taken from secrets; a line each, when
/// there are any.
fn environment(settings: &Settings) -> Vec<Row> {
    [
        ("set env", code_list(settings.environment.keys())),
        ("remove env", code_list(&settings.remove_environment)),
        ("secrets", code_list(settings.secrets.keys())),
    ]
    .into_iter()
    .filter(|(_, names)| !names.is_empty())
    .collect()
}

/// How the deploy runs: migration, timeouts, state, what a failure does and the optional extras.
fn run(settings: &Settings) -> Vec<Row> {
    let on_failure = match settings.on_failure {
        OnFailure::Rollback => "services that moved roll back",
        OnFailure::Leave => "services stay where they are",
    };
    let mut rows = vec![
        ("migration", migration(settings)),
        ("timeouts", timeouts(&settings.timeouts)),
        ("state", state(&settings.state, &settings.env)),
        ("on failure", on_failure.to_owned()),
        (
            "on cancel",
            match settings.on_cancel {
                OnCancel::Leave => "deployments go on in ECS",
                OnCancel::Rollback => "ECS rolls back deployments in flight",
            }
            .to_owned(),
        ),
    ];
    for (service, file) in &settings.task_definitions {
        rows.push(("task def", format!("`{service}` from `{}`", file.display())));
    }
    if let Some(tag) = &settings.env_tag {
        rows.push(("env tag", format!("`{tag}`")));
    }
    let hooks = &settings.hooks;
    for (name, command) in [
        ("before_deploy", &hooks.before_deploy),
        ("after_deploy", &hooks.after_deploy),
        ("after_failure", &hooks.after_failure),
        ("before_migrate", &hooks.before_migrate),
        ("after_migrate", &hooks.after_migrate),
    ] {
        if let Some(command) = command {
            rows.push(("hook", format!("{name}: `{command}`")));
        }
    }
    rows
}

/// The migration's command, container, family and order, or that it is skipped.
fn migration(settings: &Settings) -> String {
    let when = match settings.migrate {
        MigrateOrder::After => "after the rollout",
        MigrateOrder::Before => "before the rollout",
        MigrateOrder::Skip => return "skipped".to_owned(),
    };
    let migration = &settings.migration;
    let family = migration.family.as_ref().map_or_else(
        || {
            format!(
                "the task family of {}",
                code_list(settings.services.get(..1).unwrap_or_default())
            )
        },
        |family| format!("task family `{family}`"),
    );
    format!(
        "`{}` in container `{}` of {family}, {when}",
        migration.command.join(" "),
        migration.container
    )
}

fn timeouts(timeouts: &Timeouts) -> String {
    format!(
        "rollout {}, migration {}, poll every {}",
        humantime::format_duration(timeouts.rollout),
        humantime::format_duration(timeouts.migration),
        humantime::format_duration(timeouts.poll)
    )
}

/// Where the lock and records of `env` live, and how long the lock holds.
fn state(state: &StateSettings, env: &str) -> String {
    format!(
        "`s3://{}/{}/{env}/` (lock lease {}{})",
        state
            .bucket
            .as_deref()
            .unwrap_or("berth-state-<account>-<region>"),
        state.prefix,
        humantime::format_duration(state.lease),
        if state.bucket.is_none() && state.create {
            ", bucket created on first use"
        } else {
            ""
        }
    )
}
