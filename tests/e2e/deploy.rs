//! A deploy end to end, its rerun, and a revision built from a task-definition file.

use std::path::Path;

use aws_sdk_ecs::types::ContainerDefinition;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn deploys_the_example_in_one_command_and_a_rerun_skips_everything() {
    let app = App::with_build(
        "ok",
        "env_tag = \"stg-latest\"\n[hooks]\nafter_deploy = \"echo token=$BUNDLE_TOKEN\"\n",
        "secret_args = [\"BUNDLE_TOKEN\"]",
    );
    let before = app.service_task_definitions().await;
    let seeded = app.counters();
    // Debug logs on, and a secret build arg: its value must appear nowhere.
    let run = app.deploy_with(&[], &[("BUNDLE_TOKEN", SECRET), ("BERTH_LOG", "debug")]);
    assert_eq!(run.code, Some(0), "deploy failed");
    assert!(
        !run.stderr.contains(SECRET) && !run.stdout.contains(SECRET),
        "a secret leaked"
    );
    let report = run.json();
    // A hook's output is masked as the build's is.
    assert!(
        run.stderr.contains("after_deploy | token=***"),
        "{}",
        run.stderr
    );

    // The timeline: each service's new tasks (pull, start), its deployment's time to steady, and
    // the seed's tasks it drained, from the tasks' timestamps; the sandbox's match its containers.
    let timeline = report["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 2, "{timeline:?}");
    let desired: std::collections::BTreeMap<String, i64> = app
        .services()
        .await
        .iter()
        .map(|s| {
            (
                s.service_name().unwrap().to_owned(),
                i64::from(s.desired_count()),
            )
        })
        .collect();
    for service in timeline {
        let desired = desired[service["service"].as_str().unwrap()];
        assert_eq!(service["tasks"], desired, "{service}");
        assert!(
            service["pull"]["slowest"].as_f64().unwrap() >= 0.0,
            "{service}"
        );
        assert!(
            service["start"]["median"].as_f64().unwrap() > 0.0,
            "{service}"
        );
        assert!(service["steady"].as_f64().unwrap() > 0.0, "{service}");
        // The seed's tasks stopped by the time the rollout completed, each with its drain.
        let drained = service["drained"].as_i64().unwrap();
        assert!(drained <= desired, "{service}");
        assert_eq!(service["drain"].is_object(), drained > 0, "{service}");
    }
    assert!(
        run.stderr.contains("timeline `web`: 2 new tasks: pull "),
        "{}",
        run.stderr
    );
    let record = app.record(report["deploy_id"].as_str().unwrap()).await;
    assert_eq!(record["timeline"], report["timeline"]);
    for task in app
        .tasks()
        .await
        .iter()
        .filter(|t| t.last_status() == Some("RUNNING"))
    {
        let started = task.started_at().unwrap().as_secs_f64();
        let latest = task
            .containers()
            .iter()
            .map(|c| container_started(c.runtime_id().unwrap()))
            .fold(f64::MIN, f64::max);
        assert!(
            (started - latest).abs() < 1.0,
            "startedAt {started} vs the containers' {latest}"
        );
    }

    // Built and pushed: ECR holds the commit's tag with the digest the revisions are pinned to.
    let digest = report["image"]["digest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:"));
    let ecr = aws_sdk_ecr::Client::new(&app.sdk_config().await);
    // The image is named as ECR names the repository: its `repositoryUri`.
    let repositories = ecr
        .describe_repositories()
        .repository_names(&app.name)
        .send()
        .await
        .unwrap();
    let uri = repositories.repositories()[0].repository_uri().unwrap();
    let pinned = format!("{uri}@{digest}");
    assert_eq!(report["image"]["uri"], pinned.as_str());
    assert_eq!(app.counters().pushes, seeded.pushes + 1);
    let latest = ecr
        .describe_images()
        .repository_name(&app.name)
        .image_ids(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_tag("stg-latest")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        latest.image_details()[0].image_digest(),
        Some(digest),
        "`stg-latest` not moved"
    );

    // web and devops on new revisions, pinned by digest, every other field kept.
    let ecs = app.ecs().await;
    let after = app.service_task_definitions().await;
    let mut sidecars_checked = 0;
    for (old_arn, new_arn) in before.iter().zip(&after) {
        assert_ne!(old_arn, new_arn);
        let old = task_definition(&ecs, old_arn).await;
        let new = task_definition(&ecs, new_arn).await;
        assert_eq!(container(&new, "app").image(), Some(pinned.as_str()));
        let mut expected_app = container(&old, "app").clone();
        expected_app.image = Some(pinned.clone());
        assert_eq!(
            container(&new, "app"),
            &expected_app,
            "app container changed beyond its image"
        );
        for (name, field_old, field_new) in [
            ("cpu", old.cpu(), new.cpu()),
            ("memory", old.memory(), new.memory()),
            ("taskRoleArn", old.task_role_arn(), new.task_role_arn()),
            (
                "executionRoleArn",
                old.execution_role_arn(),
                new.execution_role_arn(),
            ),
        ] {
            assert_eq!(field_old, field_new, "{name} changed");
        }
        assert_eq!(old.volumes(), new.volumes());
        assert_eq!(old.network_mode(), new.network_mode());
        assert_eq!(old.runtime_platform(), new.runtime_platform());
        assert_eq!(old.ephemeral_storage(), new.ephemeral_storage());
        assert_eq!(
            old.requires_compatibilities(),
            new.requires_compatibilities()
        );
        assert_eq!(
            old.container_definitions().len(),
            new.container_definitions().len(),
            "containers added or dropped"
        );
        // Containers that are not ours are untouched, whatever the seed gives each family.
        for other in old.container_definitions() {
            if other.name() != Some("app") {
                assert_eq!(container(&new, other.name().unwrap()), other);
            }
        }
        if old.family().is_some_and(|family| family.ends_with("-web")) {
            // The seed gives `web` a Datadog sidecar (`container` fails if it has none). It is
            // not ours: its definition, image included, is unchanged.
            assert_eq!(
                container(&old, "datadog-agent"),
                container(&new, "datadog-agent")
            );
            assert_eq!(
                container(&new, "datadog-agent").image(),
                Some("public.ecr.aws/datadog/agent:7")
            );
            sidecars_checked += 1;
        }
    }
    assert_eq!(sidecars_checked, 1, "`web` was not among the services");
    for service in &app.services().await {
        let [deployment] = service.deployments() else {
            panic!("{:?} has several deployments", service.service_name());
        };
        assert_eq!(
            deployment.rollout_state().map(|s| s.as_str()),
            Some("COMPLETED")
        );
        assert_eq!(deployment.running_count(), deployment.desired_count());
    }

    // The migration really ran: its log lines are in berth's output, the schema changed.
    assert!(
        run.stderr
            .contains("migrate | == 20260201000000 add_email_to_users: migrated")
    );
    assert_eq!(report["migration"]["exit_codes"]["app"], 0);
    let schema = Path::new(ROOT)
        .join("sandbox/.state/efs/fs-0b1e2a7c9d4f35e61")
        .join(format!("{}-stg", app.name))
        .join("schema.rb");
    assert!(
        fs_err::read_to_string(schema)
            .unwrap()
            .contains("add_column \"users\", \"email\"")
    );

    // A rerun of the completed deploy finds everything done and changes nothing.
    let counted = app.counters();
    let rerun = app.deploy_with(&[], &[("BUNDLE_TOKEN", SECRET)]);
    assert_eq!(rerun.code, Some(0));
    let again = app.counters();
    rerun.assert_skipped(&["build", "push", "register", "rollout", "migrate"]);
    again.assert_none_since(&counted, CHANGES);
    // The record says the deploy succeeded and AWS agrees: the rerun takes no lock and writes
    // nothing, S3 included.
    let writes = again.get("s3:PutObject") - counted.get("s3:PutObject");
    assert_eq!(writes, 0, "S3 writes of a rerun that finds everything done");
    assert!(
        rerun.stderr.contains("nothing to do, no lock taken"),
        "{}",
        rerun.stderr
    );
    assert_eq!(rerun.json()["revisions"], report["revisions"]);

    // Ten newer revisions later (other deploys, a console edit), a rerun still finds this
    // deploy's revision, named by the deploy record: no search, no tagging API.
    let web_family = format!("{}-stg-web", app.name);
    for n in 0..10 {
        ecs.register_task_definition()
            .family(&web_family)
            .memory("128")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("berth-sandbox/base:latest")
                    .environment(
                        aws_sdk_ecs::types::KeyValuePair::builder()
                            .name("N")
                            .value(n.to_string())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let counted = app.counters();
    // A secret build arg is checked before anything, also when ECR has the image already.
    let unset = app.deploy(&[]);
    assert_eq!(unset.code, Some(2), "{}", unset.stderr);
    assert!(
        unset
            .stderr
            .contains("secret build arg `BUNDLE_TOKEN` is not set")
    );
    let late = app.deploy_with(&[], &[("BUNDLE_TOKEN", SECRET)]);
    assert_eq!(late.code, Some(0));
    let again = app.counters();
    again.assert_none_since(&counted, CHANGES);
    assert_eq!(
        again.get("tagging:GetResources"),
        counted.get("tagging:GetResources")
    );
    assert_eq!(
        again.get("ecs:ListTaskDefinitions"),
        counted.get("ecs:ListTaskDefinitions")
    );
    assert_eq!(late.json()["revisions"], report["revisions"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_the_revision_from_a_task_definition_file_with_variables() {
    let app = App::new(
        "file",
        "migrate = \"skip\"\nservices = [\"web\"]\ntask_definition_vars = [\"RELEASE_CHANNEL\"]\n[task_definitions]\nweb = \"deploy/web.json\"\n",
    );
    let family = format!("{}-stg-web", app.name);
    app.write_web_task_definition(serde_json::json!([app.app_container(
        serde_json::json!([{"name": "RELEASE_CHANNEL", "value": "${RELEASE_CHANNEL}"}])
    )]));

    let missing = app.deploy(&[]);
    assert_eq!(
        missing.code,
        Some(2),
        "a missing variable is a settings error"
    );
    assert!(
        missing.stderr.contains("`${RELEASE_CHANNEL}`"),
        "{}",
        missing.stderr
    );

    let run = app.deploy_with(&[], &[("RELEASE_CHANNEL", "beta \"quoted\"")]);
    assert_eq!(run.code, Some(0));
    let ecs = app.ecs().await;
    let [web] = &app.service_task_definitions().await[..1] else {
        unreachable!()
    };
    let revision = task_definition(&ecs, web).await;
    assert_eq!(revision.family(), Some(family.as_str()));
    let env = container(&revision, "app").environment();
    assert_eq!(env[0].value(), Some("beta \"quoted\""));
    assert!(
        container(&revision, "app")
            .image()
            .unwrap()
            .contains("@sha256:")
    );
}

/// When Docker started a container, in Unix seconds.
fn container_started(id: &str) -> f64 {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.StartedAt}}", id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let parsed =
        humantime::parse_rfc3339_weak(text.trim_end_matches('Z').split('.').next().unwrap())
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let fraction: f64 = text.split_once('.').map_or(0.0, |(_, f)| {
        format!("0.{}", f.trim_end_matches('Z')).parse().unwrap()
    });
    parsed
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + fraction
}
