//! The deploy under the environment's lock, in its phases: the image and the revisions, the
//! rollout and the migration (and what follows a failed rollout), then what follows a landed
//! deploy.

use std::collections::BTreeMap;

use super::on_failure::{
    after_failed_migration, after_failed_rollout, after_failed_schedules, before_rollout,
};
use super::{Context, Report};
use crate::aws::arn;
use crate::aws::ecr::{self, Image};
use crate::current::Current;
use crate::error::Error;
use crate::flags::Resume;
use crate::settings::MigrateOrder;
use crate::settings::Promotion;
use crate::state::Record;
use crate::state::record::RecordedImage;
use crate::steps::migrate::{self, Migrated};
use crate::steps::prepare::Prepared;
use crate::steps::register::{self, FamilyPlan};
use crate::steps::rollout::{Cluster, Target, step as rollout};
use crate::steps::schedules;
use crate::steps::{Ledger, Step, cleanup};
use crate::steps::{image, promote};
use crate::taskdef::Described;
use crate::text::{code_list, with_causes};

/// The deploy proper, under the environment's lock: the image and the revisions, the rollout
/// and the migration, then what follows a landed deploy.
/// `opening` opens the deploy's record; it runs beside the image and the registration, which do
/// not need it (a rerun finds revisions by their deploy-id tag until the record names them).
pub(super) async fn locked<'r>(
    cx: &Context<'_>,
    prepared: Prepared,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    opening: impl Future<Output = Result<&'r mut Record, Error>>,
) -> Result<(), Error> {
    let (registered, record) =
        tokio::join!(image_and_revisions(cx, prepared, report, ledger), opening);
    let record = record?;
    let (revisions, image) = registered?;
    let note = revisions_note(&report.revisions, &image);
    // With the migration after the rollout (or none), the record's opening write noted each
    // service's revision from before: the revisions are written with the rollout's start,
    // beside the updates.
    let beside = if super::before::rollout_next(cx.settings) {
        Some(note)
    } else {
        record.update(note).await?;
        None
    };
    // The scheduled targets are surveyed while the rollout is waited on, not after it.
    let survey = schedules::step::start(
        &schedules::Clients::new(cx.config),
        cx.settings,
        cx.current.services.values(),
        &report.revisions,
        &record.value.schedules,
    );
    if let Some(answer) = cx.options.resume {
        super::resume::answer(cx, answer, report, ledger, record).await?;
        if answer == Resume::Rollback {
            return Ok(());
        }
    }
    roll_out_and_migrate(cx, &revisions, report, ledger, (&mut *record, beside)).await?;
    after_landing(cx, survey, report, ledger, record).await?;
    let image = report.image.as_ref().map_or("", |image| image.uri.as_str());
    ledger.reporter.info(&format!(
        "deploy `{}` finished: {image} on {}",
        cx.local.release.deploy_id,
        code_list(report.services.iter().map(|s| &s.service))
    ));
    Ok(())
}

/// The image built and pushed unless ECR has it, and the revisions (found or planned, and
/// checked, before the lock) registered.
async fn image_and_revisions(
    cx: &Context<'_>,
    prepared: Prepared,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
) -> Result<(BTreeMap<String, Described>, Image), Error> {
    let Context {
        settings,
        local,
        clients,
        lock,
        current,
        ..
    } = *cx;
    let image = match promote(cx, prepared.in_ecr.clone(), report, ledger).await? {
        Some(Promoted::There(promoted, image)) => {
            report.promoted = Some(promoted);
            image
        }
        promoted => {
            let in_ecr = match promoted {
                // Copied just now, or found there: the image step looks in ECR again.
                Some(Promoted::Here(promoted)) => {
                    report.promoted = Some(promoted);
                    None
                }
                _ => prepared.in_ecr.clone(),
            };
            let build = image::Build {
                release: &local.release,
                tag: &prepared.tag,
                platform: &prepared.platform,
                running: (prepared.running.as_ref()).map(|(i, s)| (i.as_str(), s.as_str())),
                in_ecr,
            };
            let (setup, repository) = (image::Setup::of(settings), &current.repository);
            let built = image::run(&clients.ecr, setup, &build, repository, lock, ledger).await?;
            report.build = built.1;
            built.0
        }
    };
    report.image = Some(image.clone());
    let revisions = register(cx, &image, prepared.families, ledger).await?;
    report.revisions = revisions
        .iter()
        .map(|(family, described)| (family.clone(), described.arn.clone()))
        .collect();
    Ok((revisions, image))
}

/// Where a promoted image is.
enum Promoted {
    /// In this environment's repository (copied now or before): the image step finds it.
    Here(promote::Promoted),
    /// In the source environment's repository (`promotion = "reference"`).
    There(promote::Promoted, Image),
}

