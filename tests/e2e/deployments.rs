//! ECS's service deployments: berth waits on the one its `UpdateService` started, records it,
//! and judges the rollout by it; where it may not read them, one warning, and the verdict from
//! `DescribeServices` is still right.

use serde_json::Value;

use crate::harness::*;

/// Each service's entry in the report.
fn service<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == name)
        .unwrap()
}

/// The service deployment `arn`, as ECS describes it.
async fn described(app: &App, arn: &str) -> aws_sdk_ecs::types::ServiceDeployment {
    let ecs = app.ecs().await;
    let out = ecs
        .describe_service_deployments()
        .service_deployment_arns(arn)
        .send()
        .await
        .unwrap();
    out.service_deployments()[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_deploy_is_judged_by_the_service_deployment_it_started() {
    let app = App::new("sdroll", "migrate = \"skip\"\n");
    let counted = app.counters();
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let calls = app.counters().since(&counted);
    assert!(
        calls.get("ecs:DescribeServiceDeployments").copied() >= Some(1),
        "{calls:?}"
    );
    // Named by UpdateService's answer: nothing listed.
    assert_eq!(calls.get("ecs:ListServiceDeployments"), None, "{calls:?}");

    let report = run.json();
    let record = app.record(report["deploy_id"].as_str().unwrap()).await;
    for aws in app.services().await {
        let name = aws.service_name().unwrap();
        let current = aws.current_service_deployment().unwrap();
        let ours = service(&report, name);
        assert_eq!(ours["service_deployment"], current, "{report}");
        assert_eq!(ours["service_deployment_status"], "SUCCESSFUL");
        assert_eq!(
            record["services"][name]["service_deployment"], current,
            "{record}"
        );
        let deployment = described(&app, current).await;
        assert_eq!(deployment.status().unwrap().as_str(), "SUCCESSFUL");
    }
}

/// `ecs:DescribeServiceDeployments` denied: one warning names it, and a crashing image still
/// fails the rollout (from `DescribeServices`), with the service back where it was.
#[tokio::test(flavor = "multi_thread")]
async fn service_deployments_denied_give_one_warning_and_the_verdict_stays_right() {
    let app = App::new(
        "sddenied",
        "migrate = \"skip\"\n[environment]\nCRASH_ON_BOOT = \"1\"\n",
    );
    app.fault(serde_json::json!({
        "service": "ecs",
        "operation": "DescribeServiceDeployments",
        "error": "denied",
    }));
    let before = app.service_task_definitions().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let warned: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("ecs:DescribeServiceDeployments"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", run.stderr);
    assert!(
        warned[0].contains("judging the rollout from `DescribeServices` alone"),
        "{}",
        warned[0]
    );
    let report = run.json();
    assert!(
        report["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("ecs:DescribeServiceDeployments")),
        "{report}"
    );
    let web = service(&report, "web");
    assert_eq!(web["rollout_state"], "FAILED", "{report}");
    assert!(web.get("service_deployment_status").is_none(), "{report}");
    assert_eq!(web["ends_on"].as_str(), Some(before[0].as_str()));
    assert_eq!(app.service_task_definitions().await, before);
}
