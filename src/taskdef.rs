//! Task definitions as JSON, so that a new revision keeps every field of the old one.
//!
//! The SDK's typed model would make berth copy an allow-list of fields, and silently drop any
//! field that AWS added after this build. Instead berth reads `DescribeTaskDefinition`'s raw JSON,
//! drops only the read-only fields, changes the image and environment of our containers, and
//! sends the result as the body of `RegisterTaskDefinition`. Both go through the SDK (signing,
//! retries, endpoints): an interceptor captures or replaces the body.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinitionField};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::{Map, Value, json};

use crate::aws::failed;
use crate::error::Error;

/// Fields `DescribeTaskDefinition` returns that `RegisterTaskDefinition` does not take.
pub const READ_ONLY_FIELDS: &[&str] = &[
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
];

/// Tags berth puts on the revisions it registers.
pub const DEPLOY_ID_TAG: &str = "berth:deploy-id";
pub const GIT_SHA_TAG: &str = "berth:git-sha";
/// On the migration's revision: the task that ran it, and how it ended (`succeeded`).
pub const MIGRATION_TASK_TAG: &str = "berth:migration-task";
pub const MIGRATION_RESULT_TAG: &str = "berth:migration";

/// One revision as AWS describes it: the task definition and its tags.
#[derive(Debug, Clone)]
pub struct Described {
    pub arn: String,
    pub definition: Map<String, Value>,
    pub tags: BTreeMap<String, String>,
}

