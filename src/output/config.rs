//! `berth config`: the resolved settings of one environment, read from berth.toml, the `BERTH_*`
//! variables and the flags, without touching AWS or Docker.

use crate::settings::{MigrateOrder, Settings};

/// The resolved settings, one line per aspect, values in backticks. Environment values are not
/// shown, only their names.
pub fn lines(settings: &Settings) -> Vec<String> {
    let names = |names: &[String]| crate::text::code_list(names);
    let mut lines = vec![format!(
        "plan for environment `{}` from `{}`",
        settings.env,
        settings.config.display()
    )];
    let mut add = |label: &str, value: String| lines.push(format!("  {label:<13} {value}"));

    if let Some(branch) = &settings.branch {
        add("branch", format!("`{branch}`"));
    }
    add("region", format!("`{}`", settings.region));
    add(
        "profile",
        settings.profile.as_ref().map_or_else(
            || "default credential chain".to_owned(),
            |profile| format!("`{profile}`"),
        ),
    );
    add("cluster", format!("`{}`", settings.cluster));
    add("services", names(&settings.services));
    add(
        "repository",
        format!(
            "`{}`{}",
            settings.repository,
            if settings.create_repository {
                " (created if missing)"
            } else {
                ""
            }
        ),
    );
    add(
        "containers",
        match &settings.containers {
            Some(containers) => names(containers),
            None => format!(
                "every container whose image is in `{}`",
                settings.repository
            ),
        },
    );

    let build = &settings.build;
    add(
        "build",
        format!(
            "`{}` with `{}`{} for {}",
            build.context.display(),
            build.dockerfile.display(),
            build
                .target
                .as_ref()
                .map_or_else(String::new, |target| format!(", target `{target}`")),
            build.platform.as_ref().map_or_else(
                || "the task definitions' `runtimePlatform`".to_owned(),
                |platform| format!("`{platform}`")
            )
        ),
    );
    if !build.args.is_empty() {
        let args: Vec<String> = build.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        add("build args", args.join(" "));
    }
    if !build.secret_args.is_empty() {
        add(
            "secret args",
            format!(
                "{} (values from the environment)",
                names(&build.secret_args)
            ),
        );
    }

    if !settings.environment.is_empty() {
        let set: Vec<String> = settings.environment.keys().cloned().collect();
        add("set env", names(&set));
    }
    if !settings.remove_environment.is_empty() {
        add("remove env", names(&settings.remove_environment));
    }
    if !settings.secrets.is_empty() {
        let secrets: Vec<String> = settings.secrets.keys().cloned().collect();
        add("secrets", names(&secrets));
    }

    let migration = &settings.migration;
    let family = migration.family.as_ref().map_or_else(
        || {
            format!(
                "the task family of {}",
                names(settings.services.get(..1).unwrap_or_default())
            )
        },
        |family| format!("task family `{family}`"),
    );
    let when = match settings.migrate {
        MigrateOrder::After => "after the rollout",
        MigrateOrder::Before => "before the rollout",
        MigrateOrder::Skip => "",
    };
    add(
        "migration",
        if settings.migrate == MigrateOrder::Skip {
            "skipped".to_owned()
        } else {
            format!(
                "`{}` in container `{}` of {family}, {when}",
                migration.command.join(" "),
                migration.container
            )
        },
    );
    let timeouts = &settings.timeouts;
    add(
        "timeouts",
        format!(
            "rollout {}, migration {}, {}",
            humantime::format_duration(timeouts.rollout),
            humantime::format_duration(timeouts.migration),
            timeouts.poll.map_or_else(
                || "poll every 1s, backing off to 5s".to_owned(),
                |poll| format!("poll every {}", humantime::format_duration(poll))
            )
        ),
    );
    let state = &settings.state;
    add(
        "state",
        format!(
            "`s3://{}/{}/{}/` (lock lease {}{})",
            state
                .bucket
                .as_deref()
                .unwrap_or("berth-state-<account>-<region>"),
            state.prefix,
            settings.env,
            humantime::format_duration(state.lease),
            if state.bucket.is_none() && state.create {
                ", bucket created on first use"
            } else {
                ""
            }
        ),
    );
    add(
        "on failure",
        match settings.on_failure {
            crate::settings::OnFailure::Rollback => "services that moved roll back".to_owned(),
            crate::settings::OnFailure::Leave => "services stay where they are".to_owned(),
        },
    );
    for (service, file) in &settings.task_definitions {
        add("task def", format!("`{service}` from `{}`", file.display()));
    }
    if let Some(tag) = &settings.env_tag {
        add("env tag", format!("`{tag}`"));
    }
    lines
}