/// `promote_from`, with the image tested there: the image copied into this environment's
/// repository, or named where it is. `None`: nothing is promoted (no `promote_from`, or an
/// untested image deployed with `--force`, which is built here).
/// `looked`: what ECR held for the tag when the preparation looked, if it did.
async fn promote(
    cx: &Context<'_>,
    looked: Option<Option<String>>,
    report: &Report,
    ledger: &mut Ledger<'_>,
) -> Result<Option<Promoted>, Error> {
    let (Some(promotion), Some(upstream), Some(tested)) = (
        cx.settings.promotion,
        cx.settings.requires.as_ref(),
        report.tested.as_ref().map(|tested| &tested.tested),
    ) else {
        return Ok(None);
    };
    if promotion == Promotion::Reference {
        let (repository, digest) = promote::source(&upstream.env, tested)?;
        let why = format!("pinned to `{}`'s image `{}`", upstream.env, tested.uri);
        ledger.skip(Step::Promote, why.clone());
        ledger.skip(Step::Build, why.clone());
        ledger.skip(Step::Push, why);
        let image = Image {
            repository: repository
                .rsplit_once('/')
                .map_or(repository.as_str(), |(_, name)| name)
                .to_owned(),
            tag: tested.tag.clone(),
            digest,
            uri: tested.uri.clone(),
        };
        let promoted = promote::Promoted {
            from: upstream.env.clone(),
            source: tested.uri.clone(),
            promotion,
            copied: None,
        };
        return Ok(Some(Promoted::There(promoted, image)));
    }
    let ecr = (&cx.clients.ecr, &cx.current.repository);
    let image = (tested, looked);
    let promoted = promote::run((cx.config, upstream), ecr, image, cx.lock, ledger).await?;
    Ok(Some(Promoted::Here(promoted)))
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

/// The image and the revisions pinned to it, for the record (until they are registered, the tag
/// in ECR is what a rerun goes by).
fn revisions_note(revisions: &BTreeMap<String, String>, image: &Image) -> rollout::Note<'static> {
    let recorded = RecordedImage {
        tag: image.tag.clone(),
        digest: image.digest.clone(),
        uri: image.uri.clone(),
    };
    let registered = revisions.clone();
    Box::new(move |r| {
        r.revisions = registered;
        r.image = Some(recorded);
    })
}

/// Each service onto its family's revision.
fn targets(current: &Current, revisions: &BTreeMap<String, Described>) -> Vec<Target> {
    current
        .families
        .iter()
        .map(|(service, family)| Target {
            service: service.clone(),
            task_definition: revisions[family].arn.clone(),
        })
        .collect()
}

/// The services onto the new revisions and the migration, in the order `migrate` says; a failed
/// rollout rolls every service back (`on_failure = "rollback"`). `beside`: the record's note
/// written with the rollout's start ([`rollout::run`]).
async fn roll_out_and_migrate(
    cx: &Context<'_>,
    revisions: &BTreeMap<String, Described>,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    (record, beside): (&mut Record, Option<rollout::Note<'_>>),
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
    let targets = targets(current, revisions);
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
    // Read a moment ago unless an image was built or the migration ran since.
    let fresh = report.build.is_none() && report.migration.is_none();
    let services = &mut report.services;
    let cluster = Cluster::of(settings);
    let rolled = rollout::run(
        &clients.ecs,
        cluster,
        (current, fresh),
        &targets,
        lock,
        (&mut *record, beside),
        ledger,
        services,
    );
    if let Err(error) = rolled.await {
        return Err(after_failed_rollout(cx, error, report, ledger, record).await);
    }
    timeline(cx, report, ledger, record).await;
    if let (MigrateOrder::After, Some(plan)) = (settings.migrate, &plan)
        && let Err(error) = migrate(cx, plan, report, ledger, record).await
    {
        return Err(after_failed_migration(cx, error, report, ledger, record).await);
    }
    Ok(())
}

/// Where the rollout's time went, per service, said and kept in the report and the record. Read
/// once the rollout is over; a timeline that cannot be read is a warning.
async fn timeline(
    cx: &Context<'_>,
    report: &mut Report,
    ledger: &mut Ledger<'_>,
    record: &mut Record,
) {
    let read = crate::steps::rollout::timeline::read(
        &cx.clients.ecs,
        &cx.settings.cluster,
        &report.services,
    );
    match read.await {
        Ok(timeline) => {
            for service in &timeline {
                ledger
                    .reporter
                    .info(&crate::steps::rollout::timeline::line(service));
            }
            report.timeline.clone_from(&timeline);
            record.stage(move |r| r.timeline = timeline);
        }
        Err(error) => ledger.warn(format!(
            "the rollout's timeline was not read: {}",
            with_causes(&error)
        )),
    }
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
    // `before_migrate` goes with a new attempt: none for a run that attaches to a task started
    // before, resumes a claim, or finds the migration done or refused.
    use crate::state::record::AttemptOutcome;
    let latest = record.value.migration.last().map(|a| a.outcome);
    let done = latest == Some(AttemptOutcome::Succeeded);
    let new_attempt = match latest {
        None => true,
        Some(AttemptOutcome::Failed) => plan.retry,
        Some(_) => false,
    };
    if new_attempt {
        super::hooked::before_migrate(cx.settings, report, record, ledger.reporter).await?;
    }
    let migrated = migrate::step::run(ecs, logs, setup, plan, record, ledger).await;
    report.migration = match &migrated {
        Ok(migrated) => Some(migrated.clone()),
        Err(_) => Migrated::latest(&record.value),
    };
    if migrated.is_ok() && !done {
        super::hooked::after_migrate(cx.settings, report, record, ledger.reporter).await;
    }
    migrated.map(|_| ())
}

/// What follows a landed deploy: the environment tag, the scheduled targets, and the cleanup of
/// old revisions. The tag and the cleanup are housekeeping: their failures are warnings.
async fn after_landing(
    cx: &Context<'_>,
    survey: Option<schedules::step::Early>,
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
    let (cost, moved) = schedules::step::run(survey, record, lock, ledger).await;
    report.survey = cost;
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
