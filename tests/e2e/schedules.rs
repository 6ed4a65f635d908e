//! Scheduled tasks that follow the deploy.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::common::stopped_task;
use crate::harness::*;

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
        let stopped = stopped_task(
            &ecs,
            &app.cluster(),
            arn,
            Duration::from_secs(90),
            Duration::from_millis(500),
            &format!("{fire} did not stop"),
        )
        .await;
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

/// Creates a schedule in `group` that runs `task_definition` in the cluster `cluster_arn`, as
/// Terraform would: the seeded hourly schedule's role, every hour.
async fn create_schedule(
    scheduler: &aws_sdk_scheduler::Client,
    group: &str,
    name: &str,
    (cluster_arn, role_arn, task_definition): (&str, &str, &str),
) {
    use aws_sdk_scheduler::types::{
        EcsParameters, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
    };
    let target = Target::builder()
        .arn(cluster_arn)
        .role_arn(role_arn)
        .ecs_parameters(
            EcsParameters::builder()
                .task_definition_arn(task_definition)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let window = FlexibleTimeWindow::builder()
        .mode(FlexibleTimeWindowMode::Off)
        .build()
        .unwrap();
    scheduler
        .create_schedule()
        .group_name(group)
        .name(name)
        .schedule_expression("rate(1 hour)")
        .flexible_time_window(window)
        .target(target)
        .send()
        .await
        .unwrap();
}

/// The survey reads only the schedules whose target is the deploy's cluster: with 500 more in
/// the account (another cluster's, running the same family), a deploy lists them all, reads
/// one and moves one. A schedule Terraform adds between two deploys is found and moved by the
/// next one; the other cluster's are never read or moved.
#[tokio::test(flavor = "multi_thread")]
async fn the_survey_reads_the_clusters_schedules_only_and_finds_new_ones() {
    let app = App::new("survey", "migrate = \"skip\"\n");
    let scheduler = aws_sdk_scheduler::Client::new(&app.sdk_config().await);
    let hourly = schedule_document(&app, &format!("{}-stg-hourly", app.name)).await;
    let cluster_arn = hourly["Target"]["Arn"].as_str().unwrap().to_owned();
    let role_arn = hourly["Target"]["RoleArn"].as_str().unwrap().to_owned();
    let first_revision = hourly["Target"]["EcsParameters"]["TaskDefinitionArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let elsewhere = format!("{cluster_arn}-elsewhere");
    let bulk = format!("{}-bulk", app.name);
    scheduler
        .create_schedule_group()
        .name(&bulk)
        .send()
        .await
        .unwrap();
    let creating = (0..500).map(|n| {
        let (scheduler, bulk) = (&scheduler, &bulk);
        let target = (
            elsewhere.as_str(),
            role_arn.as_str(),
            first_revision.as_str(),
        );
        async move { create_schedule(scheduler, bulk, &format!("job-{n}"), target).await }
    });
    futures_util::stream::iter(creating)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    let seeded = app.counters();
    let first = app.deploy(&[]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let survey = first.json()["survey"].clone();
    assert!(
        survey["schedules_listed"].as_u64().unwrap() >= 501,
        "{survey}"
    );
    assert_eq!(survey["schedules_read"], 1, "{survey}");
    let calls = app.counters().since(&seeded);
    // The hourly schedule, read by the survey, then again just before it moves.
    assert_eq!(calls.get("scheduler:GetSchedule"), Some(&2), "{calls:?}");
    assert_eq!(calls.get("scheduler:UpdateSchedule"), Some(&1), "{calls:?}");

    // Terraform adds a schedule of the web family's first revision to the cluster.
    let terraform = format!("{}-tf-daily", app.name);
    let target = (
        cluster_arn.as_str(),
        role_arn.as_str(),
        first_revision.as_str(),
    );
    create_schedule(&scheduler, "default", &terraform, target).await;
    let second = app.deploy(&["--new"]);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let report = second.json();
    assert_eq!(
        report["survey"]["schedules_read"], 2,
        "{}",
        report["survey"]
    );
    let web = format!("{}-stg-web", app.name);
    let newest = report["revisions"][&web].as_str().unwrap();
    let added = schedule_document(&app, &terraform).await;
    assert_eq!(
        added["Target"]["EcsParameters"]["TaskDefinitionArn"],
        newest
    );
    let moved: Vec<&str> = report["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        moved.contains(&format!("schedule/default/{terraform}").as_str()),
        "{moved:?}"
    );

    // Another cluster's schedules run what they ran.
    let other = scheduler
        .get_schedule()
        .group_name(&bulk)
        .name("job-7")
        .send()
        .await
        .unwrap();
    let other = other.target().and_then(|t| t.ecs_parameters()).unwrap();
    assert_eq!(other.task_definition_arn(), first_revision);
    scheduler
        .delete_schedule_group()
        .name(&bulk)
        .send()
        .await
        .unwrap();
}
