#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;

const FILE: &str = r#"
repository = "berth-example"
containers = ["app", "worker"]
region = "eu-west-1"
cluster = "shared"
remove_environment = ["OLD"]

[build]
context = "app"
target = "release"
args = { RAILS_ENV = "production", SHARED = "top" }

[timeouts]
rollout = "20m"
poll = "2s"

[environment]
RAILS_LOG_LEVEL = "info"
TOP_ONLY = "yes"

[env.stg]
cluster = "berth-stg"
services = ["web", "devops"]
remove_environment = ["OLDER"]
build = { args = { RAILS_ENV = "staging" } }
timeouts = { poll = "1s" }
environment = { RAILS_LOG_LEVEL = "debug" }

[env.prd]
region = "us-east-1"
cluster = "berth-prd"
services = ["web"]
migrate = "before"
"#;

fn flags(env: &str) -> Flags {
    Flags {
        env: Some(env.to_owned()),
        ..Flags::default()
    }
}

fn resolve_stg(flags: &Flags) -> Settings {
    resolve(FILE, Path::new("/srv/berth.toml"), flags).unwrap()
}

#[test]
fn environment_table_overrides_top_level_key_by_key() {
    let settings = resolve_stg(&flags("stg"));
    assert_eq!(settings.env, "stg");
    assert_eq!(settings.cluster, "berth-stg", "`[env.stg]` wins");
    assert_eq!(settings.region, "eu-west-1", "top level fills the gap");
    assert_eq!(settings.services, ["web", "devops"]);
    assert_eq!(
        settings.containers,
        Some(vec!["app".to_owned(), "worker".to_owned()])
    );
}

#[test]
fn tables_merge_key_by_key() {
    let settings = resolve_stg(&flags("stg"));
    assert_eq!(
        settings.build.args,
        BTreeMap::from([
            ("RAILS_ENV".to_owned(), "staging".to_owned()),
            ("SHARED".to_owned(), "top".to_owned()),
        ])
    );
    assert_eq!(settings.build.target.as_deref(), Some("release"));
    assert_eq!(settings.timeouts.rollout, Duration::from_secs(20 * 60));
    assert_eq!(settings.timeouts.poll, Duration::from_secs(1));
    assert_eq!(settings.timeouts.migration, Duration::from_secs(30 * 60));
    assert_eq!(settings.environment["RAILS_LOG_LEVEL"], "debug");
    assert_eq!(settings.environment["TOP_ONLY"], "yes");
}

#[test]
fn lists_replace_instead_of_appending() {
    let settings = resolve_stg(&flags("stg"));
    assert_eq!(settings.remove_environment, ["OLDER"]);
}

#[test]
fn defaults_fill_what_nobody_set() {
    let settings = resolve_stg(&flags("prd"));
    assert_eq!(settings.migrate, MigrateOrder::Before);
    assert_eq!(settings.build.platform, None, "the task definitions decide");
    assert_eq!(settings.build.context, Path::new("/srv/app"));
    assert_eq!(settings.build.dockerfile, Path::new("/srv/app/Dockerfile"));
    assert_eq!(settings.migration.command, ["bin/rails", "db:migrate"]);
    assert_eq!(settings.migration.container, "app", "first of `containers`");
    assert_eq!(settings.migration.family, None);
    assert!(!settings.create_repository);
}

#[test]
fn region_flag_beats_file_and_aws_region_is_the_last_resort() {
    let mut flags = flags("prd");
    flags.aws_region = Some(("AWS_REGION", "ap-south-1".to_owned()));
    assert_eq!(resolve_stg(&flags).region, "us-east-1");
    flags.region = Some("ca-central-1".to_owned());
    assert_eq!(resolve_stg(&flags).region, "ca-central-1");

    let without_region = "repository = \"app1\"\n[env.x]\ncluster = \"c\"\nservices = [\"web\"]\n";
    let mut flags = super::tests::flags("x");
    flags.aws_region = Some(("AWS_DEFAULT_REGION", "ap-south-1".to_owned()));
    let settings = resolve(without_region, Path::new("berth.toml"), &flags).unwrap();
    assert_eq!(settings.region, "ap-south-1");
    // A bad one is blamed on the variable it came from.
    flags.aws_region = Some(("AWS_DEFAULT_REGION", "Moon-1".to_owned()));
    let error = resolve(without_region, Path::new("berth.toml"), &flags).unwrap_err();
    assert!(error.to_string().contains("AWS_DEFAULT_REGION"), "{error}");
}

