//! Reads of the app's AWS state in the sandbox: services, tasks, task definitions and berth's
//! state objects.

use std::time::Duration;

use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinition};
use serde_json::Value;

use super::App;
use super::common::eventually_async;

/// The state bucket berth makes in the sandbox's account (`berth-state-<account>-<region>`).
pub const STATE_BUCKET: &str = "berth-state-123456789012-us-east-1";

impl App {
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.var("AWS_ENDPOINT_URL"))
            .credentials_provider(aws_sdk_ecs::config::Credentials::for_tests())
            .load()
            .await
    }

    pub async fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk_config().await)
    }

    /// `web` and `devops`, as ECS describes them now.
    pub async fn services(&self) -> Vec<aws_sdk_ecs::types::Service> {
        let out = self
            .ecs()
            .await
            .describe_services()
            .cluster(self.cluster())
            .services("web")
            .services("devops")
            .send()
            .await
            .unwrap();
        out.services().to_vec()
    }

    async fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::new(&self.sdk_config().await)
    }

    /// An object of berth's state for `env`, as JSON; `None` when there is none.
    pub async fn state_object(&self, env: &str, key: &str) -> Option<Value> {
        let got = self
            .s3()
            .await
            .get_object()
            .bucket(STATE_BUCKET)
            .key(format!("{}/{env}/{key}", self.name))
            .send()
            .await
            .ok()?;
        let bytes = got.body.collect().await.unwrap().into_bytes();
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    /// The state bucket, made as berth makes it (versioning on) unless it is there: for a test
    /// of a first deploy that must find it.
    pub async fn ensure_state_bucket(&self) {
        let s3 = self.s3().await;
        if s3.head_bucket().bucket(STATE_BUCKET).send().await.is_ok() {
            return;
        }
        // Another test may make it at the same moment: either way, it is there.
        let _ = s3.create_bucket().bucket(STATE_BUCKET).send().await;
        let _ = s3
            .put_bucket_versioning()
            .bucket(STATE_BUCKET)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await;
        s3.head_bucket().bucket(STATE_BUCKET).send().await.unwrap();
    }

    /// `stg`'s lock file.
    pub async fn lock(&self) -> Value {
        self.state_object("stg", "lock.json")
            .await
            .expect("no lock file")
    }

    /// `stg`'s lock file; `null` when there is none.
    pub async fn lock_or_none(&self) -> Value {
        self.state_object("stg", "lock.json")
            .await
            .unwrap_or(Value::Null)
    }

    /// The record of a deploy to `stg`.
    pub async fn record(&self, deploy_id: &str) -> Value {
        self.state_object("stg", &format!("deploys/{deploy_id}.json"))
            .await
            .unwrap_or_else(|| panic!("no record of `{deploy_id}`"))
    }

    /// Revisions of `family` tagged with `deploy_id` (ACTIVE or not).
    pub async fn revisions_of_deploy(&self, family: &str, deploy_id: &str) -> Vec<String> {
        let ecs = self.ecs().await;
        let mut found = Vec::new();
        for status in [
            aws_sdk_ecs::types::TaskDefinitionStatus::Active,
            aws_sdk_ecs::types::TaskDefinitionStatus::Inactive,
        ] {
            let listed = ecs
                .list_task_definitions()
                .family_prefix(family)
                .status(status)
                .send()
                .await
                .unwrap();
            for arn in listed.task_definition_arns() {
                let described = ecs
                    .describe_task_definition()
                    .task_definition(arn)
                    .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
                    .send()
                    .await
                    .unwrap();
                if described
                    .tags()
                    .iter()
                    .any(|t| t.key() == Some("berth:deploy-id") && t.value() == Some(deploy_id))
                {
                    found.push(arn.clone());
                }
            }
        }
        found
    }

    /// Every task ECS knows in the cluster, running or stopped, described.
    pub async fn tasks(&self) -> Vec<aws_sdk_ecs::types::Task> {
        let ecs = self.ecs().await;
        let mut arns = std::collections::BTreeSet::new();
        for status in [
            aws_sdk_ecs::types::DesiredStatus::Running,
            aws_sdk_ecs::types::DesiredStatus::Stopped,
        ] {
            let listed = ecs
                .list_tasks()
                .cluster(self.cluster())
                .desired_status(status)
                .send()
                .await
                .unwrap();
            arns.extend(listed.task_arns().iter().cloned());
        }
        if arns.is_empty() {
            return Vec::new();
        }
        ecs.describe_tasks()
            .cluster(self.cluster())
            .set_tasks(Some(arns.into_iter().collect()))
            .send()
            .await
            .unwrap()
            .tasks()
            .to_vec()
    }

    /// Every task ECS knows (running or stopped) that `deploy_id` started, by ARN.
    pub async fn tasks_started_by(&self, deploy_id: &str) -> Vec<String> {
        self.tasks()
            .await
            .iter()
            .filter(|t| t.started_by() == Some(deploy_id))
            .filter_map(|t| t.task_arn().map(str::to_owned))
            .collect()
    }

    /// Scales `web` and `devops` to 0 and waits (up to 90 s) until every task has stopped, so
    /// that no container holds an image.
    pub async fn stop_services(&self) {
        let ecs = self.ecs().await;
        for service in ["web", "devops"] {
            ecs.update_service()
                .cluster(self.cluster())
                .service(service)
                .desired_count(0)
                .send()
                .await
                .unwrap();
        }
        eventually_async(
            Duration::from_secs(90),
            Duration::from_millis(500),
            async || {
                let live: Vec<String> = self
                    .tasks()
                    .await
                    .iter()
                    .filter(|task| task.last_status() != Some("STOPPED"))
                    .filter_map(|task| task.task_arn().map(str::to_owned))
                    .collect();
                if live.is_empty() {
                    Ok(())
                } else {
                    Err(format!("tasks still running: {live:?}"))
                }
            },
        )
        .await;
    }

    /// What a run may change, read whole: berth's state objects (key and ETag), the app's
    /// revisions (ACTIVE and INACTIVE), its services' revisions and deployments, its tasks and
    /// its images in ECR. Two equal snapshots: nothing was written in between.
    pub async fn snapshot(&self) -> Vec<String> {
        let mut seen = Vec::new();
        let s3 = self.s3().await;
        // The state bucket is shared, and made by the first deploy of the sandbox's life: before
        // that, this app has no state object in it.
        let listed = s3
            .list_objects_v2()
            .bucket(STATE_BUCKET)
            .prefix(format!("{}/", self.name))
            .send()
            .await;
        let objects = match listed {
            Ok(objects) => objects.contents().to_vec(),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_bucket()) =>
            {
                Vec::new()
            }
            Err(error) => panic!("listing the state bucket: {error:?}"),
        };
        for object in &objects {
            seen.push(format!(
                "s3 {} {}",
                object.key().unwrap_or_default(),
                object.e_tag().unwrap_or_default()
            ));
        }
        let ecs = self.ecs().await;
        let families = self.envs.iter().flat_map(|env| {
            ["web", "devops"].map(|service| format!("{}-{env}-{service}", self.name))
        });
        for family in families {
            for status in [
                aws_sdk_ecs::types::TaskDefinitionStatus::Active,
                aws_sdk_ecs::types::TaskDefinitionStatus::Inactive,
            ] {
                let listed = ecs
                    .list_task_definitions()
                    .family_prefix(&family)
                    .status(status.clone())
                    .send()
                    .await
                    .unwrap();
                for arn in listed.task_definition_arns() {
                    seen.push(format!("revision {arn} {status}"));
                }
            }
        }
        for service in self.services().await {
            seen.push(format!(
                "service {} on {}",
                service.service_name().unwrap_or_default(),
                service.task_definition().unwrap_or_default()
            ));
            // The primary one: ECS drops the ones it drained on its own time.
            for deployment in service
                .deployments()
                .iter()
                .filter(|d| d.status() == Some("PRIMARY"))
            {
                seen.push(format!(
                    "deployment {} of {}",
                    deployment.id().unwrap_or_default(),
                    deployment.task_definition().unwrap_or_default()
                ));
            }
        }
        // The services' own tasks come and go with ECS; a run's own (the migration) are kept.
        for task in self.tasks().await.iter().filter(|task| {
            !task
                .group()
                .is_some_and(|group| group.starts_with("service:"))
        }) {
            seen.push(format!(
                "task {} desired {}",
                task.task_arn().unwrap_or_default(),
                task.desired_status().unwrap_or_default()
            ));
        }
        let ecr = aws_sdk_ecr::Client::new(&self.sdk_config().await);
        if let Ok(images) = ecr.list_images().repository_name(&self.name).send().await {
            for image in images.image_ids() {
                seen.push(format!(
                    "image {} {}",
                    image.image_tag().unwrap_or_default(),
                    image.image_digest().unwrap_or_default()
                ));
            }
        }
        seen.sort();
        seen
    }

    /// The revisions the seeded scheduled targets run: the nightly rule's target, then the
    /// hourly schedule's.
    pub async fn scheduled_revisions(&self) -> Vec<String> {
        let config = self.sdk_config().await;
        let events = aws_sdk_eventbridge::Client::new(&config);
        let rule = events
            .list_targets_by_rule()
            .rule(format!("{}-stg-nightly", self.name))
            .send()
            .await
            .unwrap();
        let scheduler = aws_sdk_scheduler::Client::new(&config);
        let schedule = scheduler
            .get_schedule()
            .name(format!("{}-stg-hourly", self.name))
            .send()
            .await
            .unwrap();
        let mut revisions: Vec<String> = rule
            .targets()
            .iter()
            .filter_map(|t| Some(t.ecs_parameters()?.task_definition_arn().to_owned()))
            .collect();
        revisions.extend(
            schedule
                .target()
                .and_then(|t| t.ecs_parameters())
                .map(|p| p.task_definition_arn().to_owned()),
        );
        revisions
    }

    pub async fn service_task_definitions(&self) -> Vec<String> {
        self.services()
            .await
            .iter()
            .map(|s| s.task_definition().unwrap().to_owned())
            .collect()
    }
}

pub fn container<'a>(definition: &'a TaskDefinition, name: &str) -> &'a ContainerDefinition {
    definition
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(name))
        .unwrap_or_else(|| panic!("{:?} has no container `{name}`", definition.family()))
}

pub async fn task_definition(ecs: &aws_sdk_ecs::Client, arn: &str) -> TaskDefinition {
    ecs.describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .clone()
}
