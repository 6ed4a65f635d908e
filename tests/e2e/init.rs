//! `berth init`: a berth.toml from the account.

use serde_json::json;

use crate::harness::*;

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
