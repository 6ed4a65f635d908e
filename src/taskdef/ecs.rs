//! `DescribeTaskDefinition` and `RegisterTaskDefinition` with raw JSON bodies. Both go through
//! the SDK (signing, retries, endpoints): an interceptor captures the response body or replaces
//! the request body.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinitionField};
use serde_json::{Map, Value};

use super::{Described, tags_of};
use crate::aws::failed;
use crate::aws::wire::{CaptureBody, ReplaceBody};
use crate::error::Error;

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
    let mut value = captured.json(&format!("task definition `{task_definition}`"))?;
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
