//! `berth deploy` end to end against the sandbox: the real binary, a real build and push, real
//! ECS tasks. Needs the sandbox (`scripts/test` starts it); `harness` has the example app's copy
//! each test deploys.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod harness;

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_ecs::types::ContainerDefinition;
use serde_json::{Value, json};

use harness::*;
#[tokio::test(flavor = "multi_thread")]
async fn deploys_the_example_in_one_command_and_a_rerun_skips_everything() {
    let app = App::with_build(
        "ok",
        "env_tag = \"stg-latest\"\n",
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

    // A rerun of the completed deploy finds everything done, changes nothing, and is quick.
    let counted = app.counters();
    let rerun = app.deploy_with(&[], &[("BUNDLE_TOKEN", SECRET)]);
    assert_eq!(rerun.code, Some(0));
    let again = app.counters();
    rerun.assert_skipped(&["build", "push", "register", "rollout", "migrate"]);
    again.assert_none_since(&counted, CHANGES);
    assert_eq!(rerun.json()["revisions"], report["revisions"]);
    assert!(
        rerun.elapsed < Duration::from_secs(2),
        "rerun took {:?}",
        rerun.elapsed
    );

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
    let late = app.deploy(&[]);
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
async fn failed_migration_before_rollout_leaves_services_untouched_and_is_not_rerun() {
    let app = App::new(
        "mig",
        "migrate = \"before\"\n[environment]\nMIGRATION_FAIL = \"1\"\n",
    );
    let before = app.service_task_definitions().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(3), "expected the migration-failed exit code");
    assert!(run.stderr.contains("`app` exited 1"), "no exit code shown");
    assert!(
        run.stderr.contains("failed (MIGRATION_FAIL=1)"),
        "no log tail shown"
    );
    assert!(run.stderr.contains("last log lines:"));
    // The JSON record says how far the deploy got, and how it failed.
    let record = run.json();
    assert_eq!(record["error"]["exit_code"], 3);
    let statuses: Vec<(String, String)> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("build", "done"),
            ("push", "done"),
            ("register", "done"),
            ("migrate", "failed")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(
        app.service_task_definitions().await,
        before,
        "services changed"
    );

    let rerun = app.rerun_without(&[], CHANGES);
    assert_eq!(rerun.code, Some(3));
    assert!(rerun.stderr.contains("--retry-migration"));
    rerun.assert_skipped(&["build", "push", "register"]);
    assert_eq!(app.service_task_definitions().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn crashing_image_is_reported_as_rolled_back_within_seconds() {
    let app = App::new("crash", "[environment]\nCRASH_ON_BOOT = \"1\"\n");
    let before = app.service_task_definitions().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(1), "expected the deploy-failed exit code");
    assert!(
        run.stderr.contains("rollout of `web` failed"),
        "no failure named"
    );
    assert!(
        run.stderr
            .contains("deployment failed: tasks failed to start"),
        "no events shown"
    );
    assert!(
        run.stderr.contains("app exit 1"),
        "no exit codes of the stopped tasks"
    );

    // berth noticed within 10 s of the sandbox marking the deployment failed.
    let ecs = app.ecs().await;
    let web = ecs
        .describe_services()
        .cluster(app.cluster())
        .services("web")
        .send()
        .await
        .unwrap();
    let failed_at = web.services()[0]
        .events()
        .iter()
        .find(|e| {
            e.message()
                .unwrap_or_default()
                .contains("deployment failed")
        })
        .and_then(|e| e.created_at())
        .unwrap();
    let failed_at = UNIX_EPOCH + Duration::from_secs_f64(failed_at.as_secs_f64());
    let lag = run.ended.duration_since(failed_at).unwrap_or_default();
    assert!(
        lag < Duration::from_secs(10),
        "berth reported the failure {lag:?} after ECS"
    );

    // The rerun rebuilds nothing and registers nothing; it tries the rollout again, honestly.
    let rerun = app.rerun_without(&[], &["ecs:RegisterTaskDefinition", "ecs:RunTask"]);
    assert_eq!(rerun.code, Some(1));
    // web rolled back to its old revision; devops took the new one (it does not crash).
    assert_eq!(app.service_task_definitions().await[0], before[0]);
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

#[tokio::test(flavor = "multi_thread")]
async fn a_run_task_whose_answers_were_lost_starts_one_task_and_the_rerun_attaches_to_it() {
    let app = App::new("claim", "migrate = \"before\"\n");
    let before = app.service_task_definitions().await;
    // ECS starts the task on every attempt the SDK makes, and every answer is lost: berth cannot
    // know the task started. The SDK's retries and the rerun all pass the attempt's clientToken,
    // which the deploy record holds, so ECS starts one task.
    let rule = app.fault(serde_json::json!({
        "service": "ecs", "operation": "RunTask", "error": "lost", "first": 5
    }));
    assert_eq!(rule["first"], 5, "{rule}");
    let run = app.deploy(&[]);
    assert_ne!(run.code, Some(0), "the migration's start is unknown");
    assert_eq!(
        app.service_task_definitions().await,
        before,
        "services changed before the migration was known to succeed"
    );

    let counted = app.counters();
    let rerun = app.deploy(&[]);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert!(
        rerun.stderr.contains("resuming migration attempt 0"),
        "{}",
        rerun.stderr
    );
    assert!(rerun.stderr.contains("add_email_to_users: migrated"));
    assert_eq!(
        app.counters().get("ecs:RunTask"),
        counted.get("ecs:RunTask") + 1,
        "one RunTask, with the claimed attempt's token"
    );
    let deploy_id = rerun.json()["deploy_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.tasks_started_by(&deploy_id).await.len(),
        1,
        "one migration task for the deploy"
    );
    assert_ne!(
        app.service_task_definitions().await,
        before,
        "rolled out after the migration"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_essential_sidecar_that_ecs_kills_at_the_end_does_not_fail_the_migration() {
    let app = App::new("sidecar", "[task_definitions]\nweb = \"deploy/web.json\"\n");
    // `sleep` as PID 1 has no SIGTERM handler: when `app` exits, ECS's SIGTERM does nothing and
    // the SIGKILL after `stopTimeout` ends it with 137.
    app.write_web_task_definition(serde_json::json!([
        app.app_container(serde_json::json!([])),
        {
            "name": "proxy",
            "image": "berth-sandbox/base:latest",
            "essential": true,
            "command": ["sleep", "3600"],
            "stopTimeout": 2
        }
    ]));
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(0), "the migration container exited 0");
    let record = run.json();
    assert_eq!(record["migration"]["exit_codes"]["app"], 0);
    assert_eq!(record["migration"]["exit_codes"]["proxy"], 137);
    assert!(
        run.stderr.contains(
            "essential container `proxy` was stopped by ECS when the task ended (SIGKILL after its `stopTimeout`, exit 137)"
        ),
        "the killed sidecar is reported"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_with_another_deployment_controller_is_refused_before_any_change() {
    let app = App::new("ctrl", "");
    let ecs = app.ecs().await;
    let web = app.services().await.remove(0);
    ecs.create_service()
        .cluster(app.cluster())
        .service_name("blue")
        .task_definition(web.task_definition().unwrap())
        .desired_count(0)
        .deployment_controller(
            aws_sdk_ecs::types::DeploymentController::builder()
                .r#type(aws_sdk_ecs::types::DeploymentControllerType::CodeDeploy)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    app.edit_config(|config| {
        config.replace(
            "services = [\"web\", \"devops\"]",
            "services = [\"web\", \"blue\"]",
        )
    });
    let before = app.service_task_definitions().await;
    let run = app.rerun_without(&[], CHANGES);
    assert_eq!(run.code, Some(2), "a settings error");
    assert!(
        run.stderr
            .contains("service `blue` uses the `CODE_DEPLOY` deployment controller"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"));
    assert!(!run.stderr.contains("build: started"), "nothing was built");
    assert_eq!(app.service_task_definitions().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_a_deploy_as_ctrl_c_does() {
    let app = App::new("term", "");
    // CircleCI cancels a job with SIGTERM; send it while the rollout is under way.
    let run = app.interrupt(&[], &[], &|line| line.ends_with("rollout: started"), "TERM");
    assert_eq!(run.code, Some(130), "exit 130, as after Ctrl-C");
    assert!(run.stderr.contains("error: interrupted"), "{}", run.stderr);
    assert!(
        run.stderr.contains("rerun the same command"),
        "says how to resume: {}",
        run.stderr
    );
    let record = run.json();
    assert_eq!(record["error"]["exit_code"], 130);
    let last = record["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["step"], "rollout");
    assert_eq!(last["status"], "interrupted");
    // The lock is released at once, and the record says how the run ended.
    assert_eq!(app.lock().await["holder"], Value::Null);
    let deploy_id = record["deploy_id"].as_str().unwrap();
    assert_eq!(app.record(deploy_id).await["state"], "interrupted");
    // The rerun needs no wait for a lease, and finishes the deploy.
    let rerun = app.deploy(&[]);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert!(!rerun.stderr.contains("locked by"), "{}", rerun.stderr);
    assert_eq!(app.record(deploy_id).await["state"], "succeeded");
}

/// Ctrl-C while the migration runs: berth stops waiting at once, frees the lock and leaves the
/// task running (stopping a migration half-way is worse than letting it finish); the same
/// command then judges that task, and the migration runs once.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_the_migration_leaves_it_running_and_the_rerun_judges_it() {
    let app = App::new("intmig", "");
    fs_err::write(
        app.dir
            .path()
            .join("db/migrate/20260301000000_backfill_emails.sh"),
        "echo \"-- backfilling users.email\"\nsleep 20\necho \"-- backfilled\"\n",
    )
    .unwrap();
    app.commit("a migration that takes a while");
    let run = app.interrupt(&[], &[], &|line| line.contains("migrate | "), "INT");
    assert_eq!(run.code, Some(130), "exit 130: {}", run.stderr);
    assert!(
        run.stderr.contains("rerun the same command"),
        "says how to resume: {}",
        run.stderr
    );
    let deploy_id = run.json()["deploy_id"].as_str().unwrap().to_owned();
    assert_eq!(app.lock().await["holder"], Value::Null, "the lock is free");
    let tasks = app.tasks_started_by(&deploy_id).await;
    assert_eq!(tasks.len(), 1, "one migration task");
    let described = app
        .ecs()
        .await
        .describe_tasks()
        .cluster(app.cluster())
        .tasks(&tasks[0])
        .send()
        .await
        .unwrap();
    let task = &described.tasks()[0];
    assert_eq!(
        task.desired_status(),
        Some("RUNNING"),
        "berth left the migration running: {task:?}"
    );

    // The rerun judges that task (attached while it runs, or by how it ended) and starts none.
    let rerun = app.deploy(&[]);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert_eq!(app.tasks_started_by(&deploy_id).await, tasks);
    let record = app.record(&deploy_id).await;
    assert_eq!(record["state"], "succeeded");
    let attempts = record["migration"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{record}");
    assert_eq!(attempts[0]["task_arn"], tasks[0].as_str(), "{record}");
    assert_eq!(attempts[0]["outcome"], "succeeded", "{record}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_env_tag_that_cannot_be_moved_is_a_warning_and_the_deploy_succeeds() {
    let app = App::new("envtag", "env_tag = \"stg-latest\"\nmigrate = \"skip\"\n");
    let before = app.service_task_definitions().await;
    // Every attempt at the tag move fails; the build's push goes to the registry, not PutImage.
    app.fault(serde_json::json!({
        "service": "ecr", "operation": "PutImage", "error": "500", "first": 10
    }));
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(0), "the deploy landed");
    assert!(
        run.stderr
            .contains("warning: the deploy landed, but tag `stg-latest` was not moved"),
        "{}",
        run.stderr
    );
    let warnings = run.json()["warnings"].clone();
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.contains("`stg-latest`")),
        "{warnings}"
    );
    assert_ne!(
        app.service_task_definitions().await,
        before,
        "services are on the new revisions"
    );
}

/// The image names a build, not a deploy: `prd` after `stg` with the same build settings promotes
/// the image without building or pushing it; other build args make another image.
#[tokio::test(flavor = "multi_thread")]
async fn a_prd_deploy_after_stg_promotes_the_same_image() {
    let app = App::create("promote", "migrate = \"skip\"\n", "", &["stg", "prd"]);
    let seeded = app.counters();
    let stg = app.deploy(&[]);
    assert_eq!(stg.code, Some(0));
    let stg_image = stg.json()["image"].clone();
    assert_eq!(app.counters().pushes, seeded.pushes + 1);

    let prd = app.rerun_without(&["--env", "prd"], &["ecr:GetAuthorizationToken"]);
    assert_eq!(prd.code, Some(0));
    prd.assert_skipped(&["build", "push"]);
    assert_eq!(prd.json()["image"], stg_image, "the same tag and digest");
    assert_ne!(
        prd.json()["deploy_id"],
        stg.json()["deploy_id"],
        "another deploy"
    );

    app.edit_config(|config| {
        format!("{config}[env.prd.build]\nargs = {{ RAILS_LOG_LEVEL = \"warn\" }}\n")
    });
    let other = app.deploy(&["--env", "prd"]);
    assert_eq!(other.code, Some(0));
    assert_ne!(
        other.json()["image"]["tag"],
        stg_image["tag"],
        "other build args, another image"
    );
    assert_eq!(app.counters().pushes, seeded.pushes + 2);
}

/// A cluster or a region that does not exist is a settings error (exit 2) naming it, found
/// before anything is built or changed.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_cluster_or_region_is_a_settings_error_naming_it() {
    let app = App::new("where", "");
    let before = app.service_task_definitions().await;
    app.edit_config(|config| {
        config.replace(
            &format!("cluster = \"{}-stg\"", app.name),
            "cluster = \"no-such-cluster\"",
        )
    });
    let run = app.rerun_without(&[], CHANGES);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("error: cluster `no-such-cluster` not found"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: check `cluster`"));

    let run = app.rerun_without(&["--region", "xx-nowhere-9"], CHANGES);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("error: region `xx-nowhere-9` is not an AWS region berth knows"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("build: started"));
    assert_eq!(app.service_task_definitions().await, before);
}

/// `branch` in berth.toml: a deploy from another branch, or from a detached checkout without
/// `CIRCLE_BRANCH`, is refused (exit 2) before any AWS call; `CIRCLE_BRANCH` names CircleCI's
/// branch (its checkout is detached); `--any-branch` deploys anyway.
#[tokio::test(flavor = "multi_thread")]
async fn an_environment_deploys_from_its_branch_only() {
    let app = App::new("branch", "migrate = \"skip\"\n");
    app.edit_config(|config| config.replace("[env.stg]\n", "[env.stg]\nbranch = \"develop\"\n"));
    let before = app.service_task_definitions().await;
    let counted = app.counters();
    let refused = |run: &Run, said: &str| {
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "error: `stg` deploys from branch `develop`, {said}"
            )),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("hint: deploy a commit of `develop`, or pass `--any-branch`"),
            "{}",
            run.stderr
        );
    };
    refused(&app.deploy(&[]), "not from `main` (the checkout's branch)");
    refused(
        &app.deploy_with(&[], &[("CIRCLE_BRANCH", "feature/x")]),
        "not from `feature/x` (`CIRCLE_BRANCH`)",
    );
    app.git(&["checkout", "-q", "--detach"]);
    refused(
        &app.deploy(&[]),
        "and the checkout is on no branch (detached, and no `CIRCLE_BRANCH`)",
    );
    // `CIRCLE_SHA1` must be the commit checked out: the image is tagged with it.
    let other = "0123456789abcdef0123456789abcdef01234567";
    let mislabeled = app.deploy_with(&[], &[("CIRCLE_BRANCH", "develop"), ("CIRCLE_SHA1", other)]);
    assert_eq!(mislabeled.code, Some(2), "{}", mislabeled.stderr);
    assert!(
        mislabeled.stderr.contains(&format!(
            "error: `CIRCLE_SHA1` is `{other}`, but the checkout at"
        )),
        "{}",
        mislabeled.stderr
    );
    app.counters().assert_none_since(
        &counted,
        &[
            "sts:GetCallerIdentity",
            "s3:PutObject",
            "ecs:RegisterTaskDefinition",
            "ecs:UpdateService",
        ],
    );
    assert_eq!(app.service_task_definitions().await, before);

    // CircleCI: a detached checkout of `develop`.
    let ci = app.deploy_with(&[], &[("CIRCLE_BRANCH", "develop")]);
    assert_eq!(ci.code, Some(0), "{}", ci.stderr);
    assert_ne!(app.service_task_definitions().await, before);
    // Another branch with `--any-branch`: the same deploy, found done.
    app.git(&["checkout", "-q", "-b", "hotfix"]);
    let anyway = app.deploy(&["--any-branch"]);
    assert_eq!(anyway.code, Some(0), "{}", anyway.stderr);
    anyway.assert_skipped(&["build", "push", "register", "rollout"]);
}

/// CircleCI's remote Docker is a TLS endpoint: berth builds and pushes through the sandbox's TLS
/// front, and without the certificates it stops before changing anything (exit 4).
#[tokio::test(flavor = "multi_thread")]
async fn builds_and_pushes_through_docker_over_tls() {
    let app = App::new("tls", "migrate = \"skip\"\n");
    let host = app.var("BERTH_SANDBOX_DOCKER_TLS_HOST");
    let certs = app.var("BERTH_SANDBOX_DOCKER_CERT_PATH");
    // A deploy through the TLS front, with the certificates in `folder`.
    let over_tls = |folder: &str| {
        app.deploy_with(
            &[],
            &[
                ("DOCKER_HOST", &host),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", folder),
            ],
        )
    };
    let before = app.service_task_definitions().await;

    let missing = tempfile::tempdir().unwrap();
    let counted = app.counters();
    let without = over_tls(missing.path().to_str().unwrap());
    assert_eq!(without.code, Some(4), "{}", without.stderr);
    assert!(
        without
            .stderr
            .contains("error: `DOCKER_TLS_VERIFY` is set, but `"),
        "{}",
        without.stderr
    );
    assert!(without.stderr.contains("ca.pem"));
    app.counters().assert_none_since(&counted, CHANGES);
    assert_eq!(app.service_task_definitions().await, before);

    // The wrong CA: the engine's certificate is not signed by this `ca.pem`.
    let wrong = tempfile::tempdir().unwrap();
    for file in ["cert.pem", "key.pem"] {
        fs_err::copy(Path::new(&certs).join(file), wrong.path().join(file)).unwrap();
    }
    fs_err::copy(
        Path::new(&certs).join("cert.pem"),
        wrong.path().join("ca.pem"),
    )
    .unwrap();
    let untrusted = over_tls(wrong.path().to_str().unwrap());
    assert_eq!(untrusted.code, Some(4), "{}", untrusted.stderr);
    assert!(
        untrusted.stderr.contains(&format!(
            "error: cannot reach the Docker engine at `{host}` over TLS"
        )),
        "{}",
        untrusted.stderr
    );
    assert!(
        untrusted
            .stderr
            .contains("hint: `DOCKER_CERT_PATH` must hold")
    );
    app.counters().assert_none_since(&counted, CHANGES);

    let seeded = app.counters();
    let run = over_tls(&certs);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("build: done"), "built over TLS");
    assert_eq!(app.counters().pushes, seeded.pushes + 1);
    assert_ne!(app.service_task_definitions().await, before);
}

impl App {
    /// Sets `web`'s circuit breaker: `None` turns it off.
    async fn set_web_breaker(&self, rollback: Option<bool>) {
        let breaker = aws_sdk_ecs::types::DeploymentCircuitBreaker::builder()
            .enable(rollback.is_some())
            .rollback(rollback.unwrap_or(false))
            .build();
        self.ecs()
            .await
            .update_service()
            .cluster(self.cluster())
            .service("web")
            .deployment_configuration(
                aws_sdk_ecs::types::DeploymentConfiguration::builder()
                    .deployment_circuit_breaker(breaker)
                    .maximum_percent(200)
                    .minimum_healthy_percent(100)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
}

/// Without a circuit breaker ECS replaces a crashing task for ever; berth fails at the breaker's
/// threshold, with the events and exit codes, long before `timeouts.rollout` (3 minutes here).
#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_image_without_a_circuit_breaker_fails_in_bounded_time() {
    let app = App::new(
        "nobreaker",
        "migrate = \"skip\"\n[environment]\nCRASH_ON_BOOT = \"1\"\n",
    );
    app.set_web_breaker(None).await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("the service has no circuit breaker"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("app exit 1"), "exit codes shown");
    assert!(
        run.elapsed < Duration::from_secs(90),
        "failed after {:?}, not at the timeout",
        run.elapsed
    );
    assert!(run.stderr.contains("where each service ends:"));
    let record = run.json();
    let web = record["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web")
        .unwrap()
        .clone();
    assert_eq!(web["rollout_state"], "FAILED");
    assert_eq!(web["ends_on"], web["task_definition"], "ECS left it there");
}

/// A breaker without rollback leaves the FAILED deployment in place; the rerun of that deploy
/// says so and starts a new deployment of the same revision instead of failing at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deployment_left_in_place_is_started_again_by_the_rerun() {
    // `on_failure = "leave"`: the failed deployment stays for the rerun to find.
    let app = App::new(
        "again",
        "migrate = \"skip\"\non_failure = \"leave\"\n[environment]\nCRASH_ON_BOOT = \"1\"\n",
    );
    app.set_web_breaker(Some(false)).await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("is FAILED"), "{}", run.stderr);

    let counted = app.counters();
    let rerun = app.deploy(&[]);
    assert_eq!(rerun.code, Some(1), "still crashing");
    assert!(
        rerun
            .stderr
            .contains("FAILED and ECS did not roll it back (the circuit breaker's rollback is off): starting a new deployment of it"),
        "{}",
        rerun.stderr
    );
    let again = app.counters();
    assert_eq!(
        again.get("ecs:UpdateService"),
        counted.get("ecs:UpdateService") + 1,
        "one new deployment, of web"
    );
    again.assert_none_since(&counted, &["ecs:RegisterTaskDefinition"]);
}

/// A rule's targets as EventBridge returns them (raw JSON).
async fn rule_targets(app: &App, rule: &str) -> Value {
    let events = aws_sdk_eventbridge::Client::new(&app.sdk_config().await);
    let captured = berth::aws::wire::CaptureBody::default();
    events
        .list_targets_by_rule()
        .rule(rule)
        .customize()
        .interceptor(captured.clone())
        .send()
        .await
        .unwrap();
    captured.json("targets").unwrap()["Targets"].clone()
}

/// A schedule as EventBridge Scheduler returns it (raw JSON).
async fn schedule_document(app: &App, name: &str) -> Value {
    let scheduler = aws_sdk_scheduler::Client::new(&app.sdk_config().await);
    let captured = berth::aws::wire::CaptureBody::default();
    scheduler
        .get_schedule()
        .name(name)
        .customize()
        .interceptor(captured.clone())
        .send()
        .await
        .unwrap();
    captured.json("schedule").unwrap()
}

/// Scheduled tasks follow the deploy: the nightly rule's and the hourly schedule's ECS targets,
/// which run the web family, move to its new revision with every other field byte-identical;
/// firing them then runs the new revision as real tasks; a rerun moves nothing. `devops` has no
/// scheduled target, and that is fine.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_tasks_follow_the_deploy() {
    let app = App::new("sched", "migrate = \"skip\"\n");
    let rule = format!("{}-stg-nightly", app.name);
    let schedule = format!("{}-stg-hourly", app.name);
    let web = format!("{}-stg-web", app.name);
    let targets_before = rule_targets(&app, &rule).await;
    let schedule_before = schedule_document(&app, &schedule).await;
    let seeded = app.counters();
    let old = targets_before[0]["EcsParameters"]["TaskDefinitionArn"].clone();
    assert!(old.as_str().unwrap().ends_with(&format!("{web}:1")));

    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report = run.json();
    let new = report["revisions"][&web].as_str().unwrap().to_owned();
    assert!(run.stderr.contains("schedules: done"), "{}", run.stderr);
    let calls = app.counters().since(&seeded);
    assert_eq!(
        (
            calls.get("events:PutTargets"),
            calls.get("scheduler:UpdateSchedule")
        ),
        (Some(&1), Some(&1)),
        "{calls:?}"
    );
    let moved: Vec<(&str, &str)> = report["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        moved,
        [
            (format!("rule/{rule}").as_str(), new.as_str()),
            (
                format!("schedule/default/{schedule}").as_str(),
                new.as_str()
            )
        ]
    );

    // Only the revision changed, in both.
    let mut expected = targets_before.clone();
    expected[0]["EcsParameters"]["TaskDefinitionArn"] = Value::String(new.clone());
    assert_eq!(rule_targets(&app, &rule).await, expected);
    let mut expected = schedule_before.clone();
    expected["Target"]["EcsParameters"]["TaskDefinitionArn"] = Value::String(new.clone());
    let mut after = schedule_document(&app, &schedule).await;
    for document in [&mut expected, &mut after] {
        document
            .as_object_mut()
            .unwrap()
            .remove("LastModificationDate");
    }
    assert_eq!(after, expected);
    let record = app.record(report["deploy_id"].as_str().unwrap()).await;
    assert_eq!(record["schedules"][0]["from"], old);

    // Fired, both run the new revision: the schedule's batch job in the new image.
    let port = app.var("BERTH_SANDBOX_PORT");
    let ecs = app.ecs().await;
    for fire in [json!({"rule": rule}), json!({"schedule": schedule})] {
        let fired = admin(&port, "POST", "/_sandbox/fire", Some(&fire));
        let task = &fired["tasks"][0];
        assert_eq!(task["taskDefinitionArn"], new.as_str(), "{fire}");
        let arn = task["taskArn"].as_str().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        let stopped = loop {
            let described = ecs
                .describe_tasks()
                .cluster(app.cluster())
                .tasks(arn)
                .send()
                .await
                .unwrap();
            let task = described.tasks()[0].clone();
            if task.last_status() == Some("STOPPED") {
                break task;
            }
            assert!(std::time::Instant::now() < deadline, "{fire} did not stop");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let app_container = stopped
            .containers()
            .iter()
            .find(|c| c.name() == Some("app"))
            .unwrap();
        assert_eq!(app_container.exit_code(), Some(0), "{fire}: {stopped:?}");
    }

    // A rerun finds them moved.
    let counted = app.counters();
    let rerun = app.deploy(&[]);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert!(
        rerun
            .stderr
            .contains("schedules: already done (2 scheduled target(s) run the new revisions)"),
        "{}",
        rerun.stderr
    );
    app.counters()
        .assert_none_since(&counted, &["events:PutTargets", "scheduler:UpdateSchedule"]);

    // The next deploy moves them on; a rollback takes them back with the services.
    let next = app.deploy(&["--new"]);
    assert_eq!(next.code, Some(0), "{}", next.stderr);
    let newer = next.json()["revisions"][&web].as_str().unwrap().to_owned();
    let on = |targets: Value, schedule: Value| {
        (
            targets[0]["EcsParameters"]["TaskDefinitionArn"].clone(),
            schedule["Target"]["EcsParameters"]["TaskDefinitionArn"].clone(),
        )
    };
    assert_eq!(
        on(
            rule_targets(&app, &rule).await,
            schedule_document(&app, &schedule).await
        ),
        (Value::from(newer.clone()), Value::from(newer.clone()))
    );
    let back = app.run("rollback", &[], &[]);
    assert_eq!(back.code, Some(0), "{}", back.stderr);
    assert_eq!(
        on(
            rule_targets(&app, &rule).await,
            schedule_document(&app, &schedule).await
        ),
        (Value::from(new.clone()), Value::from(new.clone()))
    );
    assert_eq!(
        back.json()["schedules"][0]["to"],
        new.as_str(),
        "{}",
        back.stdout
    );
    assert_eq!(back.json()["schedules"][0]["from"], newer.as_str());

    // A role that may not look for them: the deploy lands with a warning naming the action.
    app.fault(
        json!({"service": "events", "operation": "ListRuleNamesByTarget", "error": "denied"}),
    );
    let denied = app.deploy(&["--new"]);
    app.clear_faults();
    assert_eq!(denied.code, Some(0), "{}", denied.stderr);
    assert!(
        denied
            .stderr
            .contains("warning: scheduled tasks were not looked for:"),
        "{}",
        denied.stderr
    );
    assert!(
        denied.stderr.contains("events:ListRuleNamesByTarget"),
        "{}",
        denied.stderr
    );
    assert!(
        denied.stderr.contains("set `schedules = []`"),
        "{}",
        denied.stderr
    );
    let target = &rule_targets(&app, &rule).await[0];
    assert_eq!(target["EcsParameters"]["TaskDefinitionArn"], new.as_str());
}

/// `berth plan` reads and changes nothing: before a deploy it shows the build, each family's new
/// revision as a diff, the services and scheduled targets that would move and the migration
/// (exit 0); after the deploy there is nothing to deploy (exit 6); an environment variable added
/// in berth.toml shows as that key (and the image of the new commit); a change to the app too.
#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_what_a_deploy_would_do_and_changes_nothing() {
    let app = App::new("plan", "");
    let web = format!("{}-stg-web", app.name);
    let counted = app.counters();
    let first = app.run("plan", &[], &[]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let plan = first.json();
    assert_eq!(plan["changes"], true);
    assert_eq!(plan["image"]["digest"], Value::Null, "{plan}");
    let families = plan["families"].as_array().unwrap();
    let web_plan = families
        .iter()
        .find(|f| f["family"] == web.as_str())
        .unwrap();
    let paths: Vec<&str> = web_plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["containerDefinitions[app].image"], "{plan}");
    assert_eq!(plan["services"][0]["to"], format!("{web}:new"));
    let moving: Vec<&str> = plan["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(moving.len(), 2, "{plan}");
    assert_eq!(
        plan["migration"]["command"],
        json!(["bin/rails", "db:migrate"])
    );
    let text = app.run("plan", &["--output", "text"], &[]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    for said in [
        "would be built and pushed",
        "~ containerDefinitions[app].image: ",
        &format!("`rule/{}-stg-nightly` target `cleanup`:", app.name),
        "migration: `bin/rails db:migrate` in container `app`",
        "a deploy would change the environment",
    ] {
        assert!(text.stdout.contains(said), "{said}: {}", text.stdout);
    }
    app.counters().assert_none_since(
        &counted,
        &[
            "ecs:RegisterTaskDefinition",
            "ecs:UpdateService",
            "ecs:RunTask",
            "events:PutTargets",
            "scheduler:UpdateSchedule",
            "s3:PutObject",
            "s3:CreateBucket",
        ],
    );

    let deployed = app.deploy(&[]);
    assert_eq!(deployed.code, Some(0), "{}", deployed.stderr);
    let after = app.run("plan", &["--output", "text"], &[]);
    assert_eq!(after.code, Some(6), "{}\n{}", after.stdout, after.stderr);
    assert!(
        after.stdout.contains("nothing to deploy"),
        "{}",
        after.stdout
    );

    app.edit_config(|config| {
        config.replace(
            "[env.stg]\n",
            "[env.stg]\nenvironment = { FEATURE_X = \"on\" }\n",
        )
    });
    // The change is a commit: the image is tagged by commit, so it is built anew too.
    let variable = app.run("plan", &[], &[]);
    assert_eq!(variable.code, Some(0), "{}", variable.stderr);
    let plan = variable.json();
    assert_eq!(plan["image"]["digest"], Value::Null, "{plan}");
    let web_plan = plan["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["family"] == web.as_str())
        .unwrap()
        .clone();
    let changes = web_plan["changes"].as_array().unwrap();
    assert_eq!(
        changes[0],
        json!({
            "path": "containerDefinitions[app].environment[FEATURE_X]",
            "from": null,
            "to": {"name": "FEATURE_X", "value": "on"}
        })
    );
    assert_eq!(changes[1]["path"], "containerDefinitions[app].image");
    assert_eq!(changes.len(), 2, "{web_plan}");

    fs_err::write(app.dir.path().join("public/extra.txt"), "new").unwrap();
    app.commit("a change to the app");
    let code = app.run("plan", &[], &[]);
    assert_eq!(code.code, Some(0), "{}", code.stderr);
    assert_eq!(code.json()["image"]["digest"], Value::Null);
}

/// `berth init` on the demo account writes a commented berth.toml with which `berth deploy`
/// then works unchanged; it never overwrites one.
#[tokio::test(flavor = "multi_thread")]
async fn init_writes_a_berth_toml_that_deploys_unchanged() {
    let app = App::new("init", "");
    fs_err::remove_file(app.dir.path().join("berth.toml")).unwrap();
    app.commit("no berth.toml");
    let cluster = app.cluster();
    let args = [
        "--cluster",
        cluster.as_str(),
        "--service",
        "web",
        "--service",
        "devops",
        "--region",
        "us-east-1",
    ];
    let init = app.run("init", &args, &[]);
    assert_eq!(init.code, Some(0), "{}", init.stderr);
    let written = init.json();
    assert_eq!(written["repository"], app.name.as_str());
    assert_eq!(written["containers"], json!(["app"]));
    assert_eq!(
        written["schedules"].as_array().unwrap().len(),
        2,
        "{written}"
    );
    let text = fs_err::read_to_string(app.dir.path().join("berth.toml")).unwrap();
    println!("{text}");
    for said in [
        format!("repository = \"{}\"", app.name),
        "containers = [\"app\"]".to_owned(),
        "#   `datadog-agent` of `web` runs `public.ecr.aws/datadog/agent:7` and keeps it"
            .to_owned(),
        format!("[env.stg]\nregion = \"us-east-1\"\ncluster = \"{cluster}\""),
        "services = [\"web\", \"devops\"]".to_owned(),
        format!("#   rule/{}-stg-nightly (target `cleanup`) runs", app.name),
    ] {
        assert!(text.contains(&said), "{said}:\n{text}");
    }
    app.commit("berth init");

    let again = app.run("init", &args, &[]);
    assert_eq!(again.code, Some(2), "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("`berth.toml` exists; `berth init` never overwrites it"),
        "{}",
        again.stderr
    );

    let deploy = app.deploy(&[]);
    assert_eq!(deploy.code, Some(0), "{}", deploy.stderr);
    let report = deploy.json();
    let revisions: Vec<String> = ["web", "devops"]
        .iter()
        .map(|s| {
            report["revisions"][format!("{}-stg-{s}", app.name)]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(app.service_task_definitions().await, revisions);
    assert!(deploy.stderr.contains("migrate: done"), "{}", deploy.stderr);
}

/// `keep_revisions = 2`: after each deploy, each family keeps its newest 2 ACTIVE revisions and
/// every one still in use (a service's, a scheduled target's, one the newest 2 deploys' records
/// name) or not made by this environment's deploys; the rest are deregistered, and the record
/// says which.
#[tokio::test(flavor = "multi_thread")]
async fn old_unused_revisions_are_deregistered_beyond_keep_revisions() {
    // `schedules = []`: the nightly rule and the hourly schedule stay on `web:1`, which is then
    // in use however old it gets.
    let app = App::new(
        "tidy",
        "keep_revisions = 2\nschedules = []\nmigrate = \"skip\"\n",
    );
    let first = app.deploy(&[]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let mut last = first;
    for _ in 0..3 {
        last = app.deploy(&["--new"]);
        assert_eq!(last.code, Some(0), "{}", last.stderr);
    }
    let ecs = app.ecs().await;
    let active = |family: String| {
        let ecs = ecs.clone();
        async move {
            let listed = ecs
                .list_task_definitions()
                .family_prefix(&family)
                .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
                .send()
                .await
                .unwrap();
            let mut numbers: Vec<u64> = listed
                .task_definition_arns()
                .iter()
                .map(|arn| arn.rsplit(':').next().unwrap().parse().unwrap())
                .collect();
            numbers.sort_unstable();
            numbers
        }
    };
    assert_eq!(active(format!("{}-stg-web", app.name)).await, [1, 3, 4, 5]);
    // Revision 1 of each family was made by hand (the demo account's seed), not by a deploy of
    // `stg`: never berth's to deregister.
    assert_eq!(
        active(format!("{}-stg-devops", app.name)).await,
        [1, 3, 4, 5]
    );
    let report = last.json();
    let gone: Vec<&str> = report["deregistered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arn| arn.as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        gone,
        [
            format!("{}-stg-devops:2", app.name),
            format!("{}-stg-web:2", app.name)
        ]
    );
    let record = app.record(report["deploy_id"].as_str().unwrap()).await;
    assert_eq!(record["deregistered"], report["deregistered"]);
    assert!(last.stderr.contains("cleanup: done"), "{}", last.stderr);
}

/// A fresh CI machine has none of the app's images and no build cache. The build takes its
/// cached steps from ECR: from the image the service runs, and from the cache image of the
/// `assets` stage, which the image itself only copies from. It says what was cached and what
/// ran, and `[build] cache = false` builds without.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_on_an_empty_engine_takes_its_cache_from_ecr() {
    let app = App::with_build("cache", "migrate = \"skip\"\n", "cache = true\n");
    // Gems of this test alone: no other test's build can leave their steps in the engine.
    let lock = app.dir.path().join("Gemfile.lock");
    let gems = fs_err::read_to_string(&lock).unwrap();
    fs_err::write(&lock, format!("{gems}# {}\n", app.name)).unwrap();
    app.commit("gems of this test");

    let cold = app.deploy(&[]);
    assert_eq!(cold.code, Some(0), "{}", cold.stderr);
    let build = &cold.json()["build"];
    let steps = |build: &Value| {
        build["steps_cached"].as_u64().unwrap() + build["steps_run"].as_u64().unwrap()
    };
    // Nine steps; the gems' and the assets' ran (only `WORKDIR` may be in the engine already).
    assert_eq!(steps(build), 9, "{build}");
    assert!(build["steps_run"].as_u64().unwrap() >= 8, "{build}");
    assert_eq!(build["cache_images"], json!(["berth-cache-stg-assets"]));
    assert_eq!(app.counters().cache_pushes, 1);

    // A one-line change, built on an empty engine.
    let model = app.dir.path().join("app/models/user.rb");
    let code = fs_err::read_to_string(&model).unwrap();
    fs_err::write(&model, format!("{code}# one line\n")).unwrap();
    app.commit("one line");
    empty_engine(&app.name);
    let warm = app.deploy(&[]);
    assert_eq!(warm.code, Some(0), "{}", warm.stderr);
    let build = &warm.json()["build"];
    let cache_from = build["cache_from"].as_array().unwrap();
    assert_eq!(
        cache_from[0],
        cold.json()["image"]["uri"],
        "first the image `web` runs: {build}"
    );
    assert!(
        cache_from[1]
            .as_str()
            .unwrap()
            .starts_with(&format!("127.0.0.1:5055/{}@sha256:", app.name)),
        "then the stage cache image: {build}"
    );
    // Every step of `gems` and `assets` and the COPY of the gems came from the cache; the
    // changed code, the COPY of the assets after it and the last RUN ran.
    assert_eq!(build["steps_cached"], 6, "{build}");
    assert_eq!(build["steps_run"], 3, "{build}");
    assert!(build["pulled_bytes"].as_u64().unwrap() > 0, "{build}");
    for step in ["[gems 2/2] RUN", "[assets 2/2] RUN"] {
        assert!(
            warm.stderr
                .lines()
                .any(|line| line.contains(step) && line.ends_with("(cached)")),
            "{step} cached:\n{}",
            warm.stderr
        );
    }
    assert!(
        warm.stderr.contains("build: done") && warm.stderr.contains("6 cached, 3 run"),
        "{}",
        warm.stderr
    );
    // `assets` did not change: its cache image stays as it is.
    assert_eq!(build.get("cache_images"), None, "{build}");
    assert_eq!(app.counters().cache_pushes, 1);

    app.edit_config(|config| config.replace("cache = true", "cache = false"));
    fs_err::write(&model, format!("{code}# another line\n")).unwrap();
    app.commit("no cache");
    empty_engine(&app.name);
    let off = app.deploy(&[]);
    assert_eq!(off.code, Some(0), "{}", off.stderr);
    let build = &off.json()["build"];
    assert_eq!(build["cache_from"], json!([]), "{build}");
    assert!(
        off.stderr
            .lines()
            .any(|line| line.contains("[gems 2/2] RUN") && !line.ends_with("(cached)")),
        "the gems ran again:\n{}",
        off.stderr
    );
    assert!(off.stderr.contains("cache: off"), "{}", off.stderr);
}

/// The classic builder reuses only images the engine has: berth pulls the image `web` ran, with
/// ECR's login (the sandbox's registry refuses an anonymous pull), reports what the pull took,
/// and names the stages that rebuild, since that builder keeps no stage image. (Here those are
/// all the steps that could hit: the final stage copies from both.)
#[tokio::test(flavor = "multi_thread")]
async fn the_classic_builder_pulls_its_cache_source_with_ecrs_login() {
    let app = App::with_build(
        "classic",
        "migrate = \"skip\"\n",
        "cache = true\nbuilder = \"classic\"\n",
    );
    // An image of this test's own first: the seed's image shares its layers with every other
    // test's seed, so the engine would keep them and a pull of it would move no bytes.
    let cold = app.deploy(&[]);
    assert_eq!(cold.code, Some(0), "{}", cold.stderr);
    assert!(
        cold.stderr.contains(
            "cache: no cache image of stage `assets` (the classic builder keeps no cache of it): \
             `assets`, `gems` rebuild on an empty engine"
        ),
        "{}",
        cold.stderr
    );
    assert_eq!(cold.json()["build"].get("cache_images"), None);
    assert_eq!(app.counters().cache_pushes, 0, "no stage image");

    // No task may hold the image, so that removing it leaves the engine without it.
    app.stop_services().await;
    let model = app.dir.path().join("app/models/user.rb");
    let code = fs_err::read_to_string(&model).unwrap();
    fs_err::write(&model, format!("{code}# one line\n")).unwrap();
    app.commit("one line");
    // Not BuildKit's cache: pruning it would cut other tests' builds short.
    remove_images(&app.name);
    let ran = cold.json()["image"]["uri"].as_str().unwrap().to_owned();
    let inspected = std::process::Command::new("docker")
        .args(["image", "inspect", &ran])
        .output()
        .unwrap();
    assert!(
        !inspected.status.success(),
        "the engine no longer has `{ran}`"
    );

    let warm = app.deploy(&[]);
    assert_eq!(warm.code, Some(0), "{}", warm.stderr);
    let build = &warm.json()["build"];
    assert_eq!(build["cache_from"][0], ran.as_str(), "{build}");
    assert!(
        warm.stderr
            .contains(&format!("cache from `{ran}`: pulled ")),
        "{}",
        warm.stderr
    );
    assert!(!warm.stderr.contains("left out"), "{}", warm.stderr);
    assert!(build["pulled_bytes"].as_u64().unwrap() > 0, "{build}");
}

/// Removes the app's images and the engine's build cache, as on a fresh CI machine. The
/// sandbox's base images stay: nothing can be pulled from outside here.
fn empty_engine(app: &str) {
    remove_images(app);
    let pruned = std::process::Command::new("docker")
        .args(["builder", "prune", "-af"])
        .output()
        .unwrap();
    assert!(pruned.status.success(), "{}", text(&pruned.stderr));
}

/// Removes the app's images (the classic builder's cache is in them, and in their parents).
fn remove_images(app: &str) {
    let listed = std::process::Command::new("docker")
        .args(["image", "ls", "-q", "--filter"])
        .arg(format!("reference=127.0.0.1:5055/{app}"))
        .output()
        .unwrap();
    let ids: Vec<String> = text(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    // An image a running task uses stays (its layers then need no pull); the rest go.
    for id in ids {
        let _ = std::process::Command::new("docker")
            .args(["image", "rm", "-f", &id])
            .output();
    }
}
