//! `berth.toml` exactly as written: every key optional, nothing checked beyond TOML types.
//!
//! The top level and each `[env.NAME]` table are the same [`RawLayer`]; an environment is the top
//! level overlaid with its table ([`RawLayer::overlay`]). Values that `validate` checks keep their
//! position in the file ([`Spanned`]) so errors can point at them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// The whole file: shared defaults plus `[env.NAME]` tables.
pub type RawFile = RawLayer<BTreeMap<String, RawLayer>>;

/// One layer of settings. `Envs` is the type of the `env` key: the environment tables at the top
/// level, [`NotHere`] inside an environment.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLayer<Envs = NotHere> {
    pub repository: Option<Spanned<String>>,
    pub create_repository: Option<bool>,
    pub env_tag: Option<Spanned<String>>,
    pub containers: Option<Spanned<Vec<String>>>,
    pub migrate: Option<Spanned<String>>,
    pub branch: Option<String>,
    pub region: Option<Spanned<String>>,
    pub cluster: Option<Spanned<String>>,
    pub services: Option<Spanned<Vec<String>>>,
    pub build: Option<RawBuild>,
    pub migration: Option<RawMigration>,
    pub timeouts: Option<RawTimeouts>,
    pub state: Option<RawState>,
    pub on_failure: Option<Spanned<String>>,
    pub on_cancel: Option<Spanned<String>>,
    pub environment: Option<BTreeMap<String, String>>,
    pub remove_environment: Option<Spanned<Vec<String>>>,
    pub secrets: Option<BTreeMap<String, Spanned<String>>>,
    pub task_definitions: Option<BTreeMap<String, Spanned<String>>>,
    pub task_definition_vars: Option<Spanned<Vec<String>>>,
    pub schedules: Option<Spanned<Vec<String>>>,
    pub keep_revisions: Option<Spanned<i64>>,
    pub requires: Option<Spanned<String>>,
    pub promote_from: Option<Spanned<String>>,
    pub promotion: Option<Spanned<String>>,
    pub account: Option<Spanned<String>>,
    pub hooks: Option<RawHooks>,
    pub env: Option<Envs>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuild {
    pub context: Option<String>,
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    pub platform: Option<Spanned<String>>,
    pub args: Option<BTreeMap<String, String>>,
    pub secret_args: Option<Spanned<Vec<String>>>,
    pub builder: Option<Spanned<String>>,
    pub cache: Option<bool>,
    pub cache_from: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMigration {
    pub family: Option<String>,
    pub container: Option<String>,
    pub command: Option<Spanned<Vec<String>>>,
    pub capacity_provider_strategy: Option<Spanned<Vec<RawCapacityProvider>>>,
}

/// One item of a capacity-provider strategy, as ECS names its fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapacityProvider {
    pub capacity_provider: String,
    pub weight: Option<i64>,
    pub base: Option<i64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub bucket: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub create: Option<bool>,
    pub lease: Option<Spanned<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub rollout: Option<Spanned<String>>,
    pub migration: Option<Spanned<String>>,
    pub poll: Option<Spanned<String>>,
    pub heartbeat: Option<Spanned<String>>,
}

/// `[hooks]`: commands berth runs around a deploy; an environment's table sets or (with `""`)
/// clears each one.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    pub before_deploy: Option<String>,
    pub after_deploy: Option<String>,
    pub after_failure: Option<String>,
    pub before_migrate: Option<String>,
    pub after_migrate: Option<String>,
    pub timeout: Option<Spanned<String>>,
}

impl RawHooks {
    fn overlay(self, over: Self) -> Self {
        let Self {
            before_deploy,
            after_deploy,
            after_failure,
            before_migrate,
            after_migrate,
            timeout,
        } = self;
        Self {
            before_deploy: over.before_deploy.or(before_deploy),
            after_deploy: over.after_deploy.or(after_deploy),
            after_failure: over.after_failure.or(after_failure),
            before_migrate: over.before_migrate.or(before_migrate),
            after_migrate: over.after_migrate.or(after_migrate),
            timeout: over.timeout.or(timeout),
        }
    }
}

/// The `env` key inside an environment table: always an error, with the key's position.
#[derive(Debug, Clone)]
pub enum NotHere {}

impl<'de> Deserialize<'de> for NotHere {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "`env` tables cannot be nested: `[env.NAME]` is allowed only at the top level",
        ))
    }
}

