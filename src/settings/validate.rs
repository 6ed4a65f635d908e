//! Turns the merged layer into [`Settings`], checking every value. Each error names the key, the
//! file and, when the value came from the file, its line and column.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawBuild, RawCapacityProvider, RawLayer, RawMigration, RawState, RawTimeouts};
use super::{
    BuildSettings, Builder, CapacityProvider, MigrateOrder, MigrationSettings, OnFailure, Settings,
    Source, StateSettings, Timeouts,
};
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
const MIN_LEASE: Duration = Duration::from_secs(3);

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

struct Check<'a> {
    source: &'a Source<'a>,
    env: &'a str,
}

impl Check<'_> {
    fn invalid(
        &self,
        key: &str,
        span: Option<Range<usize>>,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            place: self.source.place(span),
            key: key.to_owned(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }

    fn required<T>(
        &self,
        value: Option<Spanned<T>>,
        key: &str,
        what: &str,
    ) -> Result<Spanned<T>, ConfigError> {
        value.ok_or_else(|| ConfigError::Missing {
            file: self.source.file.clone(),
            key: format!("env.{}.{key}", self.env),
            hint: format!(
                "set `{key}` ({what}) in `[env.{}]`, or at the top level of berth.toml to share it between environments",
                self.env
            ),
        })
    }

    fn non_empty(&self, value: Spanned<String>, key: &str) -> Result<String, ConfigError> {
        if value.get_ref().trim().is_empty() {
            return Err(self.invalid(
                key,
                Some(value.span()),
                "is empty",
                format!("give `{key}` a value, or remove it"),
            ));
        }
        Ok(value.into_inner())
    }

    /// A non-empty list of distinct, non-empty names.
    fn name_list(&self, list: Spanned<Vec<String>>, key: &str) -> Result<Vec<String>, ConfigError> {
        let span = list.span();
        let names = list.into_inner();
        if names.is_empty() {
            return Err(self.invalid(
                key,
                Some(span),
                "is empty",
                format!("list at least one name in `{key}`, or remove the key"),
            ));
        }
        let mut seen = BTreeSet::new();
        for name in &names {
            if name.trim().is_empty() {
                return Err(self.invalid(
                    key,
                    Some(span),
                    "has an empty name",
                    format!("remove the empty entry from `{key}`"),
                ));
            }
            if !seen.insert(name) {
                return Err(self.invalid(
                    key,
                    Some(span),
                    format!("lists `{name}` twice"),
                    format!("list each name once in `{key}`"),
                ));
            }
        }
        Ok(names)
    }

    fn migrate_order(&self, value: Spanned<String>) -> Result<MigrateOrder, ConfigError> {
        match value.get_ref().as_str() {
            "after" => Ok(MigrateOrder::After),
            "before" => Ok(MigrateOrder::Before),
            "skip" => Ok(MigrateOrder::Skip),
            other => Err(self.invalid(
                "migrate",
                Some(value.span()),
                format!("is `{other}`, expected `after`, `before` or `skip`"),
                "`after` migrates once the new revision is rolled out (the default), `before` migrates first, `skip` never migrates",
            )),
        }
    }

    fn image_tag(&self, tag: Spanned<String>) -> Result<String, ConfigError> {
        if is_tag(tag.get_ref()) {
            Ok(tag.into_inner())
        } else {
            Err(self.invalid(
                "env_tag",
                Some(tag.span()),
                format!("is `{}`, which is not a Docker tag", tag.get_ref()),
                "use letters, digits, `_`, `.` and `-`, up to 128 characters, such as `stg-latest`",
            ))
        }
    }

    fn duration(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        parse_duration(value.get_ref()).map_err(|problem| {
            self.invalid(
                key,
                Some(value.span()),
                format!("is `{}`: {problem}", value.get_ref()),
                "write a duration with units, such as `90s`, `20m` or `1h 30m`",
            )
        })
    }

    fn build(&self, build: RawBuild, config_folder: &Path) -> Result<BuildSettings, ConfigError> {
        let platform = match build.platform {
            None => None,
            Some(platform) if is_valid_platform(platform.get_ref()) => Some(platform.into_inner()),
            Some(platform) => {
                return Err(self.invalid(
                    "build.platform",
                    Some(platform.span()),
                    format!(
                        "is `{}`, which does not look like `os/arch`",
                        platform.get_ref()
                    ),
                    "use a Docker platform such as `linux/amd64` or `linux/arm64`",
                ));
            }
        };
        let builder = match build.builder {
            None => Builder::Auto,
            Some(builder) => match builder.get_ref().as_str() {
                "auto" => Builder::Auto,
                "classic" => Builder::Classic,
                "buildkit" => Builder::BuildKit,
                other => {
                    return Err(self.invalid(
                        "build.builder",
                        Some(builder.span()),
                        format!("is `{other}`"),
                        "use `auto` (BuildKit when the engine has it), `classic` or `buildkit`",
                    ));
                }
            },
        };
        let args = build.args.unwrap_or_default();
        let secret_args = build
            .secret_args
            .map(|names| {
                let span = names.span();
                let names = self.name_list(names, "build.secret_args")?;
                match names.iter().find(|name| args.contains_key(*name)) {
                    Some(name) => Err(self.invalid(
                        "build.secret_args",
                        Some(span),
                        format!("names `{name}`, which also has a value in `build.args`"),
                        "a secret build arg takes its value from berth's environment; remove it from `build.args`",
                    )),
                    None => Ok(names),
                }
            })
            .transpose()?
            .unwrap_or_default();
        let cache_from = build
            .cache_from
            .map(|images| {
                let span = images.span();
                let images = images.into_inner();
                match images.iter().find(|image| !is_image_reference(image)) {
                    Some(image) => Err(self.invalid(
                        "build.cache_from",
                        Some(span),
                        format!("names `{image}`, which is not an image reference"),
                        "name each image as `registry/repository:tag` or `registry/repository@sha256:…`",
                    )),
                    None => Ok(images),
                }
            })
            .transpose()?
            .unwrap_or_default();
        let context = tidy(&config_folder.join(build.context.as_deref().unwrap_or(".")));
        let dockerfile = tidy(&context.join(build.dockerfile.as_deref().unwrap_or("Dockerfile")));
        Ok(BuildSettings {
            context,
            dockerfile,
            target: build.target,
            platform,
            args,
            secret_args,
            builder,
            cache: build.cache.unwrap_or(true),
            cache_from,
        })
    }

    fn migration(
        &self,
        migration: RawMigration,
        containers: Option<&[String]>,
    ) -> Result<MigrationSettings, ConfigError> {
        let command = match migration.command {
            None => DEFAULT_MIGRATION_COMMAND.map(str::to_owned).to_vec(),
            Some(command) if command.get_ref().is_empty() => {
                return Err(self.invalid(
                    "migration.command",
                    Some(command.span()),
                    "is empty",
                    "give the command as a list, such as `[\"bin/rails\", \"db:migrate\"]`, or set `migrate = \"skip\"`",
                ));
            }
            Some(command) => command.into_inner(),
        };
        let container = migration.container.unwrap_or_else(|| {
            containers
                .and_then(|containers| containers.first().cloned())
                .unwrap_or_else(|| DEFAULT_CONTAINER.to_owned())
        });
        let capacity_provider_strategy = match migration.capacity_provider_strategy {
            None => None,
            Some(strategy) => Some(self.capacity(strategy)?),
        };
        Ok(MigrationSettings {
            family: migration.family,
            container,
            command,
            capacity_provider_strategy,
        })
    }

    /// ECS's rules for a strategy: at least one item, weights 0 to 1000 (not all 0), a base of
    /// 0 to 100000 on one item at most.
    fn capacity(
        &self,
        strategy: Spanned<Vec<RawCapacityProvider>>,
    ) -> Result<Vec<CapacityProvider>, ConfigError> {
        let span = strategy.span();
        let invalid = |problem: &str| {
            self.invalid(
                "migration.capacity_provider_strategy",
                Some(span.clone()),
                problem,
                "write it as ECS takes it, such as `[{ capacity_provider = \"FARGATE\", weight = 1 }]`",
            )
        };
        let items = strategy.into_inner();
        if items.is_empty() {
            return Err(invalid("is empty"));
        }
        let mut out = Vec::new();
        for item in items {
            let weight = item.weight.unwrap_or(1);
            let base = item.base.unwrap_or(0);
            if item.capacity_provider.is_empty() {
                return Err(invalid("has an item without `capacity_provider`"));
            }
            if !(0..=1000).contains(&weight) {
                return Err(invalid("has a `weight` outside 0 to 1000"));
            }
            if !(0..=100_000).contains(&base) {
                return Err(invalid("has a `base` outside 0 to 100000"));
            }
            out.push(CapacityProvider {
                capacity_provider: item.capacity_provider,
                weight: i32::try_from(weight).unwrap_or_default(),
                base: i32::try_from(base).unwrap_or_default(),
            });
        }
        if out.iter().all(|item| item.weight == 0) {
            return Err(invalid("has only weights of 0"));
        }
        if out.iter().filter(|item| item.base > 0).count() > 1 {
            return Err(invalid("has a `base` on more than one item"));
        }
        Ok(out)
    }

    fn state(&self, state: RawState, repository: &str) -> Result<StateSettings, ConfigError> {
        let bucket = match state.bucket {
            None => None,
            Some(bucket) if is_valid_bucket_name(bucket.get_ref()) => Some(bucket.into_inner()),
            Some(bucket) => {
                return Err(self.invalid(
                    "state.bucket",
                    Some(bucket.span()),
                    format!("is `{}`, not a valid S3 bucket name", bucket.get_ref()),
                    "use 3 to 63 characters: lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit; or leave it out for `berth-state-<account>-<region>`",
                ));
            }
        };
        let prefix = match state.prefix {
            None => repository.to_owned(),
            Some(prefix) => {
                let text = prefix.get_ref().trim_matches('/');
                if text.is_empty() || text.split('/').any(str::is_empty) {
                    return Err(self.invalid(
                        "state.prefix",
                        Some(prefix.span()),
                        format!("is `{}`, not a key prefix", prefix.get_ref()),
                        "use a path such as `myapp` or `teams/web/myapp`; it names the app in the state bucket",
                    ));
                }
                text.to_owned()
            }
        };
        let lease_span = state.lease.as_ref().map(Spanned::span);
        let lease = self.duration(state.lease, "state.lease", DEFAULT_LEASE)?;
        if lease < MIN_LEASE {
            return Err(self.invalid(
                "state.lease",
                lease_span,
                format!(
                    "is {}, shorter than {}",
                    humantime::format_duration(lease),
                    humantime::format_duration(MIN_LEASE)
                ),
                "leave it out for 1m; the lease is renewed a third of the way through",
            ));
        }
        Ok(StateSettings {
            bucket,
            prefix,
            create: state.create.unwrap_or(true),
            lease,
        })
    }

    fn on_failure(&self, value: Spanned<String>) -> Result<OnFailure, ConfigError> {
        match value.get_ref().as_str() {
            "rollback" => Ok(OnFailure::Rollback),
            "leave" => Ok(OnFailure::Leave),
            other => Err(self.invalid(
                "on_failure",
                Some(value.span()),
                format!("is `{other}`"),
                "use `rollback` (services that moved go back when another fails) or `leave`",
            )),
        }
    }

    fn timeouts(&self, timeouts: RawTimeouts) -> Result<Timeouts, ConfigError> {
        Ok(Timeouts {
            rollout: self.duration(
                timeouts.rollout,
                "timeouts.rollout",
                DEFAULT_ROLLOUT_TIMEOUT,
            )?,
            migration: self.duration(
                timeouts.migration,
                "timeouts.migration",
                DEFAULT_MIGRATION_TIMEOUT,
            )?,
            poll: match timeouts.poll {
                None => None,
                poll @ Some(_) => Some(self.duration(poll, "timeouts.poll", Duration::ZERO)?),
            },
            heartbeat: self.duration(
                timeouts.heartbeat,
                "timeouts.heartbeat",
                DEFAULT_HEARTBEAT,
            )?,
        })
    }
}

