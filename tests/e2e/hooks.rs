//! `[hooks]`: commands run around a deploy, each path: a failing `before_deploy` changes nothing,
//! a failing `before_migrate` stops the migration and a rerun skips `before_deploy`, a failing
//! `after_deploy` is a warning, and the variables reach the hooks.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::*;

/// The `BERTH_*` variables a hook wrote with `env > FILE`.
fn vars(file: &Path) -> BTreeMap<String, String> {
    fs_err::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("BERTH_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_before_deploy_hook_stops_the_deploy_and_writes_nothing() {
    let hooks = "[hooks]\nbefore_deploy = \"echo checking $BERTH_DEPLOY_ID; exit 3\"\n";
    let app = App::new("hookbefore", hooks);
    // Not the sandbox's first deploy (that one makes the state bucket, which stays: exit 1).
    app.ensure_state_bucket().await;
    // No lock file yet: the one the run took is removed again.
    let before = app.snapshot().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("before_deploy | checking stg-"),
        "{}",
        run.stderr
    );
    let error = run.error_line();
    assert!(error.contains("hook `before_deploy` exited 3"), "{error}");
    assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
    assert_eq!(app.snapshot().await, before, "nothing changed, S3 included");

    // With a lock file from an earlier deploy, it goes back byte for byte (its ETag too).
    app.edit_config(|c| c.replace("exit 3", "exit 0"));
    let deployed = app.deploy(&[]);
    assert_eq!(deployed.code, Some(0), "{}", deployed.stderr);
    app.edit_config(|c| c.replace("exit 0", "exit 4"));
    let before = app.snapshot().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(app.snapshot().await, before, "the lock file is as it was");
    assert!(app.lock().await["holder"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_get_the_deploys_facts_a_rerun_skips_before_deploy_and_after_hooks_only_warn() {
    let out = tempfile::tempdir().unwrap();
    let hooks = "migrate = \"before\"\n[hooks]\n\
        before_deploy = \"env > $HOOK_OUT/before_deploy.env\"\n\
        before_migrate = \"echo gate; test -e $HOOK_OUT/open\"\n\
        after_failure = \"env > $HOOK_OUT/after_failure.env\"\n\
        after_deploy = \"env > $HOOK_OUT/after_deploy.env; exit 1\"\n";
    let app = App::new("hooks", hooks);
    let env = [("HOOK_OUT", out.path().to_str().unwrap())];
    let services = app.service_task_definitions().await;

    // The migration's gate is closed: the migration does not run, the services do not move.
    let run = app.deploy_with(&[], &env);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.error_line()
            .contains("hook `before_migrate` exited 1: the migration did not run"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("before_migrate | gate"),
        "{}",
        run.stderr
    );
    assert_eq!(app.service_task_definitions().await, services);
    let deploy_id = run.json()["deploy_id"].as_str().unwrap().to_owned();
    assert!(
        app.tasks_started_by(&deploy_id).await.is_empty(),
        "no migration task"
    );
    let before = vars(&out.path().join("before_deploy.env"));
    assert_eq!(before["BERTH_DEPLOY_ID"], deploy_id);
    assert_eq!(before["BERTH_ENV"], "stg");
    assert_eq!(before["BERTH_HOOK"], "before_deploy");
    assert_eq!(before["BERTH_SERVICES"], "web,devops");
    let failure = vars(&out.path().join("after_failure.env"));
    assert_eq!(failure["BERTH_OUTCOME"], "failed");
    assert!(
        failure["BERTH_ERROR"].contains("before_migrate"),
        "{failure:?}"
    );
    assert!(
        failure["BERTH_RECORD"].ends_with(&format!("/stg/deploys/{deploy_id}.json")),
        "{failure:?}"
    );

    // Gate open: the rerun skips `before_deploy`, runs the migration and lands; `after_deploy`
    // fails, which is a warning.
    fs_err::remove_file(out.path().join("before_deploy.env")).unwrap();
    fs_err::write(out.path().join("open"), "").unwrap();
    let rerun = app.deploy_with(&[], &env);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert!(
        rerun
            .stderr
            .contains("hook `before_deploy`: ran when this deploy started; not again"),
        "{}",
        rerun.stderr
    );
    assert!(
        !out.path().join("before_deploy.env").exists(),
        "it did not run"
    );
    let report = rerun.json();
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("hook `after_deploy` exited 1"),
        "{warnings}"
    );
    let after = vars(&out.path().join("after_deploy.env"));
    assert_eq!(after["BERTH_OUTCOME"], "succeeded");
    assert_eq!(
        after["BERTH_IMAGE_DIGEST"],
        report["image"]["digest"].as_str().unwrap()
    );
    assert_eq!(
        after["BERTH_IMAGE"],
        report["image"]["uri"].as_str().unwrap()
    );
    assert_eq!(after["BERTH_COMMIT"], report["commit"].as_str().unwrap());
    assert_eq!(
        before["BERTH_IMAGE_TAG"],
        report["image"]["tag"].as_str().unwrap()
    );

    // The record says which hooks ran, and how.
    let record = app.record(&deploy_id).await;
    assert_eq!(record["state"], "succeeded");
    let ran: Vec<(String, String)> = record["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["hook"].as_str().unwrap().to_owned(),
                h["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("before_deploy", "succeeded"),
        ("before_migrate", "failed"),
        ("after_failure", "succeeded"),
        ("before_migrate", "succeeded"),
        ("after_deploy", "failed"),
    ]
    .map(|(h, o)| (h.to_owned(), o.to_owned()));
    assert_eq!(ran, want, "{record}");
}
