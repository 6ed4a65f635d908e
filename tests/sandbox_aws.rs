//! berth's AWS clients against the sandbox: ECS runs a real task and reports its real exit code;
//! ECR answers through the same configuration. Needs the sandbox (`scripts/test` starts it).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use aws_sdk_ecs::types::{ContainerDefinition, LogConfiguration, LogDriver};
use berth::flags::Flags;
use berth::settings::{self, Settings};
use common::stopped_task;

fn sandbox_settings(cluster: &str) -> Settings {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1"),
        "AWS_ENDPOINT_URL must point at the sandbox (got {endpoint:?}): run \
         `sandbox/sandboxctl start && eval \"$(sandbox/sandboxctl env)\"`"
    );
    let text = format!(
        "repository = \"sandbox-aws-test\"\n[env.test]\nregion = \"us-east-1\"\n\
         cluster = \"{cluster}\"\nservices = [\"web\"]\n"
    );
    let flags = Flags {
        env: Some("test".into()),
        ..Flags::default()
    };
    settings::resolve(&text, Path::new("berth.toml"), &flags).unwrap()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn ecs_task_exit_code_comes_back_through_the_sdk() {
    let cluster = unique("rust-sdk");
    let settings = sandbox_settings(&cluster);
    let config = berth::aws::sdk_config(&settings).await.unwrap();
    let ecs = berth::aws::ecs_client(&config);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);

    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let group = format!("/ecs/{cluster}");
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    let container = ContainerDefinition::builder()
        .name("app")
        .image("berth-sandbox/base:latest")
        .essential(true)
        .set_command(Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo from-rust; exit 3".into(),
        ]))
        .log_configuration(
            LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .options("awslogs-group", &group)
                .options("awslogs-region", "us-east-1")
                .options("awslogs-stream-prefix", "t")
                .build()
                .unwrap(),
        )
        .build();
    ecs.register_task_definition()
        .family(&cluster)
        .memory("512")
        .container_definitions(container)
        .send()
        .await
        .unwrap();
    let run = ecs
        .run_task()
        .cluster(&cluster)
        .task_definition(&cluster)
        .started_by("berth-test")
        .send()
        .await
        .unwrap();
    let arn = run.tasks()[0].task_arn().unwrap().to_owned();

    let task = stopped_task(
        &ecs,
        &cluster,
        &arn,
        Duration::from_secs(60),
        Duration::from_millis(200),
        "task never stopped",
    )
    .await;
    assert_eq!(
        task.stop_code().map(|c| c.as_str()),
        Some("EssentialContainerExited")
    );
    assert_eq!(task.containers()[0].exit_code(), Some(3));

    let task_id = arn.rsplit('/').next().unwrap();
    let events = logs
        .get_log_events()
        .log_group_name(&group)
        .log_stream_name(format!("t/app/{task_id}"))
        .start_from_head(true)
        .send()
        .await
        .unwrap();
    let lines: Vec<_> = events.events().iter().filter_map(|e| e.message()).collect();
    assert_eq!(lines, ["from-rust"]);
}

#[tokio::test]
async fn ecr_repository_round_trip() {
    let name = unique("rust-sdk-repo");
    let settings = sandbox_settings("unused");
    let config = berth::aws::sdk_config(&settings).await.unwrap();
    let ecr = berth::aws::ecr_client(&config);

    let created = ecr
        .create_repository()
        .repository_name(&name)
        .send()
        .await
        .unwrap();
    let uri = created.repository().unwrap().repository_uri().unwrap();
    // The sandbox's ECR names its own registry, as ECR names the one a client pushes to.
    let port = std::env::var("BERTH_SANDBOX_REGISTRY_PORT").unwrap_or_else(|_| "5055".to_owned());
    assert_eq!(uri, format!("127.0.0.1:{port}/{name}"));
    let images = ecr
        .describe_images()
        .repository_name(&name)
        .send()
        .await
        .unwrap();
    assert!(images.image_details().is_empty());
    let missing = ecr
        .describe_images()
        .repository_name(format!("{name}-missing"))
        .send()
        .await
        .unwrap_err();
    assert!(
        missing
            .as_service_error()
            .is_some_and(|e| e.is_repository_not_found_exception())
    );
}