/// A positive duration such as `20m`, `90s`, `1h 30m` or `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|error| error.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// S3's rule for general purpose buckets: 3 to 63 characters, lowercase letters, digits, `.` and
/// `-`, starting and ending with a letter or digit, no `..`, not an IP address.
fn is_valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// ECR's rule: `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`, 2 to 256 long.
fn is_valid_repository_name(name: &str) -> bool {
    let is_component = |part: &str| {
        part.split(['.', '_', '-']).all(|run| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
    };
    (2..=256).contains(&name.len()) && name.split('/').all(is_component)
}

/// `os/arch` or `os/arch/variant`, each part made of lowercase letters, digits and `_`.
/// `us-east-1`, `us-gov-west-1`, `eusc-de-east-1`: a partition prefix, words, a number.
fn looks_like_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let lower = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase());
    match parts.as_slice() {
        [prefix, words @ .., number] if !words.is_empty() => {
            (2..=4).contains(&prefix.len())
                && lower(prefix)
                && words.iter().all(|word| lower(word))
                && (1..=2).contains(&number.len())
                && number.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

fn is_valid_platform(platform: &str) -> bool {
    let parts: Vec<&str> = platform.split('/').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Drops `.` components so paths read cleanly (`/app/.` → `/app`); leaves `..` alone.
fn tidy(path: &Path) -> PathBuf {
    path.components().collect()
}

/// Docker's tag rule: 1 to 128 of `[A-Za-z0-9_.-]`, the first a letter, digit or `_`.
pub fn is_tag(tag: &str) -> bool {
    tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        && tag
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte))
}

/// `repository[:tag]` or `repository@sha256:…`, with an optional registry host: lower-case path
/// components, no spaces, at most one tag or digest.
fn is_image_reference(image: &str) -> bool {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest
        && !(digest
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit())))
    {
        return false;
    }
    // A tag follows the last `:` after the last `/` (a `:` before it is a registry port).
    let (path, tag) = match name.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
        _ => (name, None),
    };
    let tag_ok = tag.is_none_or(is_tag);
    let mut parts = path.split('/').peekable();
    let host_ok = match parts.peek() {
        Some(first) if path.contains('/') && (first.contains('.') || first.contains(':')) => {
            let host = parts.next().unwrap_or_default();
            host.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b".-:".contains(&byte))
        }
        _ => true,
    };
    let path_ok = parts.all(|part| {
        !part.is_empty()
            && part.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte)
            })
    });
    tag_ok && host_ok && path_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units_and_length() {
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 5s "), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5").is_err(), "a bare number has no unit");
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(
            parse_duration("0s").is_err(),
            "zero would poll in a busy loop"
        );
    }

    #[test]
    fn repository_names_follow_ecr_rules() {
        for good in [
            "berth-example",
            "ab",
            "team/app",
            "a.b_c-d/e2",
            &"a".repeat(256),
        ] {
            assert!(is_valid_repository_name(good), "{good} should be valid");
        }
        for bad in [
            "a",
            "Berth",
            "app_",
            "-app",
            "a--b",
            "team//app",
            "/app",
            "app/",
            "a b",
            &"a".repeat(257),
        ] {
            assert!(!is_valid_repository_name(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for (name, valid) in [
            ("berth-state-123456789012-us-east-1", true),
            ("my.bucket", true),
            ("abc", true),
            ("ab", false),
            ("Upper", false),
            ("-start", false),
            ("end-", false),
            ("a..b", false),
            ("192.168.1.1", false),
            ("under_score", false),
            (&"a".repeat(64), false),
        ] {
            assert_eq!(is_valid_bucket_name(name), valid, "{name}");
        }
    }

    #[test]
    fn regions_look_like_aws_regions() {
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "eu-central-2",
            "cn-northwest-1",
            "eusc-de-east-1",
        ] {
            assert!(looks_like_region(good), "{good} should be valid");
        }
        for bad in [
            "us-east",
            "US-EAST-1",
            "us_east_1",
            "useast1",
            "us-east-1a",
            "-east-1",
            "us--1",
        ] {
            assert!(!looks_like_region(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn platforms_look_like_os_and_arch() {
        for good in ["linux/amd64", "linux/arm64/v8", "linux/386"] {
            assert!(is_valid_platform(good), "{good} should be valid");
        }
        for bad in [
            "linux",
            "amd64",
            "linux/",
            "/amd64",
            "Linux/AMD64",
            "linux/arm64/v8/x",
        ] {
            assert!(!is_valid_platform(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn image_references_have_a_path_and_at_most_a_tag_or_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for good in [
            "app".to_owned(),
            "app:v1".to_owned(),
            "127.0.0.1:5055/app:berth-cache-stg-assets".to_owned(),
            "123.dkr.ecr.us-east-1.amazonaws.com/team/app".to_owned(),
            format!("registry.example.com/app@{digest}"),
        ] {
            assert!(is_image_reference(&good), "{good} should be valid");
        }
        for bad in [
            "",
            "App:v1",
            "app:",
            "app:v 1",
            "app@sha256:abc",
            "registry.example.com//app",
        ] {
            assert!(!is_image_reference(bad), "{bad} should be invalid");
        }
    }
}
