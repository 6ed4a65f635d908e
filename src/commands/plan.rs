//! `berth plan`: what `berth deploy` would do, read from ECR and ECS and changing nothing. The
//! same reads as a deploy (the release, the services, each family's revision to come), then
//! each family's next revision as a diff against the one running now, only the keys that change.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::aws;
use crate::aws::arn;
use crate::aws::ecr;
use crate::error::Error;
use crate::flags::DeployOptions;
use crate::report::Reporter;
use crate::settings::{MigrateOrder, Settings};
use crate::steps::prepare::{self, Prepared};
use crate::steps::register::{self, FamilyPlan, Registered};
use crate::steps::schedules;
use crate::taskdef::{self, Changes};

/// What a deploy would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub env: String,
    pub deploy_id: String,
    pub commit: String,
    pub image: PlannedImage,
    pub families: Vec<PlannedFamily>,
    pub services: Vec<PlannedService>,
    /// Scheduled targets that would move (`to` is `family:new` for a revision not registered yet).
    pub schedules: Vec<PlannedTarget>,
    pub migration: Option<PlannedMigration>,
    /// Whether the deploy would change anything; without a change `berth plan` exits with 6.
    pub changes: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedImage {
    pub tag: String,
    /// Its digest when ECR has the tag: no build, no push.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedFamily {
    pub family: String,
    /// The revision running now (or the file's base).
    pub from: String,
    /// This deploy's revision when it is registered already; `None`: a new one would be.
    pub registered: Option<String>,
    /// What the new revision changes, key by key.
    pub changes: Vec<Change>,
}

