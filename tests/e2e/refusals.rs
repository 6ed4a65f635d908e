//! Deploys refused before anything changes: an unknown cluster or region, another branch.

use crate::harness::*;
use serde_json::json;

/// A cluster or a region that does not exist is a settings error (exit 2) naming it, found
/// before anything is built or changed.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_cluster_or_region_is_a_settings_error_naming_it() {
    let app = App::new("where", "");
    let before = app.service_task_definitions().await;
    app.edit_config(|config| {
        config.replace(
            &format!("cluster = \"{}-stg\"", app.name),
            "cluster = \"no-such-cluster\"",
        )
    });
    let run = app.rerun_without(&[], CHANGES);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("error: cluster `no-such-cluster` not found"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: check `cluster`"));

    let run = app.rerun_without(&["--region", "xx-nowhere-9"], CHANGES);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("error: region `xx-nowhere-9` is not an AWS region berth knows"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("build: started"));
    assert_eq!(app.service_task_definitions().await, before);
}

/// `branch` in berth.toml: a deploy from another branch, or from a detached checkout without
/// `CIRCLE_BRANCH`, is refused (exit 2) before any AWS call; `CIRCLE_BRANCH` names CircleCI's
/// branch (its checkout is detached); `--any-branch` deploys anyway.
#[tokio::test(flavor = "multi_thread")]
async fn an_environment_deploys_from_its_branch_only() {
    let app = App::new("branch", "migrate = \"skip\"\n");
    app.edit_config(|config| config.replace("[env.stg]\n", "[env.stg]\nbranch = \"develop\"\n"));
    let before = app.service_task_definitions().await;
    let counted = app.counters();
    let refused = |run: &Run, said: &str| {
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "error: `stg` deploys from branch `develop`, {said}"
            )),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("hint: deploy a commit of `develop`, or pass `--any-branch`"),
            "{}",
            run.stderr
        );
    };
    refused(&app.deploy(&[]), "not from `main` (the checkout's branch)");
    refused(
        &app.deploy_with(&[], &[("CIRCLE_BRANCH", "feature/x")]),
        "not from `feature/x` (`CIRCLE_BRANCH`)",
    );
    app.git(&["checkout", "-q", "--detach"]);
    refused(
        &app.deploy(&[]),
        "and the checkout is on no branch (detached, and no `CIRCLE_BRANCH`)",
    );
    // `CIRCLE_SHA1` must be the commit checked out: the image is tagged with it.
    let other = "0123456789abcdef0123456789abcdef01234567";
    let mislabeled = app.deploy_with(&[], &[("CIRCLE_BRANCH", "develop"), ("CIRCLE_SHA1", other)]);
    assert_eq!(mislabeled.code, Some(2), "{}", mislabeled.stderr);
    assert!(
        mislabeled.stderr.contains(&format!(
            "error: `CIRCLE_SHA1` is `{other}`, but the checkout at"
        )),
        "{}",
        mislabeled.stderr
    );
    app.counters().assert_none_since(
        &counted,
        &[
            "sts:GetCallerIdentity",
            "s3:PutObject",
            "ecs:RegisterTaskDefinition",
            "ecs:UpdateService",
        ],
    );
    assert_eq!(app.service_task_definitions().await, before);

    // CircleCI: a detached checkout of `develop`.
    let ci = app.deploy_with(&[], &[("CIRCLE_BRANCH", "develop")]);
    assert_eq!(ci.code, Some(0), "{}", ci.stderr);
    assert_ne!(app.service_task_definitions().await, before);
    // Another branch with `--any-branch`: the same deploy, found done.
    app.git(&["checkout", "-q", "-b", "hotfix"]);
    let anyway = app.deploy(&["--any-branch"]);
    assert_eq!(anyway.code, Some(0), "{}", anyway.stderr);
    anyway.assert_skipped(&["build", "push", "register", "rollout"]);
}