impl Described {
    pub fn family(&self) -> &str {
        self.definition
            .get("family")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn containers(&self) -> Vec<&Map<String, Value>> {
        self.definition
            .get("containerDefinitions")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default()
    }

    pub fn container(&self, name: &str) -> Option<&Map<String, Value>> {
        self.containers()
            .into_iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
    }
}

/// A task definition kept in the repository: a `RegisterTaskDefinition` request as JSON (or a
/// `DescribeTaskDefinition` response, `taskDefinition` and `tags`), with `${VAR}` replaced by the
/// variable from berth's environment.
pub fn from_file(path: &std::path::Path) -> Result<Described, Error> {
    let text = fs_err::read_to_string(path).map_err(|error| Error::Mismatch {
        problem: error.to_string(),
        hint: "check `task_definitions` in berth.toml".to_owned(),
    })?;
    let text =
        substitute(&text, |name| std::env::var(name).ok()).map_err(|name| Error::Mismatch {
            problem: format!("`{}` uses `${{{name}}}`, which is not set", path.display()),
            hint: format!("export `{name}` before running berth"),
        })?;
    let value: Value = serde_json::from_str(&text).map_err(|error| Error::Mismatch {
        problem: format!("`{}` is not valid JSON: {error}", path.display()),
        hint: "the file holds one task definition as JSON, as `aws ecs register-task-definition --cli-input-json` takes it".to_owned(),
    })?;
    let (definition, tags) = match value {
        Value::Object(mut map) if map.contains_key("taskDefinition") => {
            let tags = map.remove("tags");
            match map.remove("taskDefinition") {
                Some(Value::Object(definition)) => (definition, tags),
                _ => (Map::new(), tags),
            }
        }
        Value::Object(mut map) => {
            let tags = map.remove("tags");
            (map, tags)
        }
        _ => (Map::new(), None),
    };
    if definition.get("family").and_then(Value::as_str).is_none() {
        return Err(Error::Mismatch {
            problem: format!("`{}` has no `family`", path.display()),
            hint: "a task definition needs `family` and `containerDefinitions`".to_owned(),
        });
    }
    Ok(Described {
        arn: path.display().to_string(),
        definition,
        tags: tags_of(tags.as_ref()),
    })
}

/// Replaces each `${NAME}` by `lookup(NAME)`; the error is the first name without a value.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = lookup(name).ok_or_else(|| name.to_owned())?;
        // JSON-escape the value: it lands inside a JSON string.
        let escaped = serde_json::to_string(&value).unwrap_or_default();
        out.push_str(&escaped[1..escaped.len() - 1]);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn tags_of(tags: Option<&Value>) -> BTreeMap<String, String> {
    tags.and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(|tag| {
                    Some((
                        tag.get("key")?.as_str()?.to_owned(),
                        tag.get("value")?.as_str().unwrap_or_default().to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `DescribeTaskDefinition` with tags, as raw JSON.
pub async fn describe(ecs: &Client, task_definition: &str) -> Result<Described, Error> {
    let captured = CaptureBody::default();
    ecs.describe_task_definition()
        .task_definition(task_definition)
        .include(TaskDefinitionField::Tags)
        .customize()
        .interceptor(captured.clone())
        .send()
        .await
        .map_err(|e| failed(format!("describing task definition `{task_definition}`"), e))?;
    let body = captured.take().ok_or_else(|| Error::Mismatch {
        problem: format!("no response body for task definition `{task_definition}`"),
        hint: "retry; this is a bug if it persists".to_owned(),
    })?;
    let mut value: Value = serde_json::from_slice(&body).map_err(|error| Error::Mismatch {
        problem: format!("task definition `{task_definition}` is not JSON: {error}"),
        hint: "retry; this is a bug if it persists".to_owned(),
    })?;
    let definition = match value.get_mut("taskDefinition").map(Value::take) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let tags = tags_of(value.get("tags"));
    let arn = definition
        .get("taskDefinitionArn")
        .and_then(Value::as_str)
        .unwrap_or(task_definition)
        .to_owned();
    Ok(Described {
        arn,
        definition,
        tags,
    })
}

/// Registers `input` (a `RegisterTaskDefinition` request as JSON) and returns the new revision,
/// described from what was sent: no second call to read back what berth just wrote.
pub async fn register(ecs: &Client, input: &Map<String, Value>) -> Result<Described, Error> {
    let family = input
        .get("family")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body = serde_json::to_vec(input).map_err(|error| Error::Mismatch {
        problem: format!("cannot encode the task definition: {error}"),
        hint: "this is a bug".to_owned(),
    })?;
    // The typed request only has to pass the SDK's own checks; the body replaces it.
    let output = ecs
        .register_task_definition()
        .family(family)
        .container_definitions(ContainerDefinition::builder().name("placeholder").build())
        .customize()
        .interceptor(ReplaceBody(body.into()))
        // Not idempotent: a retry after a lost response would register a second revision. One
        // attempt; a failed call fails the deploy, and its rerun finds a registered revision by
        // its deploy-id tag.
        .config_override(
            aws_sdk_ecs::config::Builder::default()
                .retry_config(aws_smithy_types::retry::RetryConfig::disabled()),
        )
        .send()
        .await
        .map_err(|e| failed(format!("registering a revision of `{family}`"), e))?;
    let arn = output
        .task_definition()
        .and_then(|td| td.task_definition_arn())
        .map(str::to_owned)
        .ok_or_else(|| Error::Mismatch {
            problem: format!("ECS registered `{family}` but returned no ARN"),
            hint: "retry; the deploy id finds the revision if it was registered".to_owned(),
        })?;
    let mut definition = input.clone();
    let tags = tags_of(definition.remove("tags").as_ref());
    definition.insert("taskDefinitionArn".into(), Value::String(arn.clone()));
    Ok(Described {
        arn,
        definition,
        tags,
    })
}

/// What changes in the next revision.
#[derive(Debug, Clone)]
pub struct Changes<'a> {
    /// Containers that take the image.
    pub containers: &'a [String],
    /// `repo@sha256:…`
    pub image: &'a str,
    pub set_environment: &'a BTreeMap<String, String>,
    pub remove_environment: &'a [String],
    /// name → valueFrom
    pub set_secrets: &'a BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// The `RegisterTaskDefinition` request for the revision after `base`: every field kept except
/// the read-only ones; our containers get the image and the environment changes.
pub fn next_revision(base: &Described, changes: &Changes<'_>) -> Map<String, Value> {
    let mut input = base.definition.clone();
    for field in READ_ONLY_FIELDS {
        input.remove(*field);
    }
    drop_nulls(&mut input);
    if let Some(Value::Array(containers)) = input.get_mut("containerDefinitions") {
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let name = container.get("name").and_then(Value::as_str);
            if !name.is_some_and(|name| changes.containers.iter().any(|c| c == name)) {
                continue;
            }
            container.insert("image".into(), json!(changes.image));
            for (key, value) in changes.set_environment {
                set_named(container, "environment", key, "value", value);
                remove_named(container, "secrets", key);
            }
            for key in changes.remove_environment {
                remove_named(container, "environment", key);
            }
            for (key, value_from) in changes.set_secrets {
                set_named(container, "secrets", key, "valueFrom", value_from);
                remove_named(container, "environment", key);
            }
        }
    }
    let mut tags = base.tags.clone();
    tags.retain(|key, _| !key.starts_with("berth:"));
    tags.extend(changes.tags.clone());
    if !tags.is_empty() {
        input.insert(
            "tags".into(),
            Value::Array(
                tags.iter()
                    .map(|(key, value)| json!({ "key": key, "value": value }))
                    .collect(),
            ),
        );
    }
    input
}

/// Containers whose image is in `repository_uri` (`host/name`), by any tag or digest.
pub fn containers_in_repository(base: &Described, repository_uri: &str) -> Vec<String> {
    base.containers()
        .into_iter()
        .filter(|c| {
            c.get("image").and_then(Value::as_str).is_some_and(|image| {
                image == repository_uri
                    || image
                        .strip_prefix(repository_uri)
                        .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
            })
        })
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn set_named(container: &mut Map<String, Value>, list: &str, name: &str, field: &str, value: &str) {
    let entries = container
        .entry(list)
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(entries) = entries {
        let entry = json!({ "name": name, field: value });
        match entries
            .iter_mut()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        {
            Some(existing) => *existing = entry,
            None => entries.push(entry),
        }
    }
}

fn remove_named(container: &mut Map<String, Value>, list: &str, name: &str) {
    if let Some(Value::Array(entries)) = container.get_mut(list) {
        entries.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
    }
}

/// `null` means "absent" in AWS's JSON protocol; dropping it keeps requests clean.
fn drop_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, value| !value.is_null());
    for value in map.values_mut() {
        match value {
            Value::Object(inner) => drop_nulls(inner),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        drop_nulls(inner);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Keeps a copy of the response body.
#[derive(Debug, Clone, Default)]
struct CaptureBody(Arc<Mutex<Option<Vec<u8>>>>);

impl CaptureBody {
    fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok()?.take()
    }
}

impl Intercept for CaptureBody {
    fn name(&self) -> &'static str {
        "berth::CaptureBody"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(bytes), Ok(mut slot)) = (context.response().body().bytes(), self.0.lock()) {
            *slot = Some(bytes.to_vec());
        }
        Ok(())
    }
}

/// Sends its own bytes as the request body, on every attempt.
#[derive(Debug)]
struct ReplaceBody(bytes::Bytes);

impl Intercept for ReplaceBody {
    fn name(&self) -> &'static str {
        "berth::ReplaceBody"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        *request.body_mut() = SdkBody::from(self.0.clone());
        request
            .headers_mut()
            .insert("content-length", self.0.len().to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described() -> Described {
        let definition = json!({
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/web:7",
            "family": "web",
            "revision": 7,
            "status": "ACTIVE",
            "compatibilities": ["EC2", "FARGATE"],
            "requiresAttributes": [{"name": "ecs.capability.efsAuth"}],
            "registeredAt": 1_700_000_000.0,
            "registeredBy": "arn:aws:iam::1:user/x",
            "cpu": "512",
            "memory": "1024",
            "networkMode": "awsvpc",
            "futureField": {"nested": [1, 2]},
            "proxyConfiguration": null,
            "volumes": [{"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}],
            "containerDefinitions": [
                {
                    "name": "app",
                    "image": "1.dkr.ecr.us-east-1.amazonaws.com/app:old",
                    "environment": [{"name": "KEEP", "value": "1"}, {"name": "GONE", "value": "x"}],
                    "secrets": [{"name": "TOKEN", "valueFrom": "arn:old"}],
                    "healthCheck": {"command": ["CMD", "true"]}
                },
                {
                    "name": "datadog-agent",
                    "image": "public.ecr.aws/datadog/agent:7",
                    "environment": [{"name": "GONE", "value": "sidecar keeps it"}]
                }
            ]
        });
        let Value::Object(definition) = definition else {
            unreachable!()
        };
        Described {
            arn: "arn:aws:ecs:us-east-1:1:task-definition/web:7".into(),
            definition,
            tags: BTreeMap::from([
                ("team".to_owned(), "core".to_owned()),
                (DEPLOY_ID_TAG.to_owned(), "older".to_owned()),
            ]),
        }
    }

    #[test]
    fn keeps_every_field_but_the_read_only_ones() {
        let base = described();
        let set = BTreeMap::from([("NEW".to_owned(), "2".to_owned())]);
        let secrets = BTreeMap::from([("TOKEN".to_owned(), "arn:new".to_owned())]);
        let remove = vec!["GONE".to_owned()];
        let containers = vec!["app".to_owned()];
        let next = next_revision(
            &base,
            &Changes {
                containers: &containers,
                image: "1.dkr.ecr.us-east-1.amazonaws.com/app@sha256:abc",
                set_environment: &set,
                remove_environment: &remove,
                set_secrets: &secrets,
                tags: BTreeMap::from([(DEPLOY_ID_TAG.to_owned(), "stg-1".to_owned())]),
            },
        );
        for field in READ_ONLY_FIELDS {
            assert!(!next.contains_key(*field), "{field} kept");
        }
        assert!(!next.contains_key("proxyConfiguration"), "nulls dropped");
        for field in [
            "family",
            "cpu",
            "memory",
            "networkMode",
            "futureField",
            "volumes",
        ] {
            assert_eq!(next[field], base.definition[field], "{field} changed");
        }
        let app = &next["containerDefinitions"][0];
        assert_eq!(
            app["image"],
            "1.dkr.ecr.us-east-1.amazonaws.com/app@sha256:abc"
        );
        assert_eq!(
            app["environment"],
            json!([{"name": "KEEP", "value": "1"}, {"name": "NEW", "value": "2"}])
        );
        assert_eq!(
            app["secrets"],
            json!([{"name": "TOKEN", "valueFrom": "arn:new"}])
        );
        assert_eq!(
            app["healthCheck"],
            base.definition["containerDefinitions"][0]["healthCheck"]
        );
        // The sidecar is not ours: untouched, byte for byte.
        assert_eq!(
            next["containerDefinitions"][1],
            base.definition["containerDefinitions"][1]
        );
        assert_eq!(
            next["tags"],
            json!([{"key": "berth:deploy-id", "value": "stg-1"}, {"key": "team", "value": "core"}])
        );
    }

    #[test]
    fn substitutes_variables_as_json_strings() {
        let lookup = |name: &str| match name {
            "ACCOUNT" => Some("123".to_owned()),
            "QUOTE" => Some("a\"b".to_owned()),
            _ => None,
        };
        assert_eq!(
            substitute(
                r#"{"arn": "arn:aws:iam::${ACCOUNT}:role/x", "q": "${QUOTE}"}"#,
                lookup
            ),
            Ok(r#"{"arn": "arn:aws:iam::123:role/x", "q": "a\"b"}"#.to_owned())
        );
        assert_eq!(substitute("${MISSING}", lookup), Err("MISSING".to_owned()));
        assert_eq!(
            substitute("no vars $HOME", lookup),
            Ok("no vars $HOME".to_owned())
        );
    }

    #[test]
    fn finds_our_containers_by_repository() {
        let base = described();
        assert_eq!(
            containers_in_repository(&base, "1.dkr.ecr.us-east-1.amazonaws.com/app"),
            ["app"]
        );
        assert!(containers_in_repository(&base, "1.dkr.ecr.us-east-1.amazonaws.com/ap").is_empty());
    }
}
