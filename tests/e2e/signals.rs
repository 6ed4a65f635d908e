//! A deploy ended by SIGTERM or Ctrl-C, and the rerun that finishes it.

use serde_json::Value;

use crate::harness::*;

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

/// `on_cancel = "rollback"`: SIGTERM during the rollout has ECS roll back each service
/// deployment still in flight (`StopServiceDeployment`), and the services end where they were.
#[tokio::test(flavor = "multi_thread")]
async fn on_cancel_rollback_has_ecs_roll_back_the_deployments_in_flight() {
    let app = App::new(
        "cancelback",
        "migrate = \"skip\"\non_cancel = \"rollback\"\n",
    );
    let before = app.service_task_definitions().await;
    let counted = app.counters();
    let run = app.interrupt(
        &[],
        &[],
        &|line| line.contains("`devops` → ") && line.ends_with("started"),
        "TERM",
    );
    assert_eq!(run.code, Some(130), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("ECS rolls it back (`StopServiceDeployment`)"),
        "{}",
        run.stderr
    );
    let calls = app.counters().since(&counted);
    assert_eq!(
        calls.get("ecs:StopServiceDeployment"),
        Some(&2),
        "{calls:?}"
    );
    assert_eq!(
        calls.get("ecs:UpdateService"),
        Some(&2),
        "only the deploy's own: {calls:?}"
    );
    assert_eq!(app.service_task_definitions().await, before);
    let deploy_id = run.json()["deploy_id"].as_str().unwrap().to_owned();
    let record = app.record(&deploy_id).await;
    assert_eq!(record["state"], "interrupted", "{record}");
    assert_eq!(
        record["services"]["web"]["outcome"], "rolled_back",
        "{record}"
    );
    assert_eq!(app.lock().await["holder"], Value::Null, "the lock is free");
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
