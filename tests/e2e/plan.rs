//! `berth plan`: what a deploy would do, with nothing changed.

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
