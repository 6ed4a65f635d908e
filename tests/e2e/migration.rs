//! The migration before the rollout: a failed one, a `RunTask` whose answers were lost, and an
//! essential sidecar ECS kills when the task ends.

use crate::harness::*;

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

/// `migrate = "after"` (the default): the migration fails once both services run the new code.
/// `on_failure = "rollback"` moves them back to the code from before; the error line says where
/// the code is and what the schema is, the hint does not send a failing migration to
/// `--retry-migration`, and the JSON and the record carry the migration's task and exit codes.
#[tokio::test(flavor = "multi_thread")]
async fn a_migration_that_fails_after_the_rollout_moves_the_code_back() {
    let app = App::new("migafter", "[environment]\nMIGRATION_FAIL = \"1\"\n");
    let before = app.service_task_definitions().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let error = run.error_line();
    assert!(
        error.starts_with("error: the migration failed: migration task `")
            && error.contains("rolled back: `web` on ")
            && error.contains("the schema is as the migration left it"),
        "{error}"
    );
    assert!(
        run.stderr.contains(
            "hint: the log lines above say why; a failing migration needs a fix in a new commit"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(app.service_task_definitions().await, before, "code back");

    let report = run.json();
    let task = report["migration"]["task_arn"].as_str().unwrap();
    assert_eq!(report["migration"]["outcome"], "failed", "{report}");
    assert_eq!(report["migration"]["exit_codes"]["app"], 1, "{report}");
    let ends: Vec<&str> = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ends_on"].as_str().unwrap())
        .collect();
    assert_eq!(ends, before, "{report}");
    let record = app.record(report["deploy_id"].as_str().unwrap()).await;
    assert_eq!(record["state"], "rolled_back", "{record}");
    assert_eq!(record["migration"][0]["task_arn"], task);
}