/// Every refusal ends before the first write: the exit code says "nothing was changed", and the
/// environment (berth's state objects, revisions, services, tasks, images) is the same after as
/// before. Each of these was found after the lock once, and left a failed deploy in the journal
/// that made the next real run of the deploy "stale".
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_deploy_writes_nothing_anywhere() {
    let app = App::new("nowrite", "migrate = \"skip\"\n");
    let landed = app.deploy(&[]);
    assert_eq!(landed.code, Some(0), "{}", landed.stderr);
    let config = fs_err::read_to_string(app.dir.path().join("berth.toml")).unwrap();
    let cluster = format!("cluster = \"{}-stg\"", app.name);
    let repository = format!("repository = \"{}\"", app.name);
    let no_certs = tempfile::tempdir().unwrap();
    let no_certs = no_certs.path().to_str().unwrap();
    let tls = [
        ("DOCKER_HOST", "tcp://127.0.0.1:9"),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", no_certs),
    ];
    // (case, change to berth.toml, variables, exit code, what the error says)
    type Case<'a> = (
        &'a str,
        (&'a str, &'a str),
        &'a [(&'a str, &'a str)],
        i32,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            "an unknown cluster",
            (&cluster, "cluster = \"no-such-cluster\""),
            &[],
            2,
            "cluster `no-such-cluster` not found",
        ),
        (
            "an unknown service",
            ("\"devops\"]", "\"nightly\"]"),
            &[],
            2,
            "`nightly`",
        ),
        (
            "a missing repository",
            (&repository, "repository = \"no-such-repository\""),
            &[],
            2,
            "`no-such-repository`",
        ),
        (
            "a container the task definitions lack",
            ("containers = [\"app\"]", "containers = [\"application\"]"),
            &[],
            2,
            "`application`",
        ),
        (
            "a platform the task definitions do not run on",
            ("[build]\n", "[build]\nplatform = \"linux/arm64\"\n"),
            &[],
            2,
            "`build.platform` is `linux/arm64`",
        ),
        (
            "an unset secret build arg",
            ("[build]\n", "[build]\nsecret_args = [\"NOT_EXPORTED\"]\n"),
            &[],
            2,
            "secret build arg `NOT_EXPORTED` is not set",
        ),
        (
            "Docker over TLS without its certificates",
            ("", ""),
            &tls,
            4,
            "`DOCKER_TLS_VERIFY` is set, but",
        ),
    ];
    let before = app.snapshot().await;
    let counted = app.counters();
    for (case, (from, to), vars, code, says) in cases {
        fs_err::write(
            app.dir.path().join("berth.toml"),
            config.replacen(from, to, 1),
        )
        .unwrap();
        // Uncommitted: the deploy that landed stays the newest of this commit.
        let run = app.deploy_with(&["--allow-dirty"], vars);
        assert_eq!(run.code, Some(*code), "{case}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{case}: {}", run.stderr);
        assert_eq!(app.snapshot().await, before, "{case} changed something");
    }
    app.counters().assert_none_since(
        &counted,
        &[
            "s3:PutObject",
            "ecs:RegisterTaskDefinition",
            "ecs:UpdateService",
            "ecs:RunTask",
        ],
    );
    // The deploy that landed is still the newest: its rerun finds everything done.
    fs_err::write(app.dir.path().join("berth.toml"), &config).unwrap();
    let rerun = app.deploy(&[]);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    rerun.assert_skipped(&["build", "push", "register", "rollout"]);
}

/// A deploy that stopped after it registered and recorded its revisions (its migration, which
/// comes first here, could not start), whose revisions someone then deregistered: its rerun (and
/// its plan) stop before moving anything onto an INACTIVE revision, exit 2, naming the revision
/// and `--new`; `--new` lands on fresh revisions, scheduled targets included.
#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_never_moves_anything_onto_a_revision_deregistered_since() {
    let app = App::new("inactive", "migrate = \"before\"\n");
    let seeded = app.service_task_definitions().await;
    app.fault(json!({"service": "ecs", "operation": "RunTask", "error": "denied"}));
    let stopped = app.deploy(&[]);
    app.clear_faults();
    assert!(matches!(stopped.code, Some(1 | 3)), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("`ecs:RunTask`"),
        "{}",
        stopped.stderr
    );
    let deploy_id = stopped.json()["deploy_id"].as_str().unwrap().to_owned();
    let record = app.record(&deploy_id).await;
    assert_eq!(record["state"], "failed", "{record}");
    assert_eq!(
        app.service_task_definitions().await,
        seeded,
        "no service moved"
    );
    let ecs = app.ecs().await;
    let revisions: Vec<String> = record["revisions"]
        .as_object()
        .unwrap()
        .values()
        .map(|arn| arn.as_str().unwrap().to_owned())
        .collect();
    assert!(!revisions.is_empty(), "{record}");
    for arn in &revisions {
        ecs.deregister_task_definition()
            .task_definition(arn)
            .send()
            .await
            .unwrap();
    }
    // Refused before the lock.
    let before = app.snapshot().await;
    for command in ["plan", "deploy"] {
        let run = app.run(command, &[], &[]);
        assert_eq!(run.code, Some(2), "{command}: {}", run.stderr);
        assert!(
            run.stderr.contains("is INACTIVE (deregistered since)")
                && run.stderr.contains("`--new`"),
            "{command}: {}",
            run.stderr
        );
    }
    assert_eq!(app.snapshot().await, before, "nothing was written");

    let new = app.deploy(&["--new"]);
    assert_eq!(new.code, Some(0), "{}", new.stderr);
    let report = new.json();
    for (_, arn) in report["revisions"].as_object().unwrap() {
        assert!(!revisions.contains(&arn.as_str().unwrap().to_owned()));
    }
    for target in report["schedules"].as_array().unwrap() {
        assert!(!revisions.contains(&target["to"].as_str().unwrap().to_owned()));
    }
}
