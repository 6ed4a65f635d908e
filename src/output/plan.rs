//! `berth plan` as text: the image, each family's changes key by key, the services, the
//! scheduled targets and the migration.

use serde_json::Value;

use crate::aws::arn;
use crate::commands::plan::Plan;
use crate::settings::MigrateOrder;
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
    for family in &plan.families {
        match &family.registered {
            Some(revision) => lines.push(format!(
                "`{}`: this deploy's revision `{}` is registered",
                family.family,
                arn::short(revision)
            )),
            None => {
                lines.push(format!(
                    "`{}`: a new revision from `{}`",
                    family.family,
                    arn::short(&family.from)
                ));
                for change in &family.changes {
                    let show = |value: &Option<Value>| {
                        value.as_ref().map_or_else(String::new, |v| match v {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        })
                    };
                    lines.push(match (&change.from, &change.to) {
                        (None, _) => format!("  + {}: {}", change.path, show(&change.to)),
                        (_, None) => format!("  - {}: {}", change.path, show(&change.from)),
                        _ => format!(
                            "  ~ {}: {} → {}",
                            change.path,
                            show(&change.from),
                            show(&change.to)
                        ),
                    });
                }
            }
        }
    }
    for service in &plan.services {
        lines.push(if service.from == service.to {
            format!(
                "service `{}`: stays on `{}`",
                service.service,
                arn::short(&service.from)
            )
        } else {
            format!(
                "service `{}`: `{}` → `{}`",
                service.service,
                arn::short(&service.from),
                arn::short(&service.to)
            )
        });
    }
    for target in &plan.schedules {
        lines.push(format!(
            "{}: `{}` → `{}`",
            schedules::label(&target.name, &target.target),
            arn::short(&target.from),
            arn::short(&target.to)
        ));
    }
    if let Some(migration) = &plan.migration {
        let order = match migration.order {
            MigrateOrder::Before => "before the rollout",
            _ => "after the rollout",
        };
        lines.push(format!(
            "migration: `{}` in container `{}` of `{}`, {order}, in cluster `{}` (subnets {})",
            migration.command.join(" "),
            migration.container,
            arn::short(&migration.family),
            migration.cluster,
            crate::text::code_list(&migration.subnets)
        ));
    }
    lines.push(if plan.changes {
        "a deploy would change the environment".to_owned()
    } else {
        "nothing to deploy: everything is as this deploy would leave it".to_owned()
    });
    lines
}
