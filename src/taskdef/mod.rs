//! Task definitions as JSON, so that a new revision keeps every field of the old one.
//!
//! The SDK's typed model would make berth copy an allow-list of fields, and silently drop any
//! field that AWS added after this build. Instead berth reads `DescribeTaskDefinition`'s raw JSON,
//! drops only the read-only fields, changes the image and environment of our containers, and
//! sends the result as the body of `RegisterTaskDefinition`.
//!
//! This module is the pure part: a revision as JSON and [`next_revision`], the transform from one
//! revision to the next. The I/O lives beside it: `file.rs` reads task definitions kept in the
//! repository, `ecs.rs` describes and registers them through the SDK.

mod ecs;
mod file;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

pub use ecs::{describe, register};
pub use file::from_file;

use crate::aws::arn;
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

    /// `ACTIVE` or `INACTIVE` (deregistered), as ECS describes it; `None` for a file's.
    pub fn status(&self) -> Option<&str> {
        self.definition.get("status").and_then(Value::as_str)
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

    /// Whether container `name` is essential: ECS's default when the definition does not say.
    pub fn essential(&self, name: &str) -> bool {
        self.container(name)
            .and_then(|c| c.get("essential"))
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
}

#[cfg(test)]
impl Described {
    /// A revision from its task definition as JSON, without tags.
    pub(crate) fn from_json(arn: &str, definition: Value) -> Self {
        let Value::Object(definition) = definition else {
            panic!("a task definition is a JSON object: {definition}")
        };
        Self {
            arn: arn.to_owned(),
            definition,
            tags: BTreeMap::new(),
        }
    }
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

/// The Docker platform a revision runs on, from its `runtimePlatform` (ECS's default,
/// [`DEFAULT_PLATFORM`], when it has none): `linux/amd64`, `linux/arm64`, `windows/amd64`.
pub fn platform(revision: &Described) -> String {
    let runtime = revision.definition.get("runtimePlatform");
    let field = |key: &str| runtime.and_then(|r| r.get(key)).and_then(Value::as_str);
    let os = match field("operatingSystemFamily") {
        Some(family) if family.starts_with("WINDOWS") => "windows",
        _ => "linux",
    };
    let arch = match field("cpuArchitecture") {
        Some("ARM64") => "arm64",
        _ => "amd64",
    };
    format!("{os}/{arch}")
}

/// ECS's platform when a task definition names none.
pub const DEFAULT_PLATFORM: &str = "linux/amd64";

/// The platform to build the image for: every revision it goes into must run on the same one,
/// and `build.platform`, when set, must be it (its variant aside: `linux/arm64/v8`).
pub fn build_platform(configured: Option<&str>, revisions: &[&Described]) -> Result<String, Error> {
    let mut platforms: Vec<(String, &Described)> = revisions
        .iter()
        .map(|revision| (platform(revision), *revision))
        .collect();
    platforms.sort_by(|a, b| a.0.cmp(&b.0));
    if let (Some((first, a)), Some((last, b))) = (platforms.first(), platforms.last())
        && first != last
    {
        return Err(Error::Mismatch {
            problem: format!(
                "one image cannot run on both `{first}` (`{}`) and `{last}` (`{}`): their `runtimePlatform`s differ",
                arn::short(&a.arn),
                arn::short(&b.arn)
            ),
            hint: "give the task definitions the same `runtimePlatform`, or deploy them from separate berth.toml environments".to_owned(),
        });
    }
    let Some((wanted, revision)) = platforms.into_iter().next() else {
        return Ok(configured.unwrap_or(DEFAULT_PLATFORM).to_owned());
    };
    match configured {
        None => Ok(wanted),
        Some(configured) if configured.split('/').take(2).eq(wanted.split('/')) => {
            Ok(configured.to_owned())
        }
        Some(configured) => Err(Error::Mismatch {
            problem: format!(
                "`build.platform` is `{configured}`, but `{}` runs on `{wanted}` (its `runtimePlatform`)",
                arn::short(&revision.arn)
            ),
            hint: format!(
                "remove `build.platform` to build for `{wanted}`, or change the task definition's `runtimePlatform`"
            ),
        }),
    }
}

/// The migration runs in `container` of `revision`; checked before anything changes.
pub fn check_migration_container(revision: &Described, container: &str) -> Result<(), Error> {
    match revision.container(container) {
        Some(_) => Ok(()),
        None => Err(Error::Mismatch {
            problem: format!(
                "task definition `{}` has no container `{container}` to run the migration in",
                arn::short(&revision.arn)
            ),
            hint: "set `migration.container` (or `migration.family`) in berth.toml".to_owned(),
        }),
    }
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
    fn finds_our_containers_by_repository() {
        let base = described();
        assert_eq!(
            containers_in_repository(&base, "1.dkr.ecr.us-east-1.amazonaws.com/app"),
            ["app"]
        );
        assert!(containers_in_repository(&base, "1.dkr.ecr.us-east-1.amazonaws.com/ap").is_empty());
    }

    /// The `app` container after one change, from an `app` with `KEEP=1`, `GONE=x` and the
    /// secret `TOKEN`: one row per rule of [`next_revision`].
    #[test]
    fn environment_and_secrets_follow_the_changes() {
        type Row = (
            &'static str,
            &'static [(&'static str, &'static str)],
            &'static [&'static str],
            &'static [(&'static str, &'static str)],
            Value,
            Value,
        );
        let rows: Vec<Row> = vec![
            (
                "no change: the image alone",
                &[],
                &[],
                &[],
                json!([{"name": "KEEP", "value": "1"}, {"name": "GONE", "value": "x"}]),
                json!([{"name": "TOKEN", "valueFrom": "arn:old"}]),
            ),
            (
                "a new variable is appended",
                &[("NEW", "2")],
                &[],
                &[],
                json!([{"name": "KEEP", "value": "1"}, {"name": "GONE", "value": "x"}, {"name": "NEW", "value": "2"}]),
                json!([{"name": "TOKEN", "valueFrom": "arn:old"}]),
            ),
            (
                "a set variable replaces the old value in place",
                &[("KEEP", "9")],
                &[],
                &[],
                json!([{"name": "KEEP", "value": "9"}, {"name": "GONE", "value": "x"}]),
                json!([{"name": "TOKEN", "valueFrom": "arn:old"}]),
            ),
            (
                "a plain variable replaces a secret of the same name",
                &[("TOKEN", "plain")],
                &[],
                &[],
                json!([{"name": "KEEP", "value": "1"}, {"name": "GONE", "value": "x"}, {"name": "TOKEN", "value": "plain"}]),
                json!([]),
            ),
            (
                "a removed variable is gone; an unknown one is no error",
                &[],
                &["GONE", "NEVER_SET"],
                &[],
                json!([{"name": "KEEP", "value": "1"}]),
                json!([{"name": "TOKEN", "valueFrom": "arn:old"}]),
            ),
            (
                "a secret replaces a plain variable of the same name",
                &[],
                &[],
                &[("GONE", "arn:gone")],
                json!([{"name": "KEEP", "value": "1"}]),
                json!([{"name": "TOKEN", "valueFrom": "arn:old"}, {"name": "GONE", "valueFrom": "arn:gone"}]),
            ),
            (
                "a secret's new source replaces the old one",
                &[],
                &[],
                &[("TOKEN", "arn:new")],
                json!([{"name": "KEEP", "value": "1"}, {"name": "GONE", "value": "x"}]),
                json!([{"name": "TOKEN", "valueFrom": "arn:new"}]),
            ),
        ];
        let base = described();
        let containers = vec!["app".to_owned()];
        for (case, set, remove, secrets, environment, secret_list) in rows {
            let set: BTreeMap<String, String> = set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let secrets: BTreeMap<String, String> = secrets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let remove: Vec<String> = remove.iter().map(|k| (*k).to_owned()).collect();
            let next = next_revision(
                &base,
                &Changes {
                    containers: &containers,
                    image: "app@sha256:abc",
                    set_environment: &set,
                    remove_environment: &remove,
                    set_secrets: &secrets,
                    tags: BTreeMap::new(),
                },
            );
            let app = &next["containerDefinitions"][0];
            assert_eq!(app["image"], "app@sha256:abc", "{case}");
            assert_eq!(app["environment"], environment, "{case}: environment");
            assert_eq!(app["secrets"], secret_list, "{case}: secrets");
            assert_eq!(
                next["containerDefinitions"][1], base.definition["containerDefinitions"][1],
                "{case}: the sidecar is never touched"
            );
        }
    }

    /// Which containers take the image, by where their image is.
    #[test]
    fn our_containers_are_those_whose_image_is_in_the_repository() {
        let repository = "1.dkr.ecr.us-east-1.amazonaws.com/app";
        let rows = [
            ("by tag", "1.dkr.ecr.us-east-1.amazonaws.com/app:old", true),
            (
                "by digest",
                "1.dkr.ecr.us-east-1.amazonaws.com/app@sha256:abc",
                true,
            ),
            ("untagged", "1.dkr.ecr.us-east-1.amazonaws.com/app", true),
            (
                "a longer name",
                "1.dkr.ecr.us-east-1.amazonaws.com/app-worker:1",
                false,
            ),
            (
                "a nested name",
                "1.dkr.ecr.us-east-1.amazonaws.com/app/x:1",
                false,
            ),
            ("another registry", "public.ecr.aws/datadog/agent:7", false),
        ];
        for (case, image, ours) in rows {
            let mut base = described();
            base.definition["containerDefinitions"][0]["image"] = json!(image);
            let found = containers_in_repository(&base, repository);
            assert_eq!(found == ["app"], ours, "{case}: {found:?}");
        }
    }

    #[test]
    fn tags_keep_the_others_and_replace_berths_own() {
        let rows: [(&str, BTreeMap<String, String>, Value); 3] = [
            (
                "berth's tags of the base are replaced",
                BTreeMap::from([(DEPLOY_ID_TAG.to_owned(), "stg-2".to_owned())]),
                json!([{"key": "berth:deploy-id", "value": "stg-2"}, {"key": "team", "value": "core"}]),
            ),
            (
                "no new tags: berth's old ones are still dropped",
                BTreeMap::new(),
                json!([{"key": "team", "value": "core"}]),
            ),
            (
                "a tag of the user's is overwritten only when set",
                BTreeMap::from([("team".to_owned(), "platform".to_owned())]),
                json!([{"key": "team", "value": "platform"}]),
            ),
        ];
        let containers = vec!["app".to_owned()];
        let empty = BTreeMap::new();
        for (case, tags, want) in rows {
            let next = next_revision(
                &described(),
                &Changes {
                    containers: &containers,
                    image: "app@sha256:abc",
                    set_environment: &empty,
                    remove_environment: &[],
                    set_secrets: &empty,
                    tags,
                },
            );
            assert_eq!(next["tags"], want, "{case}");
        }
    }

    #[test]
    fn the_image_is_built_for_the_task_definitions_platform() {
        let revision = |name: &str, runtime: Value| {
            Described::from_json(
                &format!("arn:aws:ecs:us-east-1:1:task-definition/{name}:1"),
                json!({"family": name, "runtimePlatform": runtime}),
            )
        };
        let arm = revision(
            "web",
            json!({"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}),
        );
        let arm_too = revision("devops", json!({"cpuArchitecture": "ARM64"}));
        let x86 = revision("worker", json!({"cpuArchitecture": "X86_64"}));
        let default = revision("cron", Value::Null);
        /// Case, `build.platform`, the revisions, and the platform or a part of the error.
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            Vec<&'a Described>,
            Result<&'a str, &'a str>,
        );
        let rows: [Row; 7] = [
            (
                "ARM64 builds for linux/arm64",
                None,
                vec![&arm, &arm_too],
                Ok("linux/arm64"),
            ),
            (
                "no runtimePlatform is ECS's default",
                None,
                vec![&default, &x86],
                Ok("linux/amd64"),
            ),
            (
                "a matching setting",
                Some("linux/arm64"),
                vec![&arm],
                Ok("linux/arm64"),
            ),
            (
                "a variant of it",
                Some("linux/arm64/v8"),
                vec![&arm],
                Ok("linux/arm64/v8"),
            ),
            (
                "a setting that contradicts the task definition",
                Some("linux/amd64"),
                vec![&arm],
                Err("`build.platform` is `linux/amd64`, but `web:1` runs on `linux/arm64`"),
            ),
            (
                "task definitions that disagree",
                None,
                vec![&arm, &x86],
                Err(
                    "one image cannot run on both `linux/amd64` (`worker:1`) and `linux/arm64` (`web:1`)",
                ),
            ),
            ("nothing to go by", None, vec![], Ok("linux/amd64")),
        ];
        for (case, configured, revisions, want) in rows {
            let got = build_platform(configured, &revisions);
            match want {
                Ok(want) => assert_eq!(got.unwrap(), want, "{case}"),
                Err(part) => crate::error::assert_usage_error(got, part, case),
            }
        }
    }
}