impl<Envs> RawLayer<Envs> {
    /// This layer with `over` on top: a key set in `over` wins; tables (`build`, `migration`,
    /// `timeouts`, `hooks`, `environment`, `secrets`, `build.args`) merge key by
    /// key (`state` too); lists replace as a whole. The result has no `env` tables.
    pub fn overlay(self, over: RawLayer) -> RawLayer {
        // Exhaustive destructuring: a new key fails to compile until it is merged here.
        let Self {
            repository,
            create_repository,
            env_tag,
            containers,
            migrate,
            branch,
            region,
            cluster,
            services,
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
            requires,
            promote_from,
            promotion,
            account,
            hooks,
            env: _,
        } = self;
        RawLayer {
            repository: over.repository.or(repository),
            create_repository: over.create_repository.or(create_repository),
            env_tag: over.env_tag.or(env_tag),
            containers: over.containers.or(containers),
            migrate: over.migrate.or(migrate),
            branch: over.branch.or(branch),
            region: over.region.or(region),
            cluster: over.cluster.or(cluster),
            services: over.services.or(services),
            build: merge_tables(build, over.build, RawBuild::overlay),
            migration: merge_tables(migration, over.migration, RawMigration::overlay),
            timeouts: merge_tables(timeouts, over.timeouts, RawTimeouts::overlay),
            state: merge_tables(state, over.state, RawState::overlay),
            on_failure: over.on_failure.or(on_failure),
            on_cancel: over.on_cancel.or(on_cancel),
            environment: merge_maps(environment, over.environment),
            remove_environment: over.remove_environment.or(remove_environment),
            secrets: merge_maps(secrets, over.secrets),
            task_definitions: merge_maps(task_definitions, over.task_definitions),
            task_definition_vars: over.task_definition_vars.or(task_definition_vars),
            schedules: over.schedules.or(schedules),
            keep_revisions: over.keep_revisions.or(keep_revisions),
            requires: over.requires.or(requires),
            promote_from: over.promote_from.or(promote_from),
            promotion: over.promotion.or(promotion),
            account: over.account.or(account),
            hooks: merge_tables(hooks, over.hooks, RawHooks::overlay),
            env: None,
        }
    }
}

impl RawBuild {
    fn overlay(self, over: Self) -> Self {
        let Self {
            context,
            dockerfile,
            target,
            platform,
            args,
            secret_args,
            builder,
            cache,
            cache_from,
        } = self;
        Self {
            context: over.context.or(context),
            dockerfile: over.dockerfile.or(dockerfile),
            target: over.target.or(target),
            platform: over.platform.or(platform),
            args: merge_maps(args, over.args),
            secret_args: over.secret_args.or(secret_args),
            builder: over.builder.or(builder),
            cache: over.cache.or(cache),
            cache_from: over.cache_from.or(cache_from),
        }
    }
}

impl RawMigration {
    fn overlay(self, over: Self) -> Self {
        let Self {
            family,
            container,
            command,
            capacity_provider_strategy,
        } = self;
        Self {
            family: over.family.or(family),
            container: over.container.or(container),
            command: over.command.or(command),
            capacity_provider_strategy: over
                .capacity_provider_strategy
                .or(capacity_provider_strategy),
        }
    }
}

impl RawState {
    fn overlay(self, over: Self) -> Self {
        let Self {
            bucket,
            prefix,
            create,
            lease,
        } = self;
        Self {
            bucket: over.bucket.or(bucket),
            prefix: over.prefix.or(prefix),
            create: over.create.or(create),
            lease: over.lease.or(lease),
        }
    }
}

impl RawTimeouts {
    fn overlay(self, over: Self) -> Self {
        let Self {
            rollout,
            migration,
            poll,
            heartbeat,
        } = self;
        Self {
            rollout: over.rollout.or(rollout),
            migration: over.migration.or(migration),
            poll: over.poll.or(poll),
            heartbeat: over.heartbeat.or(heartbeat),
        }
    }
}

fn merge_tables<T>(base: Option<T>, over: Option<T>, overlay: fn(T, T) -> T) -> Option<T> {
    match (base, over) {
        (Some(base), Some(over)) => Some(overlay(base, over)),
        (base, over) => over.or(base),
    }
}

fn merge_maps<V>(
    base: Option<BTreeMap<String, V>>,
    over: Option<BTreeMap<String, V>>,
) -> Option<BTreeMap<String, V>> {
    merge_tables(base, over, |mut base, over| {
        base.extend(over);
        base
    })
}
