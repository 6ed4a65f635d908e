//! What follows a failure under the lock, by `on_failure`: a failed rollout, a migration that
//! failed before or after it, a scheduled target that could not be moved. With `"rollback"` every
//! service this deploy moved goes back (and the targets it moved), and the error says where the
//! environment is.

use super::{Context, Report};
use crate::aws::arn;
use crate::current::Current;
use crate::error::Error;
use crate::settings::OnFailure;
use crate::state::Record;
use crate::steps::rollout::{Rolled, step as rollout};
use crate::steps::schedules;
use crate::steps::{Ledger, Step};
use crate::text::with_causes;

/// The failed step's verdict, told at once; then the restore, a step of its own, so that its
/// time is told and recorded apart from the failure's.
fn restoring(ledger: &mut Ledger<'_>, failure: &Error) {
    ledger.fail(failure);
    ledger.start(Step::Restore);
}

/// Every service this deploy moved, back to the revision it ran before (`rolled_back` in the
/// report). The restore step ends here when it went well; a failure ends it with the error.
async fn roll_back(
    cx: &Context<'_>,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) -> Result<(), Error> {
    let back = &mut report.rolled_back;
    let (ecs, settings, lock) = (&cx.clients.ecs, cx.settings, cx.lock);
    let reporter = ledger.reporter;
    let talk = (reporter, &mut ledger.warnings);
    rollout::roll_back(ecs, settings, lock, record, talk, back).await?;
    ledger.done(if back.is_empty() {
        "no service had moved".to_owned()
    } else {
        on_revisions(back, "back on")
    });
    Ok(())
}

/// "`web` on `web:4`, `devops` on `devops:4`": each service and its revision, `on` the words
/// between.
fn on_revisions(rolled: &[Rolled], on: &str) -> String {
    rolled
        .iter()
        .map(|r| format!("`{}` {on} `{}`", r.service, arn::short(&r.task_definition)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the schema is after a failed migration; nothing to say when it never ran (its
/// `before_migrate` hook failed).
fn schema(summary: &str) -> &'static str {
    if summary.contains("the migration did not run") {
        ""
    } else {
        "; the schema is as the migration left it"
    }
}

/// A migration that failed before the rollout: the error says that the services did not move.
pub(super) fn before_rollout(error: Error, current: &Current) -> Error {
    match error {
        Error::MigrationFailed { summary, hint } => Error::MigrationFailed {
            summary: format!(
                "{summary}; the services were not moved (they run {}){}",
                running(current),
                schema(&summary)
            ),
            hint,
        },
        other => other,
    }
}

/// A migration that failed after the rollout: the new code runs on the schema the migration left.
/// `on_failure = "rollback"` moves the services back to the code from before; the error says
/// where the code is either way.
pub(super) async fn after_failed_migration(
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
    let ours = on_revisions(&report.services, "on");
    let code = match cx.settings.on_failure {
        OnFailure::Leave => format!(
            "this deploy's code runs ({ours}), the scheduled tasks run the revisions from before (`on_failure = \"leave\"`)"
        ),
        OnFailure::Rollback => {
            restoring(ledger, &error);
            match roll_back(cx, report, ledger, record).await {
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
            summary: format!("{summary}; {code}{}", schema(&summary)),
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
pub(super) async fn after_failed_schedules(
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
    restoring(ledger, &error);
    let (settings, lock, reporter) = (cx.settings, cx.lock, ledger.reporter);
    let clients = schedules::Clients::new(cx.config);
    let cluster = schedules::cluster_arn(cx.current.services.values(), &settings.cluster);
    let listed = settings.schedules.as_deref();
    let moved = &record.value.schedules.clone();
    let targets = schedules::move_back(&clients, cluster, listed, moved, lock, reporter).await;
    let services = roll_back(cx, report, ledger, record).await;
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
    on_revisions(&report.rolled_back, "on")
}

/// `on_failure = "rollback"`: after a failed rollout (a service's update, a deployment or a
/// timeout; not any other error), every service this deploy moved goes back, and the error says
/// where each is; it says when the rollback failed too.
pub(super) async fn after_failed_rollout(
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
    restoring(ledger, &error);
    if let Err(rollback) = roll_back(cx, report, ledger, record).await {
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
