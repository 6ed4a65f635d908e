//! `berth plan`: what a deploy would do, with nothing changed, refused where a deploy would be
//! refused and agreeing with the deploy that follows.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::*;

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

    // A `terraform apply` puts `web` back on the revision Terraform knows (the seed's): `status`
    // and `plan` name the drift from where the deploy left it.
    let left = app.service_task_definitions().await[0].clone();
    app.ecs()
        .await
        .update_service()
        .cluster(app.cluster())
        .service("web")
        .task_definition(format!("{web}:1"))
        .send()
        .await
        .unwrap();
    let said = format!(
        "`web` runs `{web}:1`, but deploy `{}` left it on `{}`",
        deployed.json()["deploy_id"].as_str().unwrap(),
        left.rsplit('/').next().unwrap()
    );
    let status = app.run("status", &["--output", "text"], &[]);
    assert!(
        status.stdout.contains(&format!("drift: {said}")),
        "{}",
        status.stdout
    );
    let drift = app.run("status", &[], &[]).json()["drift"].clone();
    assert_eq!(drift.as_array().map(Vec::len), Some(1), "{drift}");
    assert_eq!(drift[0]["service"], "web");
    assert_eq!(drift[0]["left"], left.as_str());
    let drifted = app.run("plan", &["--output", "text"], &[]);
    assert_eq!(
        drifted.code,
        Some(0),
        "the deploy would move `web` back: {}",
        drifted.stdout
    );
    assert!(drifted.stdout.contains(&said), "{}", drifted.stdout);
    // The same deploy, run again, puts it back.
    let back = app.deploy(&[]);
    assert_eq!(back.code, Some(0), "{}", back.stderr);
    assert_eq!(app.service_task_definitions().await[0], left);
    assert_eq!(app.run("status", &[], &[]).json()["drift"], json!([]));

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

/// A plan is the deploy's own preparation stopping before the first write. What a deploy refuses
/// before touching anything (a missing Dockerfile, a build target the Dockerfile lacks), a plan
/// refuses the same way: exit 2, the same error and hint, no AWS call at all. And what a plan
/// predicts (the image tag, the deploy id, each service's move, the scheduled targets, the
/// migration's family) is what the deploy that follows does.
#[tokio::test(flavor = "multi_thread")]
async fn plan_refuses_what_deploy_refuses_and_predicts_what_it_does() {
    let app = App::new("plan-agrees", "");
    let refusal = |run: &Run| -> Vec<String> {
        run.stderr
            .lines()
            .filter(|line| line.starts_with("error:") || line.starts_with("hint:"))
            .map(str::to_owned)
            .collect()
    };
    let dockerfile = app.dir.path().join("Dockerfile");
    let original = fs_err::read_to_string(&dockerfile).unwrap();
    let counted = app.counters();

    fs_err::remove_file(&dockerfile).unwrap();
    app.commit("no Dockerfile");
    let plan = app.run("plan", &[], &[]);
    let deploy = app.deploy(&[]);
    assert_eq!(plan.code, Some(2), "{}", plan.stderr);
    assert_eq!(deploy.code, Some(2), "{}", deploy.stderr);
    assert_eq!(refusal(&plan), refusal(&deploy));
    assert!(
        plan.stderr.contains("Dockerfile `") && plan.stderr.contains("not found"),
        "{}",
        plan.stderr
    );

    fs_err::write(&dockerfile, &original).unwrap();
    app.edit_config(|config| config.replace("target = \"release\"", "target = \"nope\""));
    let plan = app.run("plan", &[], &[]);
    let deploy = app.deploy(&[]);
    assert_eq!(plan.code, Some(2), "{}", plan.stderr);
    assert_eq!(deploy.code, Some(2), "{}", deploy.stderr);
    assert_eq!(refusal(&plan), refusal(&deploy));
    assert!(
        plan.stderr
            .contains("`build.target` `nope` is not a stage of"),
        "{}",
        plan.stderr
    );
    // Refused before any AWS call: nothing read, nothing written, no record in S3.
    assert_eq!(app.counters().since(&counted), BTreeMap::new());

    app.edit_config(|config| config.replace("target = \"nope\"", "target = \"release\""));
    let planned = app.run("plan", &[], &[]);
    assert_eq!(planned.code, Some(0), "{}", planned.stderr);
    let plan = planned.json();
    let deployed = app.deploy(&[]);
    assert_eq!(deployed.code, Some(0), "{}", deployed.stderr);
    let report = deployed.json();
    assert_eq!(report["deploy_id"], plan["deploy_id"]);
    assert_eq!(report["commit"], plan["commit"]);
    assert_eq!(
        report["image"]["tag"], plan["image"]["tag"],
        "{plan}\n{report}"
    );
    assert_eq!(
        plan["image"]["digest"],
        Value::Null,
        "ECR had no such image: built"
    );
    assert_eq!(report["steps"][0]["step"], "build");
    assert_eq!(report["steps"][0]["status"], "done");
    // Each service moves where the plan said: from the revision it ran, to the family's new one.
    let revisions = report["revisions"].as_object().unwrap();
    let services = plan["services"].as_array().unwrap();
    assert_eq!(services.len(), report["services"].as_array().unwrap().len());
    for planned in services {
        let to = planned["to"].as_str().unwrap();
        let family = to.strip_suffix(":new").unwrap_or_else(|| panic!("{plan}"));
        let rolled = report["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == planned["service"])
            .unwrap_or_else(|| panic!("{report}"));
        assert_eq!(rolled["task_definition"], revisions[family], "{report}");
        assert_ne!(rolled["task_definition"], planned["from"], "{report}");
    }
    // The planned families, and only they, got a revision.
    let families: Vec<&str> = plan["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["family"].as_str().unwrap())
        .collect();
    let registered: Vec<&str> = revisions.keys().map(String::as_str).collect();
    assert_eq!(families, registered);
    // The scheduled targets: the ones the plan named, from the revision it named.
    let targets = |list: &Value| -> Vec<(String, String, String)> {
        let mut found: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let text = |key: &str| t[key].as_str().unwrap_or_default().to_owned();
                (text("name"), text("target"), text("from"))
            })
            .collect();
        found.sort();
        found
    };
    assert_eq!(targets(&plan["schedules"]), targets(&report["schedules"]));
    assert!(!targets(&plan["schedules"]).is_empty(), "{plan}");
    for moved in report["schedules"].as_array().unwrap() {
        let family = moved["to"].as_str().unwrap();
        assert!(revisions.values().any(|r| r == family), "{report}");
    }
    // The migration ran in the family the plan named.
    let migration_family = plan["migration"]["family"].as_str().unwrap();
    let migration_family = migration_family.strip_suffix(":new").unwrap();
    assert!(revisions.contains_key(migration_family), "{plan}");
    assert_eq!(report["migration"]["exit_codes"]["app"], 0, "{report}");

    // After the deploy, a plan names what now runs and predicts no change.
    let after = app.run("plan", &[], &[]);
    assert_eq!(after.code, Some(6), "{}", after.stderr);
    let after = after.json();
    for service in after["services"].as_array().unwrap() {
        assert_eq!(service["from"], service["to"], "{after}");
    }
    assert_eq!(after["image"]["digest"], report["image"]["digest"]);
}
