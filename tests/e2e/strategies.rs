//! ECS's own deployment strategies, as berth follows them: blue/green through its stages and
//! bake time, LINEAR's traffic steps, a lifecycle hook that fails, an alarm that fires during a
//! canary's bake. The service is `web-bg`, a copy of `web` behind a load balancer.

use aws_sdk_ecs::types::{
    CanaryConfiguration, DeploymentAlarms, DeploymentCircuitBreaker, DeploymentConfiguration,
    DeploymentLifecycleHook, DeploymentLifecycleHookStage, DeploymentLifecycleHookTargetType,
    DeploymentStrategy, LinearConfiguration,
};
use serde_json::{Value, json};

use crate::harness::*;

/// How long a minute of bake time lasts in the sandbox during these tests: `web-bg`'s one-minute
/// bake time lasts 20 s. The same for every test: the setting is the sandbox's, and they run side
/// by side.
const MINUTE_SECONDS: f64 = 20.0;

impl App {
    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        admin(&self.var("BERTH_SANDBOX_PORT"), method, path, body)
    }

    /// A blue/green app, the sandbox's minutes shortened.
    fn staged(test: &str) -> Self {
        let app = Self::blue_green(test, "migrate = \"skip\"\n");
        app.admin(
            "POST",
            "/_sandbox/config",
            Some(&json!({"minute_seconds": MINUTE_SECONDS})),
        );
        app
    }

    /// The revision `web-bg` runs.
    async fn web_bg_runs(&self) -> String {
        let out = self
            .ecs()
            .await
            .describe_services()
            .cluster(self.cluster())
            .services("web-bg")
            .send()
            .await
            .unwrap();
        out.services()[0].task_definition().unwrap().to_owned()
    }

    fn alarm(&self) -> String {
        format!("{}-stg-web-5xx", self.name)
    }

    /// `web-bg`'s deployment configuration: its strategy and the rest as seeded, `edit` on top.
    async fn configure(
        &self,
        edit: impl FnOnce(
            aws_sdk_ecs::types::builders::DeploymentConfigurationBuilder,
        ) -> aws_sdk_ecs::types::builders::DeploymentConfigurationBuilder,
    ) {
        let base = DeploymentConfiguration::builder()
            .strategy(DeploymentStrategy::BlueGreen)
            .bake_time_in_minutes(1)
            .deployment_circuit_breaker(
                DeploymentCircuitBreaker::builder()
                    .enable(true)
                    .rollback(true)
                    .build(),
            )
            .alarms(
                DeploymentAlarms::builder()
                    .alarm_names(self.alarm())
                    .enable(true)
                    .rollback(true)
                    .build()
                    .unwrap(),
            )
            .maximum_percent(200)
            .minimum_healthy_percent(100);
        self.ecs()
            .await
            .update_service()
            .cluster(self.cluster())
            .service("web-bg")
            .deployment_configuration(edit(base).build())
            .send()
            .await
            .unwrap();
    }
}

/// The report's entry of `web-bg`.
fn web_bg(report: &Value) -> &Value {
    &report["services"][0]
}

