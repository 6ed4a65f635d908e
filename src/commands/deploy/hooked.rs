//! The deploy's hooks (`[hooks]` in berth.toml), where they sit and what their failure does:
//! - `before_deploy`, once the lock is taken and before any change, once per deploy (a rerun of
//!   a deploy that started does not run it again); its failure gives the lock back as it was and
//!   ends the run with exit 2: nothing was written (exit 1 when something stays: the state
//!   bucket an environment's first deploy made, a lock that could not go back);
//! - `before_migrate` before each migration attempt; its failure fails the migration (exit 3),
//!   which did not run;
//! - `after_migrate`, `after_deploy` and `after_failure`: their failure is a warning.
//!
//! The record says which hooks ran, and how.

use super::Report;
use crate::error::Error;
use crate::hooks::{self, Facts, Hook, Runner};
use crate::report::{Reporter, warn};
use crate::settings::Settings;
use crate::state::record::{self, HookOutcome, HookRan, RunState};
use crate::state::{Held, Record, Store};

/// What a hook is told of the deploy, from its report so far.
pub(super) fn facts(settings: &Settings, report: &Report, store: Option<&Store>) -> Facts {
    let record =
        store.map(|store| store.url(&format!("{}/{}.json", record::FOLDER, report.deploy_id)));
    Facts {
        deploy_id: report.deploy_id.clone(),
        env: settings.env.clone(),
        commit: report.commit.clone(),
        tag: report
            .image
            .as_ref()
            .map(|i| i.tag.clone())
            .unwrap_or_default(),
        digest: report.image.as_ref().map(|i| i.digest.clone()),
        image: report.image.as_ref().map(|i| i.uri.clone()),
        services: settings.services.clone(),
        record,
        ..Facts::default()
    }
}

fn runner<'a>(settings: &'a Settings, masker: &'a crate::text::Masker) -> Runner<'a> {
    Runner {
        hooks: &settings.hooks,
        dir: settings
            .config
            .parent()
            .unwrap_or(std::path::Path::new(".")),
        masker,
    }
}

/// `before_deploy`, unless this deploy started before (`started`). On failure the lock goes
/// back as it was, and the error says whether it could.
pub(super) async fn before_deploy(
    settings: &Settings,
    (report, tag): (&mut Report, &str),
    held: &mut Held,
    (started, bucket_made): (bool, bool),
    reporter: &dyn Reporter,
) -> Result<(), Error> {
    if Hook::BeforeDeploy.command(&settings.hooks).is_none() {
        return Ok(());
    }
    if started {
        reporter.info("hook `before_deploy`: ran when this deploy started; not again");
        return Ok(());
    }
    let mut facts = facts(settings, report, held.lock.as_ref().map(|l| l.store()));
    facts.tag = tag.to_owned();
    let masker = hooks::masker(settings);
    let Some(ran) = runner(settings, &masker)
        .run(Hook::BeforeDeploy, &facts, reporter)
        .await
    else {
        return Ok(());
    };
    report.hooks.push(ran.clone());
    if ran.outcome == HookOutcome::Succeeded {
        return Ok(());
    }
    let store = held.lock.as_ref().map(|l| l.store().url(""));
    let restored = match held.lock.take() {
        Some(lock) => lock.give_back().await.unwrap_or(false),
        None => false,
    };
    let left = if !restored {
        Some("the lock could not go back as it was (it changed while the hook ran, or S3 refused), so it was released instead".to_owned())
    } else if bucket_made {
        Some(format!(
            "the state bucket this first deploy of `{}` created stays ({})",
            settings.env,
            store.unwrap_or_default()
        ))
    } else {
        None
    };
    Err(Error::HookFailed {
        hook: Hook::BeforeDeploy.name(),
        summary: ran.summary.unwrap_or_else(|| "failed".to_owned()),
        left,
    })
}

