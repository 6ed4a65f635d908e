//! The rollout: a crashing image with and without a circuit breaker, a failed deployment left in
//! place, and a service with another deployment controller.

use crate::harness::*;

/// A crashing image: the rollout fails, named with ECS's events and the stopped tasks' exit
/// codes. How soon after ECS berth says so is a figure of `benches/failure_latency.sh`.
#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_image_is_reported_as_rolled_back() {
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

    // The rerun rebuilds nothing and registers nothing; it tries the rollout again, honestly.
    let rerun = app.rerun_without(&[], &["ecs:RegisterTaskDefinition", "ecs:RunTask"]);
    assert_eq!(rerun.code, Some(1));
    // web rolled back to its old revision; devops took the new one (it does not crash).
    assert_eq!(app.service_task_definitions().await[0], before[0]);
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
/// threshold, with the events and exit codes, instead of waiting out `timeouts.rollout`.
#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_image_without_a_circuit_breaker_fails_in_bounded_time() {
    let app = App::new(
        "nobreaker",
        "migrate = \"skip\"\n[environment]\nCRASH_ON_BOOT = \"1\"\n",
    );
    app.set_web_breaker(None).await;
    let before = app.service_task_definitions().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("the service has no circuit breaker"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("app exit 1"), "exit codes shown");
    // The rollout failed at the breaker's threshold; it did not run into `timeouts.rollout`.
    let record = run.json();
    let error = record["error"]["message"].as_str().unwrap();
    assert!(
        error.starts_with("the rollout of `web` failed: ")
            && error.contains("berth gives up at the breaker's threshold"),
        "{error}"
    );
    assert!(
        !run.stderr.contains("did not finish within"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("where each service ends:"));
    let web = record["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web")
        .unwrap()
        .clone();
    assert_eq!(web["rollout_state"], "FAILED");
    // `on_failure = "rollback"`: where it is at the end is where it was before.
    assert_eq!(
        web["ends_on"].as_str(),
        Some(before[0].as_str()),
        "{record}"
    );
    assert_eq!(app.service_task_definitions().await, before);
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
    // ECS's service deployment says who stopped it: the circuit breaker, its rollback off.
    assert!(
        run.stderr
            .contains("was stopped (STOPPED): the circuit breaker counted"),
        "{}",
        run.stderr
    );

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

/// `ecs:UpdateService` denied for `web` only: `devops`'s update went out at the same moment, so
/// the environment ran two commits. That is a failed rollout: `devops` goes back
/// (`on_failure = "rollback"`), and the error line, the JSON and the record say where each
/// service is. The rerun, once allowed, lands.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_denied_for_one_service_rolls_the_other_back() {
    let app = App::new("denyweb", "migrate = \"skip\"\n");
    let before = app.service_task_definitions().await;
    app.fault(serde_json::json!({
        "service": "ecs",
        "operation": "UpdateService",
        "body_contains": "\"service\":\"web\"",
        "error": "denied",
    }));
    let run = app.deploy(&[]);
    app.clear_faults();
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let error = run.error_line();
    assert!(
        error.contains("`web` was not moved: its update failed")
            && error.contains("ecs:UpdateService")
            && error.contains("rolled back: `web` on ")
            && error.contains("`devops` on "),
        "{error}"
    );
    assert!(run.stderr.contains("hint: grant `ecs:UpdateService`"));
    assert_eq!(app.service_task_definitions().await, before, "one commit");

    let report = run.json();
    let ends: Vec<(&str, &str)> = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap(),
                s["ends_on"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ends,
        [("web", before[0].as_str()), ("devops", before[1].as_str())],
        "{report}"
    );
    assert_eq!(report["services"][0]["rollout_state"], "FAILED");
    // The verdict was told at once, before the restore, which is a step of its own and timed
    // apart, in the output and in the JSON.
    let verdict = run
        .stderr
        .find("rollout: failed after")
        .expect("the verdict");
    let restore = run.stderr.find("restore: started").expect("the restore");
    assert!(verdict < restore, "{}", run.stderr);
    assert!(
        run.stderr[restore..].contains("restore: done in"),
        "{}",
        run.stderr
    );
    let steps: Vec<(&str, &str)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .filter(|(step, _)| ["rollout", "restore"].contains(step))
        .collect();
    assert_eq!(
        steps,
        [("rollout", "failed"), ("restore", "done")],
        "{report}"
    );
    let restored = &report["steps"].as_array().unwrap().last().unwrap();
    assert!(restored["seconds"].as_f64().is_some(), "{report}");
    assert!(
        restored["detail"]
            .as_str()
            .unwrap()
            .contains("`devops` back on "),
        "{report}"
    );
    let record = app.record(report["deploy_id"].as_str().unwrap()).await;
    assert_eq!(record["state"], "rolled_back", "{record}");
    assert_eq!(record["services"]["devops"]["outcome"], "rolled_back");
    assert_eq!(
        record["services"]["web"]["deployment_id"],
        serde_json::Value::Null
    );

    let rerun = app.deploy(&[]);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert_ne!(app.service_task_definitions().await, before);
}

/// A rollout that runs into `timeouts.rollout` with tasks that never turn healthy (the server
/// listens on another port than its health check asks): the error line carries the cause, the
/// newest failing task, and says what berth did: every service went back (`on_failure`), not
/// "nothing was rolled back".
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_timeout_names_its_cause_and_what_was_rolled_back() {
    let app = App::new(
        "timeout",
        "migrate = \"skip\"\n[environment]\nPORT = \"3001\"\n",
    );
    let before = app.service_task_definitions().await;
    let counted = app.counters();
    let run = app.deploy(&["--rollout-timeout", "30s"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    // `web`'s deployment was still in flight: ECS rolls it back itself. `devops` finished: it
    // goes back by `UpdateService`.
    assert!(
        run.stderr
            .contains("ECS rolls it back (`StopServiceDeployment`)"),
        "{}",
        run.stderr
    );
    let calls = app.counters().since(&counted);
    assert_eq!(
        calls.get("ecs:StopServiceDeployment"),
        Some(&1),
        "{calls:?}"
    );
    assert_eq!(calls.get("ecs:UpdateService"), Some(&3), "{calls:?}");
    let error = run.error_line();
    assert!(
        error.starts_with("error: the rollout did not finish within 30s: ")
            && error.contains("newest failing task ")
            && error.contains("rolled back: `web` on ")
            && !error.contains("nothing was rolled back"),
        "{error}"
    );
    assert!(
        run.stderr
            .contains("hint: the cause is the newest failing task's"),
        "{}",
        run.stderr
    );
    assert_eq!(app.service_task_definitions().await, before);
    let record = app.record(run.json()["deploy_id"].as_str().unwrap()).await;
    assert_eq!(record["state"], "rolled_back", "{record}");
}