/// `--migrate`, `--rollout-timeout` and `--migration-timeout` win over berth.toml; the other
/// timeouts stay the file's.
#[test]
fn deploy_flags_override_migrate_and_timeouts() {
    let mut flags = flags("stg");
    let file = resolve_stg(&flags);
    flags.overrides = crate::flags::Overrides {
        migrate: Some(crate::flags::Migrate::Skip),
        rollout_timeout: Some(std::time::Duration::from_secs(7 * 60)),
        migration_timeout: Some(std::time::Duration::from_secs(45 * 60)),
    };
    let settings = resolve_stg(&flags);
    assert_ne!(file.migrate, MigrateOrder::Skip);
    assert_eq!(settings.migrate, MigrateOrder::Skip);
    assert_eq!(settings.timeouts.rollout.as_secs(), 7 * 60);
    assert_eq!(settings.timeouts.migration.as_secs(), 45 * 60);
    assert_eq!(settings.timeouts.heartbeat, file.timeouts.heartbeat);
    assert_eq!(settings.timeouts.poll, file.timeouts.poll);
}

#[test]
fn migration_container_defaults_to_app_without_containers() {
    let text = "repository = \"app1\"\nregion = \"us-east-1\"\n[env.x]\ncluster = \"c\"\nservices = [\"web\"]\n";
    let settings = resolve(text, Path::new("berth.toml"), &flags("x")).unwrap();
    assert_eq!(settings.migration.container, "app");
    assert_eq!(settings.containers, None);
}

#[test]
fn errors_point_at_the_line_and_column_of_the_value() {
    let text =
        "repository = \"app1\"\nregion = \"us-east-1\"\n[env.x]\ncluster = \"c\"\nservices = []\n";
    let error = resolve(text, Path::new("berth.toml"), &flags("x")).unwrap_err();
    assert_eq!(error.to_string(), "berth.toml:5:12: `services` is empty");
}

#[test]
fn nested_environments_are_rejected_where_they_appear() {
    let text = "[env.x]\ncluster = \"c\"\n[env.x.env.y]\ncluster = \"d\"\n";
    let error = resolve(text, Path::new("berth.toml"), &flags("x")).unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("berth.toml:3:"), "{message}");
    assert!(
        message.contains("`env` tables cannot be nested"),
        "{message}"
    );
}

#[test]
fn example_in_the_docs_is_valid_for_every_environment() {
    let docs = include_str!("../../docs/configuration.md");
    let example = docs
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    for env in ["stg", "prd"] {
        let result = resolve(example, Path::new("berth.toml"), &flags(env));
        assert!(result.is_ok(), "{env}: {}", result.unwrap_err());
    }
}

/// Without `timeouts.poll` a wait looks every second, whatever its length: a long rollout's
/// finish is noticed as soon as a short one's.
#[test]
fn the_default_poll_is_one_look_a_second() {
    let text = "repository = \"app1\"\nregion = \"us-east-1\"\n[env.x]\ncluster = \"c\"\nservices = [\"web\"]\n";
    let settings = resolve(text, Path::new("berth.toml"), &flags("x")).unwrap();
    assert_eq!(settings.timeouts.poll, Duration::from_secs(1));
}

#[test]
fn listed_names_are_rules_or_schedules() {
    use super::{Listed, parse_listed};
    let rule = |bus: Option<&str>, name: &str| Listed::Rule {
        bus: bus.map(str::to_owned),
        name: name.to_owned(),
    };
    assert_eq!(parse_listed("rule/nightly"), Some(rule(None, "nightly")));
    assert_eq!(
        parse_listed("rule/jobs/nightly"),
        Some(rule(Some("jobs"), "nightly"))
    );
    assert_eq!(
        parse_listed("schedule/default/hourly"),
        Some(Listed::Schedule {
            group: "default".to_owned(),
            name: "hourly".to_owned()
        })
    );
    for bad in [
        "nightly",
        "rule/",
        "schedule/hourly",
        "rule/a/b/c",
        "cron/x",
    ] {
        assert_eq!(parse_listed(bad), None, "{bad}");
    }
}

#[test]
fn keep_revisions_keeps_at_least_one() {
    let text = "repository = \"app1\"\nregion = \"us-east-1\"\nkeep_revisions = 0\n[env.x]\ncluster = \"c\"\nservices = [\"web\"]\n";
    let error = resolve(text, Path::new("berth.toml"), &flags("x")).unwrap_err();
    assert!(error.to_string().contains("keep_revisions"), "{error}");
    let text = text.replace("keep_revisions = 0", "keep_revisions = 3");
    let settings = resolve(&text, Path::new("berth.toml"), &flags("x")).unwrap();
    assert_eq!(settings.keep_revisions, Some(3));
}
