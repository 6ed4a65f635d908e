//! The tables of berth.toml, each checked whole: `[build]`, `[migration]` (with its capacity
//! providers), `[state]` and `[timeouts]`.

use std::path::Path;

use toml::Spanned;

use super::check::Check;
use super::names::{is_image_reference, is_valid_bucket_name, is_valid_platform, tidy};
use super::raw::{RawBuild, RawCapacityProvider, RawHooks, RawMigration, RawState, RawTimeouts};
use super::validate::{
    DEFAULT_CONTAINER, DEFAULT_HEARTBEAT, DEFAULT_HOOK_TIMEOUT, DEFAULT_LEASE,
    DEFAULT_MIGRATION_COMMAND, DEFAULT_MIGRATION_TIMEOUT, DEFAULT_POLL, DEFAULT_ROLLOUT_TIMEOUT,
    MIN_LEASE,
};
use super::{
    BuildSettings, Builder, CapacityProvider, HookSettings, MigrationSettings, StateSettings,
    Timeouts,
};
use crate::error::ConfigError;

impl Check<'_> {
    /// `build.builder`: `auto`, `classic` or `buildkit`.
    fn builder(&self, builder: Option<Spanned<String>>) -> Result<Builder, ConfigError> {
        Ok(match builder {
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
        })
    }

    pub(super) fn build(
        &self,
        build: RawBuild,
        config_folder: &Path,
    ) -> Result<BuildSettings, ConfigError> {
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
        let builder = self.builder(build.builder)?;
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

    pub(super) fn migration(
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
    pub(super) fn capacity(
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

    pub(super) fn state(
        &self,
        state: RawState,
        repository: &str,
    ) -> Result<StateSettings, ConfigError> {
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

    pub(super) fn timeouts(&self, timeouts: RawTimeouts) -> Result<Timeouts, ConfigError> {
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
            poll: self.duration(timeouts.poll, "timeouts.poll", DEFAULT_POLL)?,
            heartbeat: self.duration(
                timeouts.heartbeat,
                "timeouts.heartbeat",
                DEFAULT_HEARTBEAT,
            )?,
        })
    }

    /// `[hooks]`: an empty command is no hook (an environment clears a shared one with `""`).
    pub(super) fn hooks(&self, hooks: RawHooks) -> Result<HookSettings, ConfigError> {
        let command = |c: Option<String>| c.filter(|c| !c.trim().is_empty());
        Ok(HookSettings {
            before_deploy: command(hooks.before_deploy),
            after_deploy: command(hooks.after_deploy),
            after_failure: command(hooks.after_failure),
            before_migrate: command(hooks.before_migrate),
            after_migrate: command(hooks.after_migrate),
            timeout: self.duration(hooks.timeout, "hooks.timeout", DEFAULT_HOOK_TIMEOUT)?,
        })
    }
}
