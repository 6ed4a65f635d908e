//! `berth plan` as text: the image, each family's changes key by key, the services, the
//! scheduled targets and the migration.

use serde_json::Value;

use crate::aws::arn;
use crate::commands::plan::{
    Change, Plan, PlannedFamily, PlannedMigration, PlannedPromotion, PlannedService,
};
use crate::settings::MigrateOrder;
use crate::settings::Promotion;
use crate::steps::schedules;

/// The plan as lines for a person.
pub fn lines(plan: &Plan) -> Vec<String> {
    let mut lines = vec![format!(
        "plan for `{}`: deploy `{}`, commit {}",
        plan.env,
        plan.deploy_id,
        crate::text::short_sha(&plan.commit)
    )];
    lines.push(match &plan.image.digest {
        Some(digest) => format!(
            "image: `{}` is in ECR ({digest}): no build, no push",
            plan.image.tag
        ),
        None => format!("image: `{}` would be built and pushed", plan.image.tag),
    });
    lines.push(format!("  named by {}", plan.image.content.describe()));
    if let Some(promotion) = &plan.image.promotion {
        lines.push(promoted(promotion));
    }
    lines.extend(plan.families.iter().flat_map(family));
    lines.extend(plan.services.iter().map(service));
    lines.extend(plan.drift.iter().map(|d| format!("  drift: {}", d.line())));
    lines.extend(plan.schedules.iter().map(|target| {
        format!(
            "{}: `{}` → `{}`",
            schedules::label(&target.name, &target.target),
            arn::short(&target.from),
            arn::short(&target.to)
        )
    }));
    lines.extend(plan.migration.iter().map(migration));
    lines.push(if plan.changes {
        "a deploy would change the environment".to_owned()
    } else {
        "nothing to deploy: everything is as this deploy would leave it".to_owned()
    });
    lines
}

/// Where a promoted image comes from, and what its copy would move.
fn promoted(promotion: &PlannedPromotion) -> String {
    let from = format!(
        "  from `{}` deploy `{}`: `{}`",
        promotion.from, promotion.deploy_id, promotion.source
    );
    match (&promotion.promotion, &promotion.copy) {
        (Promotion::Reference, _) => format!("{from}, referenced where it is"),
        (Promotion::Copy, None) => format!("{from}, copied already"),
        (Promotion::Copy, Some(copy)) => format!(
            "{from}, a copy of {} blob{} ({} bytes; {} there already) and {} manifest{}",
            copy.blobs_copied,
            if copy.blobs_copied == 1 { "" } else { "s" },
            copy.bytes_copied,
            copy.blobs_present,
            copy.manifests,
            if copy.manifests == 1 { "" } else { "s" }
        ),
    }
}

/// A family's revision this deploy registered, or the new revision's changes, one line per key.
fn family(family: &PlannedFamily) -> Vec<String> {
    if let Some(revision) = &family.registered {
        return vec![format!(
            "`{}`: this deploy's revision `{}` is registered",
            family.family,
            arn::short(revision)
        )];
    }
    let header = format!(
        "`{}`: a new revision from `{}`",
        family.family,
        arn::short(&family.from)
    );
    std::iter::once(header)
        .chain(family.changes.iter().map(change))
        .collect()
}

/// One key of a revision: added (`+`), removed (`-`) or changed (`~`).
fn change(change: &Change) -> String {
    let show = |value: &Option<Value>| {
        value.as_ref().map_or_else(String::new, |v| match v {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    };
    match (&change.from, &change.to) {
        (None, _) => format!("  + {}: {}", change.path, show(&change.to)),
        (_, None) => format!("  - {}: {}", change.path, show(&change.from)),
        _ => format!(
            "  ~ {}: {} → {}",
            change.path,
            show(&change.from),
            show(&change.to)
        ),
    }
}

fn service(service: &PlannedService) -> String {
    if service.from == service.to {
        format!(
            "service `{}`: stays on `{}`",
            service.service,
            arn::short(&service.from)
        )
    } else {
        format!(
            "service `{}`: `{}` → `{}` ({})",
            service.service,
            arn::short(&service.from),
            arn::short(&service.to),
            service.strategy
        )
    }
}

fn migration(migration: &PlannedMigration) -> String {
    let order = match migration.order {
        MigrateOrder::Before => "before the rollout",
        _ => "after the rollout",
    };
    format!(
        "migration: `{}` in container `{}` of `{}`, {order}, in cluster `{}` (subnets {})",
        migration.command.join(" "),
        migration.container,
        arn::short(&migration.family),
        migration.cluster,
        crate::text::code_list(&migration.subnets)
    )
}
