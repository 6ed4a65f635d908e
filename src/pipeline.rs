//! A deploy, from settings to a running service. For now it stops after validating the settings
//! and reporting what a deploy would do.

use crate::error::Error;
use crate::output::Reporter;
use crate::settings::{MigrateOrder, Settings};

/// Reports the plan for `settings`. The build, push, register, rollout and migrate steps are not
/// part of this version, and the last line says so.
pub async fn deploy(settings: &Settings, reporter: &dyn Reporter) -> Result<(), Error> {
    for line in plan(settings) {
        reporter.info(&line);
    }
    reporter.info(
        "settings valid; build/push/register/rollout/migrate are not available in this version",
    );
    Ok(())
}

/// The resolved settings, one line per aspect, values in backticks.
fn plan(settings: &Settings) -> Vec<String> {
    let names = |names: &[String]| {
        names
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
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
            "`{}` with `{}`{} for `{}`",
            build.context.display(),
            build.dockerfile.display(),
            build
                .target
                .as_ref()
                .map_or_else(String::new, |target| format!(", target `{target}`")),
            build.platform
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

    for (host, addr) in &settings.registry_map {
        add("registry", format!("`{host}` via `{addr}`"));
    }
    if !settings.environment.is_empty() {
        let set: Vec<String> = settings
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        add("set env", set.join(" "));
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
            "rollout {}, migration {}, poll every {}",
            humantime::format_duration(timeouts.rollout),
            humantime::format_duration(timeouts.migration),
            humantime::format_duration(timeouts.poll)
        ),
    );
    lines
}
