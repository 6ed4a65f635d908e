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
