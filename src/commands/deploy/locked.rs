//! The deploy under the environment's lock, in its phases: the image and the revisions, the
//! rollout and the migration (and what follows a failed rollout), then what follows a landed
//! deploy.

use std::collections::BTreeMap;

use super::{Context, Report};
use crate::aws::arn;
use crate::aws::ecr::{self, Image};
use crate::current::Current;
use crate::error::Error;
use crate::settings::{MigrateOrder, OnFailure};
use crate::state::Record;
use crate::state::record::RecordedImage;
use crate::steps::image;
use crate::steps::migrate::{self, Migrated};
use crate::steps::prepare::Prepared;
use crate::steps::register::{self, FamilyPlan};
use crate::steps::rollout::{Cluster, Target, step as rollout};
use crate::steps::schedules;
use crate::steps::{Ledger, Step, cleanup};
use crate::taskdef::Described;
use crate::text::{code_list, with_causes};

/// The deploy proper, under the environment's lock: the image and the revisions, the rollout
/// and the migration, then what follows a landed deploy.
pub(super) async fn locked(
    cx: &Context<'_>,
    prepared: Prepared,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Result<(), Error> {
    let revisions = image_and_revisions(cx, prepared, report, ledger, record).await?;
    roll_out_and_migrate(cx, &revisions, report, ledger, record).await?;
    after_landing(cx, report, ledger, record).await?;
    let image = report.image.as_ref().map_or("", |image| image.uri.as_str());
    ledger.reporter.info(&format!(
        "deploy `{}` finished: {image} on {}",
        cx.local.release.deploy_id,
        code_list(report.services.iter().map(|s| &s.service))
    ));
    Ok(())
}

/// The image built and pushed unless ECR has it, and the revisions (found or planned, and
/// checked, before the lock) registered and recorded.
async fn image_and_revisions(
    cx: &Context<'_>,
    prepared: Prepared,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Result<BTreeMap<String, Described>, Error> {
    let Context {
        settings,
        local,
        clients,
        lock,
        current,
        ..
    } = *cx;
    let build = image::Build {
        release: &local.release,
        tag: &prepared.tag,
        platform: &prepared.platform,
        running: prepared
            .running
            .as_ref()
            .map(|(image, service)| (image.as_str(), service.as_str())),
    };
    let (image, built) = image::run(
        &clients.ecr,
        image::Setup::of(settings),
        &build,
        &current.repository,
        lock,
        ledger,
    )
    .await?;
    report.image = Some(image.clone());
    report.build = built;
    let revisions = register(cx, &image, prepared.families, ledger).await?;
    report.revisions = revisions
        .iter()
        .map(|(family, described)| (family.clone(), described.arn.clone()))
        .collect();
    record_revisions(record, &report.revisions, &image).await?;
    Ok(revisions)
}

/// Registers the planned revisions pinned to the image, or finds them registered by an earlier
/// run of this deploy.
async fn register(
    cx: &Context<'_>,
    image: &Image,
    families: BTreeMap<String, FamilyPlan>,
    ledger: &mut Ledger<'_>,
) -> Result<BTreeMap<String, Described>, Error> {
    let reuse = register::all_registered(&families);
    if !reuse {
        ledger.start(Step::Register);
        cx.lock.check()?;
    }
    let revisions = register::register(
        &cx.clients.ecs,
        &cx.clients.tagging,
        &cx.local.release,
        image,
        cx.settings,
        families,
        ledger.reporter,
    )
    .await?;
    let names: Vec<&str> = revisions.values().map(|d| arn::short(&d.arn)).collect();
    if reuse {
        ledger.skip(
            Step::Register,
            format!("{} tagged with this deploy id", names.join(", ")),
        );
    } else {
        ledger.done(names.join(", "));
    }
    Ok(revisions)
}

/// The image is recorded with the revisions pinned to it: until they are registered, the tag in
/// ECR is what a rerun goes by.
async fn record_revisions(
    record: &mut Record,
    revisions: &BTreeMap<String, String>,
    image: &Image,
) -> Result<(), Error> {
    let recorded = RecordedImage {
        tag: image.tag.clone(),
        digest: image.digest.clone(),
    };
    if record.value.revisions != *revisions || record.value.image.as_ref() != Some(&recorded) {
        let registered = revisions.clone();
        record
            .update(|r| {
                r.revisions = registered;
                r.image = Some(recorded);
            })
            .await?;
    }
    Ok(())
}

/// The services onto the new revisions and the migration, in the order `migrate` says; a failed
/// rollout rolls every service back (`on_failure = "rollback"`).
async fn roll_out_and_migrate(
    cx: &Context<'_>,
    revisions: &BTreeMap<String, Described>,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Result<(), Error> {
    let Context {
        settings,
        options,
        local,
        clients,
        lock,
        current,
        ..
    } = *cx;
    let targets: Vec<Target> = current
        .families
        .iter()
        .map(|(service, family)| Target {
            service: service.clone(),
            task_definition: revisions[family].arn.clone(),
        })
        .collect();
    let web = &current.services[&settings.services[0]];
    let plan = revisions
        .get(&current.migration_family)
        .map(|revision| migrate::Plan {
            revision,
            web,
            deploy_id: &local.release.deploy_id,
            retry: options.retry_migration,
            lock,
        });
    if let (MigrateOrder::Before, Some(plan)) = (settings.migrate, &plan) {
        migrate(cx, plan, report, ledger, record)
            .await
            .map_err(|error| before_rollout(error, current))?;
    }
    let services = &mut report.services;
    let cluster = Cluster::of(settings);
    let rolled = rollout::run(
        &clients.ecs,
        cluster,
        current,
        &targets,
        lock,
        record,
        ledger,
        services,
    );
    if let Err(error) = rolled.await {
        return Err(after_failed_rollout(cx, error, report, ledger, record).await);
    }
    if let (MigrateOrder::After, Some(plan)) = (settings.migrate, &plan)
        && let Err(error) = migrate(cx, plan, report, ledger, record).await
    {
        return Err(after_failed_migration(cx, error, report, ledger, record).await);
    }
    Ok(())
}

/// The migration; the report gets its task and exit codes also when it failed.
async fn migrate(
    cx: &Context<'_>,
    plan: &migrate::Plan<'_>,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Result<(), Error> {
    let (ecs, logs) = (&cx.clients.ecs, &cx.clients.logs);
    let setup = migrate::Setup::of(cx.settings);
    let migrated = migrate::step::run(ecs, logs, setup, plan, record, ledger).await;
    report.migration = match &migrated {
        Ok(migrated) => Some(migrated.clone()),
        Err(_) => Migrated::latest(&record.value),
    };
    migrated.map(|_| ())
}

/// A migration that failed before the rollout: the error says that the services did not move.
fn before_rollout(error: Error, current: &Current) -> Error {
    match error {
        Error::MigrationFailed { summary, hint } => Error::MigrationFailed {
            summary: format!(
                "{summary}; the services were not moved (they run {}); the schema is as the migration left it",
                running(current)
            ),
            hint,
        },
        other => other,
    }
}

/// A migration that failed after the rollout: the new code runs on the schema the migration left.
/// `on_failure = "rollback"` moves the services back to the code from before; the error says
/// where the code is either way.
async fn after_failed_migration(
    cx: &Context<'_>,
    error: Error,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Error {
    // A migration that could not start (`ecs:RunTask` denied) leaves the new code on the old
    // schema as much as one that failed; an interrupt or a lost lock stops without a change.
    let failed = matches!(
        error,
        Error::MigrationFailed { .. } | Error::AccessDenied { .. } | Error::Aws { .. }
    );
    if !failed {
        return error;
    }
    let ours = report
        .services
        .iter()
        .map(|r| format!("`{}` on `{}`", r.service, arn::short(&r.task_definition)))
        .collect::<Vec<_>>()
        .join(", ");
    let code = match cx.settings.on_failure {
        OnFailure::Leave => format!(
            "this deploy's code runs ({ours}), the scheduled tasks run the revisions from before (`on_failure = \"leave\"`)"
        ),
        OnFailure::Rollback => {
            let back = &mut report.rolled_back;
            let (ecs, settings, lock) = (&cx.clients.ecs, cx.settings, cx.lock);
            match rollout::roll_back(ecs, settings, lock, record, ledger.reporter, back).await {
                Ok(()) if !report.rolled_back.is_empty() => {
                    format!("rolled back: {}", went_back(report))
                }
                Ok(()) => format!("this deploy's code runs ({ours})"),
                Err(rollback) => format!(
                    "this deploy's code runs ({ours}): rolling the services back failed: {}",
                    with_causes(&rollback)
                ),
            }
        }
    };
    match error {
        Error::MigrationFailed { summary, hint } => Error::MigrationFailed {
            summary: format!("{summary}; {code}; the schema is as the migration left it"),
            hint,
        },
        other if !report.rolled_back.is_empty() => Error::RolledBack {
            failure: format!("the migration did not start: {}", with_causes(&other)),
            back: went_back(report),
            hint: other.hint(),
        },
        other => other,
    }
}

/// A scheduled target that could not be moved (`events:PutTargets` denied, say) after the
/// services and the migration landed: with `on_failure = "rollback"` the targets already moved
/// and the services go back, so the environment runs one commit; the error says so.
async fn after_failed_schedules(
    cx: &Context<'_>,
    error: Error,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Error {
    let failed = matches!(error, Error::AccessDenied { .. } | Error::Aws { .. });
    if !failed || cx.settings.on_failure != OnFailure::Rollback {
        return error;
    }
    let (settings, lock, reporter) = (cx.settings, cx.lock, ledger.reporter);
    let clients = schedules::Clients::new(cx.config);
    let cluster = schedules::cluster_arn(cx.current.services.values(), &settings.cluster);
    let listed = settings.schedules.as_deref();
    let moved = &record.value.schedules.clone();
    let targets = schedules::move_back(&clients, cluster, listed, moved, lock, reporter).await;
    let back = &mut report.rolled_back;
    let services =
        rollout::roll_back(&cx.clients.ecs, settings, lock, record, reporter, back).await;
    match (targets, services) {
        (Ok(targets), Ok(())) => {
            let services = went_back(report);
            let mut back: Vec<String> = Some(services)
                .filter(|s| !s.is_empty())
                .into_iter()
                .collect();
            back.extend(targets.iter().map(|t| {
                format!(
                    "{} on `{}`",
                    schedules::label(&t.name, &t.target),
                    arn::short(&t.to)
                )
            }));
            Error::RolledBack {
                failure: with_causes(&error),
                back: back.join(", "),
                hint: error.hint(),
            }
        }
        (Err(again), _) | (_, Err(again)) => Error::RolloutFailed {
            service: "the environment".to_owned(),
            reason: format!(
                "{}; moving the services and scheduled targets back failed too: {}",
                with_causes(&error),
                with_causes(&again)
            ),
        },
    }
}

/// Each service's revision now, as the deploy found it.
fn running(current: &Current) -> String {
    current
        .services
        .iter()
        .map(|(name, service)| {
            format!(
                "`{name}` on `{}`",
                arn::short(service.task_definition().unwrap_or("?"))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// After a rollback: each service ends on the revision it went back to. Says which, as
/// "`web` on `web:3`, `devops` on `devops:3`".
fn went_back(report: &mut Report) -> String {
    for gone_back in &report.rolled_back {
        if let Some(rolled) = report
            .services
            .iter_mut()
            .find(|r| r.service == gone_back.service)
        {
            rolled.ends_on = Some(gone_back.task_definition.clone());
        }
    }
    report
        .rolled_back
        .iter()
        .map(|r| format!("`{}` on `{}`", r.service, arn::short(&r.task_definition)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `on_failure = "rollback"`: after a failed rollout (a service's update, a deployment or a
/// timeout; not any other error), every service this deploy moved goes back, and the error says
/// where each is; it says when the rollback failed too.
async fn after_failed_rollout(
    cx: &Context<'_>,
    error: Error,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Error {
    let rollout_failed = matches!(
        error,
        Error::RolloutFailed { .. } | Error::RolloutTimeout { .. } | Error::UpdateFailed { .. }
    );
    if !rollout_failed || cx.settings.on_failure != OnFailure::Rollback {
        return error;
    }
    let back = &mut report.rolled_back;
    let (ecs, settings, lock) = (&cx.clients.ecs, cx.settings, cx.lock);
    if let Err(rollback) =
        rollout::roll_back(ecs, settings, lock, record, ledger.reporter, back).await
    {
        return Error::RolloutFailed {
            service: "the environment".to_owned(),
            reason: format!(
                "{}; rolling the services back failed too: {}",
                with_causes(&error),
                with_causes(&rollback)
            ),
        };
    }
    if report.rolled_back.is_empty() {
        return error;
    }
    let back = went_back(report);
    let hint = match &error {
        Error::RolloutTimeout { .. } => "the cause is the newest failing task's (above); if the services only need longer to become healthy, raise `timeouts.rollout`".to_owned(),
        other => other.hint(),
    };
    Error::RolledBack {
        failure: with_causes(&error),
        back,
        hint,
    }
}

/// What follows a landed deploy: the environment tag, the scheduled targets, and the cleanup of
/// old revisions. The tag and the cleanup are housekeeping: their failures are warnings.
async fn after_landing(
    cx: &Context<'_>,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Result<(), Error> {
    let Context {
        settings,
        config,
        clients,
        lock,
        current,
        ..
    } = *cx;
    let reporter = ledger.reporter;
    // The environment tag names what is deployed: it moves once the deploy has landed, and a
    // failure to move it does not undo that.
    if let (Some(tag), Some(image)) = (&settings.env_tag, &report.image) {
        match ecr::move_tag(&clients.ecr, &current.repository, &image.digest, tag).await {
            Ok(true) => reporter.info(&format!("moved tag `{tag}` to {}", image.digest)),
            Ok(false) => {}
            Err(error) => ledger.warn(format!(
                "the deploy landed, but tag `{tag}` was not moved to {}: {}",
                image.digest,
                with_causes(&error)
            )),
        }
    }
    let moved = schedules::step::run(
        &schedules::Clients::new(config),
        settings,
        current.services.values(),
        &report.revisions,
        record,
        lock,
        ledger,
    )
    .await;
    report.schedules = match moved {
        Ok(moved) => moved,
        Err(error) => {
            report.schedules = record.value.schedules.clone();
            return Err(after_failed_schedules(cx, error, report, ledger, record).await);
        }
    };
    if let Some(setup) = cleanup::Setup::of(settings) {
        let revisions = &report.revisions;
        match cleanup::run(config, setup, revisions, record, lock, ledger).await {
            Ok(deregistered) => report.deregistered = deregistered,
            Err(error) => ledger.warn(format!(
                "the deploy landed, but old revisions were not deregistered: {}",
                with_causes(&error)
            )),
        }
    }
    Ok(())
}