/// `before_migrate`: a failure is the migration's, which did not run.
pub(super) async fn before_migrate(
    settings: &Settings,
    report: &mut Report,
    record: &mut Record,
    reporter: &dyn Reporter,
) -> Result<(), Error> {
    let facts = facts(settings, report, Some(record.store()));
    let masker = hooks::masker(settings);
    let Some(ran) = runner(settings, &masker)
        .run(Hook::BeforeMigrate, &facts, reporter)
        .await
    else {
        return Ok(());
    };
    noted(report, record, &ran);
    if ran.outcome == HookOutcome::Succeeded {
        return Ok(());
    }
    Err(Error::MigrationFailed {
        summary: format!(
            "hook `before_migrate` {}: the migration did not run",
            ran.summary.as_deref().unwrap_or("failed")
        ),
        hint: "its output above says why; fix it (or `[hooks] before_migrate` in berth.toml) and rerun the same command: the migration runs once the hook succeeds".to_owned(),
    })
}

/// `after_migrate`: a failure is a warning.
pub(super) async fn after_migrate(
    settings: &Settings,
    report: &mut Report,
    record: &mut Record,
    reporter: &dyn Reporter,
) {
    let facts = facts(settings, report, Some(record.store()));
    let masker = hooks::masker(settings);
    if let Some(ran) = runner(settings, &masker)
        .run(Hook::AfterMigrate, &facts, reporter)
        .await
    {
        noted(report, record, &ran);
        if ran.outcome != HookOutcome::Succeeded {
            warn(reporter, &mut report.warnings, failed_after(&ran));
        }
    }
}

/// `after_deploy` when the deploy succeeded, `after_failure` when it failed (or was rolled
/// back, interrupted, or lost its lock), for a deploy that took the lock; not for a pause, nor
/// for a `before_deploy` hook that stopped it. Runs before the record's last write, which says
/// how the hook went.
pub(super) async fn after(
    settings: &Settings,
    result: &Result<(), Error>,
    report: &mut Report,
    held: &mut Held,
    reporter: &dyn Reporter,
) {
    let Some(record) = held.record.as_mut() else {
        return;
    };
    let rolled_back = record.value.state == RunState::RolledBack;
    let (hook, outcome) = match result {
        Err(Error::Paused { .. } | Error::HookFailed { .. }) => return,
        Ok(()) if !rolled_back => (Hook::AfterDeploy, "succeeded"),
        _ if rolled_back => (Hook::AfterFailure, "rolled_back"),
        Err(Error::Interrupted) => (Hook::AfterFailure, "interrupted"),
        Err(Error::LockLost { .. }) => (Hook::AfterFailure, "lost"),
        _ => (Hook::AfterFailure, "failed"),
    };
    let mut facts = facts(settings, report, Some(record.store()));
    facts.outcome = Some(outcome.to_owned());
    facts.error = result.as_ref().err().map(|e| crate::text::with_causes(e));
    let masker = hooks::masker(settings);
    let mut runner = runner(settings, &masker);
    // Cancelled (CircleCI's SIGTERM gives a job seconds): the hook gets little time, so that the
    // record is written and the lock released before the job is killed.
    let capped;
    if outcome == "interrupted" {
        capped = crate::settings::HookSettings {
            timeout: settings.hooks.timeout.min(INTERRUPTED_HOOK_TIMEOUT),
            ..settings.hooks.clone()
        };
        runner.hooks = &capped;
    }
    if let Some(ran) = runner.run(hook, &facts, reporter).await {
        noted(report, record, &ran);
        if ran.outcome != HookOutcome::Succeeded {
            warn(reporter, &mut report.warnings, failed_after(&ran));
        }
    }
}

/// The hook's run in the report and, with the record's next write, in the record.
fn noted(report: &mut Report, record: &mut Record, ran: &HookRan) {
    report.hooks.push(ran.clone());
    let ran = ran.clone();
    record.stage(move |r| r.hooks.push(ran));
}

fn failed_after(ran: &HookRan) -> String {
    format!(
        "hook `{}` {}: the deploy's outcome stands",
        ran.hook,
        ran.summary.as_deref().unwrap_or("failed")
    )
}

/// How long `after_failure` may run for a cancelled deploy.
const INTERRUPTED_HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