/// One changed key of a task definition: `containerDefinitions[app].image`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub from: Option<Value>,
    pub to: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedService {
    pub service: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedTarget {
    pub name: String,
    pub target: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedMigration {
    pub order: MigrateOrder,
    pub family: String,
    pub container: String,
    pub command: Vec<String>,
    pub cluster: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

pub async fn plan(
    settings: &Settings,
    options: DeployOptions,
    reporter: &dyn Reporter,
) -> Result<Plan, Error> {
    // The deploy's own preparation, in its order: what a deploy would refuse before its first
    // write, a plan refuses the same way.
    let local = prepare::local(settings, options)?;
    let config = aws::sdk_config(settings).await?;
    let ecs = aws::ecs_client(&config);
    let ecr_client = aws::ecr_client(&config);
    let tagging = aws::tagging_client(&config);
    let current = prepare::current(&ecs, &ecr_client, settings, &local).await?;
    let Prepared { families, tag, .. } = prepare::families(
        &ecs,
        &tagging,
        settings,
        &local,
        &current,
        // No record read here: a rerun's revision is found by its deploy-id tag.
        Registered::Recorded(&BTreeMap::new()),
    )
    .await?;
    let release = local.release;
    let digest = ecr::digest_of(&ecr_client, &current.repository, &tag).await?;
    let image = match &digest {
        Some(digest) => format!("{}@{digest}", current.repository.uri),
        None => format!("{}:{tag}", current.repository.uri),
    };

    // What each family runs now: its first service's revision (the migration family alone: its
    // latest).
    let running: BTreeMap<&str, &str> = current
        .families
        .iter()
        .map(|(service, family)| {
            let revision = current.services[service]
                .task_definition()
                .unwrap_or_default();
            (family.as_str(), revision)
        })
        .rev()
        .collect();
    let mut planned = Vec::new();
    let mut to = BTreeMap::new();
    for (family, plan) in &families {
        match plan {
            FamilyPlan::Registered(described) => {
                to.insert(family.clone(), described.arn.clone());
                planned.push(PlannedFamily {
                    family: family.clone(),
                    from: running
                        .get(family.as_str())
                        .map_or_else(|| described.arn.clone(), |revision| (*revision).to_owned()),
                    registered: Some(described.arn.clone()),
                    changes: Vec::new(),
                });
            }
            FamilyPlan::New { base, containers } => {
                to.insert(family.clone(), format!("{family}:new"));
                let now = match running.get(family.as_str()) {
                    Some(revision) if *revision != base.arn => {
                        taskdef::describe(&ecs, revision).await?
                    }
                    _ => base.clone(),
                };
                let next = taskdef::next_revision(
                    base,
                    &Changes {
                        containers,
                        image: &image,
                        set_environment: &settings.environment,
                        remove_environment: &settings.remove_environment,
                        set_secrets: &settings.secrets,
                        tags: BTreeMap::new(),
                    },
                );
                let unchanged = taskdef::next_revision(
                    &now,
                    &Changes {
                        containers: &[],
                        image: "",
                        set_environment: &BTreeMap::new(),
                        remove_environment: &[],
                        set_secrets: &BTreeMap::new(),
                        tags: BTreeMap::new(),
                    },
                );
                planned.push(PlannedFamily {
                    family: family.clone(),
                    from: now.arn.clone(),
                    registered: None,
                    changes: diff(&unchanged, &next),
                });
            }
        }
    }
    let services: Vec<PlannedService> = current
        .families
        .iter()
        .map(|(service, family)| PlannedService {
            service: service.clone(),
            from: current.services[service]
                .task_definition()
                .unwrap_or_default()
                .to_owned(),
            to: to.get(family).cloned().unwrap_or_default(),
        })
        .collect();

    let mut warnings = Vec::new();
    let survey = schedules::survey_settings(
        &schedules::Clients::new(&config),
        settings,
        current.services.values(),
        &to,
        reporter,
        &mut warnings,
    )
    .await?;
    let targets: Vec<PlannedTarget> = survey
        .iter()
        .flat_map(|survey| &survey.to_move)
        .map(|(scheduled, to)| PlannedTarget {
            name: scheduled.name.clone(),
            target: scheduled.target.clone(),
            from: scheduled.task_definition.clone(),
            to: to.clone(),
        })
        .collect();

    let migration = (settings.migrate != MigrateOrder::Skip).then(|| {
        let web = &current.services[&settings.services[0]];
        let awsvpc = web
            .network_configuration()
            .and_then(|network| network.awsvpc_configuration());
        PlannedMigration {
            order: settings.migrate,
            family: to
                .get(&current.migration_family)
                .cloned()
                .unwrap_or_else(|| current.migration_family.clone()),
            container: settings.migration.container.clone(),
            command: settings.migration.command.clone(),
            cluster: settings.cluster.clone(),
            subnets: awsvpc.map(|v| v.subnets().to_vec()).unwrap_or_default(),
            security_groups: awsvpc
                .map(|v| v.security_groups().to_vec())
                .unwrap_or_default(),
        }
    });
    // Scheduled targets berth could not look at may need moving: not "nothing to deploy".
    let changes = digest.is_none()
        || !register::all_registered(&families)
        || services.iter().any(|s| s.from != s.to)
        || !targets.is_empty()
        || !warnings.is_empty();
    Ok(Plan {
        env: settings.env.clone(),
        deploy_id: release.deploy_id,
        commit: release.commit,
        image: PlannedImage { tag, digest },
        families: planned,
        services,
        schedules: targets,
        migration,
        changes,
        warnings,
    })
}

/// The keys of `next` that differ from `now`, as paths. Lists of named things (containers,
/// environment variables, secrets) are matched by `name`; a secret's `valueFrom` is never shown.
pub fn diff(now: &Map<String, Value>, next: &Map<String, Value>) -> Vec<Change> {
    let mut changes = Vec::new();
    walk(
        "",
        Some(&Value::Object(now.clone())),
        Some(&Value::Object(next.clone())),
        &mut changes,
    );
    changes
}

fn walk(path: &str, now: Option<&Value>, next: Option<&Value>, changes: &mut Vec<Change>) {
    if now == next {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (now, next) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                walk(&join(key), a.get(key), b.get(key), changes);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if named(a) && named(b) => {
            let name = |item: &Value| item["name"].as_str().unwrap_or_default().to_owned();
            let mut names: Vec<String> = a.iter().map(name).collect();
            names.extend(
                b.iter()
                    .map(name)
                    .filter(|n| !a.iter().any(|i| name(i) == *n)),
            );
            for item in names {
                let find = |list: &[Value]| list.iter().find(|i| name(i) == item).cloned();
                walk(
                    &format!("{path}[{item}]"),
                    find(a).as_ref(),
                    find(b).as_ref(),
                    changes,
                );
            }
        }
        _ => {
            let secret = path.contains(".secrets[") || path.ends_with(".valueFrom");
            let show = |value: Option<&Value>| {
                value.map(|value| {
                    if secret && !value.is_object() {
                        Value::String(HIDDEN.to_owned())
                    } else {
                        hide_secrets(value)
                    }
                })
            };
            changes.push(Change {
                path: path.to_owned(),
                from: show(now),
                to: show(next),
            });
        }
    }
}

const HIDDEN: &str = "(secret reference)";

/// `value` with every secret's `valueFrom` hidden, however deep (a whole container added, a
/// first secret).
fn hide_secrets(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| {
                    let shown = if key == "valueFrom" {
                        Value::String(HIDDEN.to_owned())
                    } else {
                        hide_secrets(item)
                    };
                    (key.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(hide_secrets).collect()),
        other => other.clone(),
    }
}

/// A list whose items are all objects with a `name`.
fn named(list: &[Value]) -> bool {
    !list.is_empty() && list.iter().all(|item| item["name"].is_string())
}

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Change, diff};

    /// Only the changed keys, named lists matched by name, secrets hidden.
    #[test]
    fn a_diff_shows_only_what_changes() {
        let now = json!({
            "family": "web",
            "cpu": "256",
            "containerDefinitions": [
                {"name": "datadog-agent", "image": "datadog/agent:7"},
                {"name": "app", "image": "repo@sha256:aaa",
                 "environment": [{"name": "RAILS_ENV", "value": "staging"}],
                 "secrets": [{"name": "DB_URL", "valueFrom": "arn:ssm:old"}]}
            ]
        });
        let next = json!({
            "family": "web",
            "cpu": "256",
            "containerDefinitions": [
                {"name": "datadog-agent", "image": "datadog/agent:7"},
                {"name": "app", "image": "repo@sha256:bbb",
                 "environment": [{"name": "RAILS_ENV", "value": "staging"},
                                 {"name": "FEATURE_X", "value": "on"}],
                 "secrets": [{"name": "DB_URL", "valueFrom": "arn:ssm:new"}]}
            ]
        });
        let changes = diff(now.as_object().unwrap(), next.as_object().unwrap());
        assert_eq!(
            changes,
            [
                Change {
                    path: "containerDefinitions[app].environment[FEATURE_X]".into(),
                    from: None,
                    to: Some(json!({"name": "FEATURE_X", "value": "on"})),
                },
                Change {
                    path: "containerDefinitions[app].image".into(),
                    from: Some(json!("repo@sha256:aaa")),
                    to: Some(json!("repo@sha256:bbb")),
                },
                Change {
                    path: "containerDefinitions[app].secrets[DB_URL].valueFrom".into(),
                    from: Some(json!("(secret reference)")),
                    to: Some(json!("(secret reference)")),
                },
            ]
        );
        assert!(diff(now.as_object().unwrap(), now.as_object().unwrap()).is_empty());

        // The first secret of a container, and a whole container added: no `valueFrom` shows.
        let mut first = now.clone();
        first["containerDefinitions"][1]
            .as_object_mut()
            .unwrap()
            .remove("secrets");
        let mut added = next.clone();
        added["containerDefinitions"].as_array_mut().unwrap().push(
            json!({"name": "worker", "secrets": [{"name": "KEY", "valueFrom": "arn:sm:key"}]}),
        );
        for (before, after) in [(&first, &next), (&now, &added)] {
            let shown = serde_json::to_string(&diff(
                before.as_object().unwrap(),
                after.as_object().unwrap(),
            ))
            .unwrap();
            assert!(!shown.contains("arn:"), "{shown}");
            assert!(shown.contains("(secret reference)"), "{shown}");
        }
    }
}