#[tokio::test(flavor = "multi_thread")]
async fn blue_green_is_followed_stage_by_stage_and_ends_only_after_the_bake() {
    let app = App::staged("bluegreen");
    // `berth plan` names the strategy, and warns of a rollout timeout shorter than the bake.
    app.edit_config(|c| c.replace("rollout = \"3m\"", "rollout = \"50s\""));
    let plan = app.run("plan", &["--allow-dirty", "--output", "text"], &[]);
    assert!(
        plan.stdout.contains("(BLUE_GREEN, bake time 1m)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stderr.contains(
            "warning: `web-bg` deploys BLUE_GREEN, bake time 1m: at least 1m of bake time, longer than `timeouts.rollout` (50s)"
        ),
        "{}",
        plan.stderr
    );
    app.edit_config(|c| c.replace("rollout = \"50s\"", "rollout = \"3m\""));
    let run = app.deploy(&[]);
    let ended = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // Each stage is told, as reached or as passed between two looks.
    let told: String = run
        .stderr
        .lines()
        .filter(|l| l.contains("`web-bg`: stage "))
        .collect();
    for stage in [
        "SCALE_UP",
        "TEST_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME (1m)",
        "CLEAN_UP",
    ] {
        assert!(told.contains(stage), "{stage}: {}", run.stderr);
    }
    let report = run.json();
    assert_eq!(web_bg(&report)["service_deployment_status"], "SUCCESSFUL");
    let arn = web_bg(&report)["service_deployment"].as_str().unwrap();
    let ecs = app.ecs().await;
    let described = ecs
        .describe_service_deployments()
        .service_deployment_arns(arn)
        .send()
        .await
        .unwrap();
    let deployment = &described.service_deployments()[0];
    // ECS finished the deployment, bake time and clean-up included, before berth exited.
    assert_eq!(deployment.status().unwrap().as_str(), "SUCCESSFUL");
    let finished = deployment.finished_at().unwrap();
    assert!(finished.secs() <= ended.secs(), "{finished} after {ended}");
    let baked = deployment.finished_at().unwrap().secs() - deployment.started_at().unwrap().secs();
    assert!(
        baked as f64 >= MINUTE_SECONDS,
        "the deployment took {baked}s, less than its bake time"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn linear_shifts_traffic_in_steps_and_berth_tells_each() {
    let app = App::staged("linear");
    app.configure(|c| {
        c.strategy(DeploymentStrategy::Linear)
            .bake_time_in_minutes(0)
            .linear_configuration(
                LinearConfiguration::builder()
                    .step_percent(34.0)
                    .step_bake_time_in_minutes(1)
                    .build(),
            )
    })
    .await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let told: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("production traffic") && l.contains("on the new revision"))
        .collect();
    assert!(told.len() >= 2, "{}", run.stderr);
    assert!(told[0].ends_with("`web-bg`: production traffic 34% on the new revision"));
    assert!(told[1].ends_with("`web-bg`: production traffic 68% on the new revision"));
    assert_eq!(
        web_bg(&run.json())["service_deployment_status"],
        "SUCCESSFUL"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lifecycle_hook_that_fails_is_named_with_its_stage_and_the_service_stays_put() {
    let app = App::staged("hookfail");
    let function = format!(
        "arn:aws:lambda:us-east-1:123456789012:function:{}-smoke",
        app.name
    );
    app.admin(
        "POST",
        "/_sandbox/hooks",
        Some(&json!({"function": function, "answers": [
            {"hookStatus": "IN_PROGRESS", "callBackDelay": 1},
            {"hookStatus": "FAILED"},
        ]})),
    );
    app.configure(|c| {
        c.lifecycle_hooks(
            DeploymentLifecycleHook::builder()
                .target_type(DeploymentLifecycleHookTargetType::AwsLambda)
                .hook_target_arn(&function)
                .role_arn("arn:aws:iam::123456789012:role/hooks")
                .lifecycle_stages(DeploymentLifecycleHookStage::PostTestTrafficShift)
                .build(),
        )
    })
    .await;
    let before = app.web_bg_runs().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let error = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        error.contains(&format!(
            "lifecycle hook `{function}` FAILED at POST_TEST_TRAFFIC_SHIFT"
        )),
        "{error}"
    );
    let calls = app.admin("GET", "/_sandbox/hooks", None);
    assert_eq!(calls[&function].as_array().unwrap().len(), 2, "{calls}");
    assert_eq!(app.web_bg_runs().await, before);
    assert_eq!(
        web_bg(&run.json())["ends_on"].as_str(),
        Some(before.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_that_fires_during_a_canarys_bake_is_named_and_rolls_it_back() {
    let app = App::staged("canary");
    app.configure(|c| {
        c.strategy(DeploymentStrategy::Canary)
            .bake_time_in_minutes(0)
            .canary_configuration(
                CanaryConfiguration::builder()
                    .canary_percent(10.0)
                    .canary_bake_time_in_minutes(1)
                    .build(),
            )
    })
    .await;
    let before = app.web_bg_runs().await;
    let alarm = app.alarm();
    let run = app.deploy_watching(
        &[],
        &[],
        &|line| line.contains("production traffic 10% on the new revision"),
        None,
        &|_| {
            app.admin(
                "POST",
                "/_sandbox/alarm",
                Some(&json!({"name": alarm, "state": "ALARM"})),
            );
        },
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let error = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        error.contains(&format!("alarm `{alarm}` in ALARM")),
        "{error}"
    );
    assert_eq!(app.web_bg_runs().await, before);
}

impl App {
    /// `web-bg` pauses at POST_SCALE_UP until a person answers.
    async fn pause_after_scale_up(&self) {
        self.configure(|c| {
            c.bake_time_in_minutes(0).lifecycle_hooks(
                DeploymentLifecycleHook::builder()
                    .target_type(DeploymentLifecycleHookTargetType::Pause)
                    .lifecycle_stages(DeploymentLifecycleHookStage::PostScaleUp)
                    .build(),
            )
        })
        .await;
    }
}

/// A pause hook: the deploy exits 7, recorded as paused, the lock free; a rerun says it is still
/// paused and changes nothing; `berth continue` answers and finishes the deploy.
#[tokio::test(flavor = "multi_thread")]
async fn a_paused_deploy_exits_7_and_berth_continue_finishes_it() {
    let app = App::staged("pause");
    app.pause_after_scale_up().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(7), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "the rollout is paused: `web-bg` waits at POST_SCALE_UP for pause hook `ecs-pause-"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("berth continue --env stg"),
        "{}",
        run.stderr
    );
    let report = run.json();
    assert_eq!(web_bg(&report)["rollout_state"], "PAUSED", "{report}");
    let hook = web_bg(&report)["paused"]["hook_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deploy_id = report["deploy_id"].as_str().unwrap().to_owned();
    let record = app.record(&deploy_id).await;
    assert_eq!(record["state"], "paused", "{record}");
    assert_eq!(record["services"]["web-bg"]["outcome"], "paused");
    assert!(
        app.lock_or_none().await["holder"].is_null(),
        "the lock is free"
    );
    let status = app.run("status", &["--output", "text"], &[]);
    assert!(
        status
            .stdout
            .contains("(BLUE_GREEN): IN_PROGRESS, stage POST_SCALE_UP, started "),
        "{}",
        status.stdout
    );

    let counted = app.counters();
    let again = app.deploy(&[]);
    assert_eq!(again.code, Some(7), "{}", again.stderr);
    assert!(again.stderr.contains(&hook), "{}", again.stderr);
    app.counters().assert_none_since(&counted, CHANGES);

    let counted = app.counters();
    let continued = app.run("continue", &[], &[]);
    assert_eq!(continued.code, Some(0), "{}", continued.stderr);
    assert!(
        continued.stderr.contains(&format!(
            "`web-bg`: pause hook `{hook}` at POST_SCALE_UP answered CONTINUE"
        )),
        "{}",
        continued.stderr
    );
    let calls = app.counters().since(&counted);
    assert_eq!(
        calls.get("ecs:ContinueServiceDeployment"),
        Some(&1),
        "{calls:?}"
    );
    assert_eq!(calls.get("ecs:UpdateService"), None, "{calls:?}");
    assert_eq!(
        web_bg(&continued.json())["service_deployment_status"],
        "SUCCESSFUL"
    );
    assert_eq!(app.record(&deploy_id).await["state"], "succeeded");
    let revision = report["revisions"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(app.web_bg_runs().await, revision.as_str().unwrap());

    // Nothing is paused any more: a second answer is refused, and changes nothing.
    let counted = app.counters();
    let refused = app.run("continue", &[], &[]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("is not paused"),
        "{}",
        refused.stderr
    );
    app.counters().assert_none_since(
        &counted,
        &["ecs:ContinueServiceDeployment", "ecs:UpdateService"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn berth_continue_rollback_puts_the_service_back() {
    let app = App::staged("pauseback");
    app.pause_after_scale_up().await;
    let before = app.web_bg_runs().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(7), "{}", run.stderr);
    let deploy_id = run.json()["deploy_id"].as_str().unwrap().to_owned();

    let back = app.run("continue", &["--rollback"], &[]);
    assert_eq!(back.code, Some(0), "{}", back.stderr);
    assert!(back.stderr.contains("answered ROLLBACK"), "{}", back.stderr);
    assert!(
        back.stderr.contains("ROLLBACK_SUCCESSFUL"),
        "{}",
        back.stderr
    );
    assert_eq!(app.web_bg_runs().await, before);
    let record = app.record(&deploy_id).await;
    assert_eq!(record["state"], "rolled_back", "{record}");
    assert!(
        app.lock_or_none().await["holder"].is_null(),
        "the lock is free"
    );
}
