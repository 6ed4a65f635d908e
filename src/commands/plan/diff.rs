//! What a new revision changes, pure: the keys of a task definition that differ, as paths
//! (`containerDefinitions[app].image`), lists of named things matched by name, secrets hidden.

use serde::Serialize;
use serde_json::{Map, Value};

/// One changed key of a task definition: `containerDefinitions[app].image`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub from: Option<Value>,
    pub to: Option<Value>,
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
