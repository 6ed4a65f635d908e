//! One deploy per environment, and every side effect once, whatever happens to the process: the
//! crash matrix (SIGKILL at every step boundary and inside every wait, then the same command
//! again), two deploys started together, stale reruns, and `status`, `rollback`, `unlock`.
//! Needs the sandbox (`scripts/test` starts it).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod harness;

use serde_json::{Value, json};

use harness::*;

/// A short lease, so that a rerun after a SIGKILL takes the lock over within seconds.
const LEASE: &str = "[state]\nlease = \"5s\"\n";
/// The crash matrix's lease: renewed every 2 s, so it outlasts a held call (1.5 s) by 2.5 s
/// at least.
const CRASH_LEASE: &str = "[state]\nlease = \"6s\"\n";

/// What holds after a deploy that ended well, however many runs it took: one revision per family
/// tagged with the deploy id, one migration task started by it, the image pushed once since
/// `seeded` (the app's counters before the deploy), the services on the deploy's revisions, the
/// lock free and the record saying it succeeded.
async fn assert_landed_once(app: &App, run: &Run, seeded: &Counters) {
    let report = run.json();
    let deploy_id = report["deploy_id"].as_str().unwrap();
    for family in ["web", "devops"] {
        let family = format!("{}-stg-{family}", app.name);
        assert_eq!(
            app.revisions_of_deploy(&family, deploy_id).await.len(),
            1,
            "{family}: one revision of the deploy"
        );
    }
    assert_eq!(
        app.tasks_started_by(deploy_id).await.len(),
        1,
        "one migration task for the deploy"
    );
    assert_eq!(
        app.counters().pushes,
        seeded.pushes + 1,
        "the image was pushed once"
    );
    let revisions: Vec<String> = ["web", "devops"]
        .iter()
        .map(|service| {
            report["revisions"][format!("{}-stg-{service}", app.name)]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(app.service_task_definitions().await, revisions);
    assert_eq!(app.lock().await["holder"], Value::Null, "the lock is free");
    assert_eq!(app.record(deploy_id).await["state"], "succeeded");
}

/// What a rerun did, step by step: `skipped` (found done in AWS), `ran` (done in this run), plus how it met the
/// migration and the lock.
fn what_the_rerun_did(rerun: &Run) -> String {
    let mut did: Vec<String> = ["build", "push", "register", "rollout", "migrate"]
        .iter()
        .map(|step| {
            let how = if rerun.stderr.contains(&format!("{step}: already done")) {
                "skipped"
            } else if rerun.stderr.contains(&format!("{step}: done")) {
                "ran"
            } else {
                "-"
            };
            format!("{step} {how}")
        })
        .collect();
    for (said, meaning) in [
        ("took over the lock", "lock taken over"),
        ("resuming migration attempt", "migration claim resumed"),
        (": attaching", "attached to the migration task"),
        ("already runs", "attached to a deployment"),
    ] {
        if rerun.stderr.contains(said) {
            did.push(meaning.to_owned());
        }
    }
    did.join(", ")
}

/// A point to kill berth at: its name, extra settings, fault rules (for a call in flight when
/// the kill lands), the stderr line that marks the moment and how long after it.
struct CrashPoint {
    name: &'static str,
    extra: &'static str,
    faults: Vec<Value>,
    at: fn(&str) -> bool,
    /// The call (held by a fault) that is under way when the kill lands.
    in_flight: Option<&'static str>,
}

fn crash_points() -> Vec<CrashPoint> {
    // A call held for 3 s by the sandbox is in flight when the kill lands; ECS applies it after
    // the process is gone (or, with `drop`, never).
    let held =
        |operation: &str| json!({"service": "ecs", "operation": operation, "latency_ms": 3000});
    vec![
        CrashPoint {
            name: "lock taken, nothing done",
            extra: "",
            faults: vec![],
            at: |l| l.ends_with("build: started"),
            in_flight: None,
        },
        CrashPoint {
            name: "inside the build",
            extra: "",
            faults: vec![],
            at: |l| l.contains("build | "),
            in_flight: None,
        },
        CrashPoint {
            name: "inside the push",
            extra: "",
            faults: vec![],
            at: |l| l.ends_with("push: started"),
            in_flight: None,
        },
        CrashPoint {
            name: "RegisterTaskDefinition in flight",
            extra: "",
            faults: vec![held("RegisterTaskDefinition")],
            at: |l| l.ends_with("register: started"),
            in_flight: Some("ecs:RegisterTaskDefinition"),
        },
        CrashPoint {
            // The record is created beside the registration: a rerun that finds no record of a
            // deploy the lock's journal lists searches for its revisions, and registers none.
            name: "revisions registered, the record's creation never applied",
            extra: "",
            faults: vec![json!({
                "service": "s3",
                "operation": "PutObject",
                "body_contains": "\"kind\":\"deploy\"",
                "latency_ms": 3000,
                "error": "drop"
            })],
            at: |l| l.contains("register: done"),
            in_flight: Some("s3:PutObject"),
        },
        CrashPoint {
            name: "UpdateService in flight",
            extra: "",
            faults: vec![held("UpdateService")],
            at: |l| l.ends_with("rollout: started"),
            in_flight: Some("ecs:UpdateService"),
        },
        CrashPoint {
            // The revisions and the rollout's start go into the record beside the updates: a
            // rerun finds the services on revisions its record does not name yet, finds those
            // by their tag, and waits on the deployments.
            name: "services updated, the record's revisions never applied",
            extra: "",
            faults: vec![json!({
                "service": "s3",
                "operation": "PutObject",
                "body_contains": "\"outcome\":\"starting\"",
                "latency_ms": 3000,
                "error": "drop"
            })],
            at: |l| l.contains("deployment `") && l.ends_with("started"),
            in_flight: Some("s3:PutObject"),
        },
        CrashPoint {
            name: "waiting on the rollouts",
            extra: "",
            faults: vec![],
            at: |l| l.contains("deployment `") && l.ends_with("started"),
            in_flight: None,
        },
        CrashPoint {
            name: "one service's rollout completed",
            extra: "",
            faults: vec![],
            at: |l| l.contains("deployment completed"),
            in_flight: None,
        },
        CrashPoint {
            name: "migration claimed, RunTask never applied",
            extra: "",
            faults: vec![
                json!({"service": "ecs", "operation": "RunTask", "latency_ms": 1500, "error": "drop"}),
            ],
            at: |l| l.ends_with("migrate: started"),
            in_flight: Some("ecs:RunTask"),
        },
        CrashPoint {
            name: "migration claimed, RunTask applied after the kill",
            extra: "",
            faults: vec![held("RunTask")],
            at: |l| l.ends_with("migrate: started"),
            in_flight: Some("ecs:RunTask"),
        },
        CrashPoint {
            name: "migration task started",
            extra: "",
            faults: vec![],
            at: |l| l.contains("migration task `") && l.contains("started:"),
            in_flight: None,
        },
        CrashPoint {
            name: "migration running, logs streaming",
            extra: "",
            faults: vec![],
            at: |l| l.contains("migrate | "),
            in_flight: None,
        },
        CrashPoint {
            name: "migration before the rollout, running",
            extra: "migrate = \"before\"\n",
            faults: vec![],
            at: |l| l.contains("migrate | "),
            in_flight: None,
        },
        CrashPoint {
            name: "finished, lock not yet released",
            extra: "",
            faults: vec![],
            at: |l| l.contains(" deploy `") && l.contains("` finished: "),
            in_flight: None,
        },
    ]
}

/// SIGKILL at each crash point, then the same command: every rerun ends as an uninterrupted
/// deploy would. Points run four at a time, each on its own copy of the app.
#[test]
fn a_deploy_killed_at_any_point_is_finished_by_the_same_command() {
    let points = crash_points();
    let mut summary = Vec::new();
    for batch in points.chunks(4) {
        let done: Vec<String> = std::thread::scope(|scope| {
            let runs: Vec<_> = batch
                .iter()
                .enumerate()
                .map(|(i, point)| scope.spawn(move || crash_and_rerun(i, point)))
                .collect();
            runs.into_iter().map(|run| run.join().unwrap()).collect()
        });
        summary.extend(done);
    }
    println!("crash matrix: what each rerun did");
    for line in &summary {
        println!("  {line}");
    }
    assert!(summary.len() >= 12);
}

fn crash_and_rerun(index: usize, point: &CrashPoint) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = App::new(
        &format!("crash{index}"),
        &format!("{}{CRASH_LEASE}", point.extra),
    );
    let seeded = app.counters();
    for rule in &point.faults {
        app.fault(rule.clone());
    }
    let killed = app.interrupt_in_flight(&[], &[], &point.at, point.in_flight, "KILL");
    assert_eq!(killed.code, None, "{}: killed by a signal", point.name);
    app.clear_faults();
    let rerun = app.deploy(&["--lock-wait", "30s"]);
    assert_eq!(rerun.code, Some(0), "{}: {}", point.name, rerun.stderr);
    runtime.block_on(assert_landed_once(&app, &rerun, &seeded));
    format!("{}: {}", point.name, what_the_rerun_did(&rerun))
}

/// Each write berth makes, denied by AWS (a permission the role lacks), one per copy of the app:
/// the deploy fails, and the environment runs one commit after it: the services and the
/// scheduled targets all on the revisions from before, or all on the deploy's. The JSON and the
/// S3 record say which.
#[test]
fn a_denied_write_leaves_the_environment_on_one_commit() {
    let web_only = "\"service\":\"web\"";
    let rows: Vec<(&str, Value)> = vec![
        (
            "ecs:RegisterTaskDefinition",
            json!({"service": "ecs", "operation": "RegisterTaskDefinition"}),
        ),
        (
            "ecs:UpdateService of web",
            json!({"service": "ecs", "operation": "UpdateService", "body_contains": web_only}),
        ),
        (
            "ecs:RunTask",
            json!({"service": "ecs", "operation": "RunTask"}),
        ),
        (
            "events:PutTargets",
            json!({"service": "events", "operation": "PutTargets"}),
        ),
        (
            "scheduler:UpdateSchedule",
            json!({"service": "scheduler", "operation": "UpdateSchedule"}),
        ),
        (
            "s3:PutObject",
            json!({"service": "s3", "operation": "PutObject"}),
        ),
    ];
    let mut summary = Vec::new();
    for batch in rows.chunks(3) {
        let done: Vec<String> = std::thread::scope(|scope| {
            let runs: Vec<_> = batch
                .iter()
                .enumerate()
                .map(|(i, (name, rule))| scope.spawn(move || denied(i, name, rule)))
                .collect();
            runs.into_iter().map(|run| run.join().unwrap()).collect()
        });
        summary.extend(done);
    }
    println!("denied writes: where each left the environment");
    for line in &summary {
        println!("  {line}");
    }
}

fn denied(index: usize, name: &str, rule: &Value) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Only the `RunTask` row needs the migration; the others skip it, to keep the matrix short.
    let extra = if name == "ecs:RunTask" {
        ""
    } else {
        "migrate = \"skip\"\n"
    };
    let app = App::new(&format!("deny{index}"), extra);
    let before = runtime.block_on(app.service_task_definitions());
    let scheduled_before = runtime.block_on(app.scheduled_revisions());
    let mut rule = rule.clone();
    rule["error"] = json!("denied");
    app.fault(rule);
    let run = app.deploy(&[]);
    app.clear_faults();
    assert!(matches!(run.code, Some(1 | 3)), "{name}: {}", run.stderr);
    let action = name.split(' ').next().unwrap();
    assert!(
        run.stderr.contains(&format!("`{action}`")),
        "{name}: the action is named\n{}",
        run.stderr
    );
    let report = run.json();
    let ours: Vec<String> = report["revisions"]
        .as_object()
        .map(|r| r.values().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    let services = runtime.block_on(app.service_task_definitions());
    let scheduled = runtime.block_on(app.scheduled_revisions());
    let on_before = services == before && scheduled == scheduled_before;
    let on_ours = !ours.is_empty()
        && services
            .iter()
            .chain(&scheduled)
            .all(|arn| ours.contains(arn));
    assert!(
        on_before || on_ours,
        "{name}: two commits: services {services:?}, scheduled {scheduled:?}, the deploy's {ours:?}\n{}",
        run.stderr
    );
    // The JSON says where each service ends.
    for (i, service) in report["services"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            service["ends_on"].as_str(),
            Some(services[i].as_str()),
            "{name}: {report}"
        );
    }
    let deploy_id = report["deploy_id"].as_str().unwrap();
    let record = runtime.block_on(app.state_object("stg", &format!("deploys/{deploy_id}.json")));
    let state = record
        .as_ref()
        .map(|r| r["state"].as_str().unwrap().to_owned());
    match &state {
        Some(state) if on_before && !report["services"].as_array().unwrap().is_empty() => {
            assert_eq!(state, "rolled_back", "{name}");
        }
        Some(state) => assert_eq!(state, "failed", "{name}"),
        None => assert!(on_before, "{name}: no record, yet something moved"),
    }
    let lock = runtime.block_on(app.lock_or_none());
    assert!(lock["holder"].is_null(), "{name}: the lock is free: {lock}");
    format!(
        "{name}: exit {:?}, {}, record {}",
        run.code,
        if on_before {
            "all on the revisions from before"
        } else {
            "all on the deploy's"
        },
        state.as_deref().unwrap_or("not written")
    )
}

/// Two deploys of one environment started together: one proceeds, the other fails at once
/// naming the holder (exit 5), or waits with `--lock-wait`; never a mixed environment, never two
/// migrations.
#[tokio::test(flavor = "multi_thread")]
async fn two_deploys_of_one_environment_never_overlap() {
    let app = App::new("race", "");
    let seeded = app.counters();

    // The same commit, twice (a double-triggered pipeline).
    let (first, second) = together(&app, &app, &[]);
    let (won, lost) = winner(first, second);
    assert_eq!(lost.code, Some(5), "{}", lost.stderr);
    assert!(lost.stderr.contains("is locked by"), "{}", lost.stderr);
    assert!(lost.stderr.contains("berth unlock --env stg"));
    assert_landed_once(&app, &won, &seeded).await;

    // Two new commits: one wins, and the environment is all of its commit.
    let one = app.another_checkout("NOTES.md", "one\n");
    let other = app.another_checkout("NOTES.md", "other\n");
    let (first, second) = together(&one, &other, &[]);
    let (won, lost) = winner(first, second);
    assert_eq!(lost.code, Some(5), "{}", lost.stderr);
    let won_report = won.json();
    let lost_id = lost.json()["deploy_id"].as_str().unwrap().to_owned();
    let won_id = won_report["deploy_id"].as_str().unwrap();
    let revisions: Vec<&str> = ["web", "devops"]
        .iter()
        .map(|s| {
            won_report["revisions"][format!("{}-stg-{s}", app.name)]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        app.service_task_definitions().await,
        revisions,
        "one commit everywhere"
    );
    assert_eq!(app.tasks_started_by(won_id).await.len(), 1);
    assert!(
        app.tasks_started_by(&lost_id).await.is_empty(),
        "the loser changed nothing"
    );
    for family in ["web", "devops"] {
        let family = format!("{}-stg-{family}", app.name);
        assert!(app.revisions_of_deploy(&family, &lost_id).await.is_empty());
    }

    // With --lock-wait the second waits for the first, then runs: one after the other.
    let third = app.another_checkout("NOTES.md", "a third commit\n");
    let fourth = app.another_checkout("NOTES.md", "a fourth commit\n");
    let (first, second) = together(&third, &fourth, &["--lock-wait", "3m"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let waited = [&first, &second]
        .into_iter()
        .filter(|run| run.stderr.contains("waiting up to 3m"))
        .count();
    assert_eq!(waited, 1, "exactly one of them waited");
    for run in [&first, &second] {
        let id = run.json()["deploy_id"].as_str().unwrap().to_owned();
        assert_eq!(
            app.tasks_started_by(&id).await.len(),
            1,
            "one migration each"
        );
    }
    assert_eq!(app.lock().await["holder"], Value::Null);
}

/// A deploy of another environment is not held up by this one's lock.
#[tokio::test(flavor = "multi_thread")]
async fn the_lock_is_per_environment() {
    let app = App::create("envs", "migrate = \"skip\"\n", "", &["stg", "prd"]);
    let stg = app.spawn(&["--env", "stg"], &[]);
    let prd = app.spawn(&["--env", "prd"], &[]);
    for (env, child) in [("stg", stg), ("prd", prd)] {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!("--- {env}\n{stderr}");
        assert_eq!(output.status.code(), Some(0), "{env}: {stderr}");
        assert!(!stderr.contains("locked by"), "{env}: {stderr}");
    }
}

/// Starts `a` and `b` at the same moment with `args`; both runs, in that order.
fn together(a: &App, b: &App, args: &[&str]) -> (Run, Run) {
    let began = std::time::Instant::now();
    let children = [a.spawn(args, &[]), b.spawn(args, &[])];
    let mut runs = children.into_iter().map(|child| {
        let output = child.wait_with_output().unwrap();
        let run = Run {
            elapsed: began.elapsed(),
            ended: std::time::SystemTime::now(),
            code: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        };
        println!("--- together {args:?} → {:?}\n{}", run.code, run.stderr);
        run
    });
    (runs.next().unwrap(), runs.next().unwrap())
}

/// The run that exited 0 and the other one; exactly one of them must have.
fn winner(a: Run, b: Run) -> (Run, Run) {
    match (a.code, b.code) {
        (Some(0), Some(0)) => panic!("both deploys ran:\n{}\n---\n{}", a.stderr, b.stderr),
        (Some(0), _) => (a, b),
        (_, Some(0)) => (b, a),
        _ => panic!("neither deploy ran:\n{}\n---\n{}", a.stderr, b.stderr),
    }
}

/// `status` tells what runs; `rollback` goes back to the deploy before without touching the
/// database; a stale rerun is refused; `unlock` frees a lock whose holder was killed.
#[tokio::test(flavor = "multi_thread")]
async fn status_rollback_stale_reruns_and_unlock() {
    let app = App::new("back", LEASE);
    let first = app.deploy(&[]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let first_id = first.json()["deploy_id"].as_str().unwrap().to_owned();
    let first_revisions = app.service_task_definitions().await;
    let newer = app.another_checkout("NOTES.md", "newer\n");
    let second = newer.deploy(&[]);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let second_id = second.json()["deploy_id"].as_str().unwrap().to_owned();

    let status = app.run("status", &[], &[]);
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    let status = status.json();
    assert_eq!(status["services"][0]["deploy_id"], second_id.as_str());
    assert_eq!(
        status["services"][0]["running"],
        status["services"][0]["desired"]
    );
    assert_eq!(status["lock"], Value::Null);
    assert_eq!(status["deploys"][0]["deploy_id"], second_id.as_str());
    assert_eq!(status["deploys"][1]["deploy_id"], first_id.as_str());
    let text = app.run("status", &["--output", "text"], &[]).stdout;
    assert!(text.contains(&format!("deploy `{second_id}`")), "{text}");
    assert!(text.contains("lock       free"), "{text}");

    // A rerun of the older deploy (yesterday's pipeline rerun) is refused, naming the newer.
    let stale = app.deploy(&[]);
    assert_eq!(stale.code, Some(2), "{}", stale.stderr);
    assert!(stale.stderr.contains(&second_id), "{}", stale.stderr);
    assert!(stale.stderr.contains("--force"));

    // Back to the first deploy: its revisions, waited on; no migration.
    let counted = app.counters();
    let back = app.run("rollback", &[], &[]);
    assert_eq!(back.code, Some(0), "{}", back.stderr);
    assert_eq!(back.json()["to"], first_id.as_str());
    assert_eq!(app.service_task_definitions().await, first_revisions);
    assert_eq!(
        app.counters().get("ecs:RunTask"),
        counted.get("ecs:RunTask"),
        "the database is untouched"
    );
    let status = app.run("status", &[], &[]).json();
    assert_eq!(status["deploys"][0]["kind"], "rollback");
    assert_eq!(status["deploys"][0]["state"], "succeeded");
    // The rollback is the newest deploy: a rerun of the one it undid is stale, and the error
    // names the commit the rollback went back to.
    let undone = newer.deploy(&[]);
    assert_eq!(undone.code, Some(2), "{}", undone.stderr);
    let first_commit = first.json()["commit"].as_str().unwrap()[..7].to_owned();
    assert!(
        undone
            .stderr
            .contains(&format!("of commit {first_commit} by")),
        "{}",
        undone.stderr
    );

    // A second rollback goes further back, never forward to the deploy the first one undid:
    // with nothing older than the first deploy it is refused (exit 2), and nothing moves.
    let counted = app.counters();
    let lock_before = app.lock().await;
    let again = app.run("rollback", &[], &[]);
    assert_eq!(again.code, Some(2), "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("no successful deploy older than the one running now"),
        "{}",
        again.stderr
    );
    assert_eq!(app.service_task_definitions().await, first_revisions);
    app.counters().assert_none_since(
        &counted,
        &[
            "ecs:RegisterTaskDefinition",
            "ecs:UpdateService",
            "ecs:RunTask",
            "events:PutTargets",
            "scheduler:UpdateSchedule",
        ],
    );
    assert_eq!(
        app.run("status", &[], &[]).json()["deploys"],
        status["deploys"]
    );
    assert_eq!(app.lock().await, lock_before, "the refusal took no lock");

    // A holder killed outright: `status` names it, `unlock` asks (and refuses without a
    // terminal unless `--yes`), then frees it.
    let killed = newer.interrupt(
        &["--new"],
        &[],
        &|l| l.ends_with("register: started"),
        "KILL",
    );
    assert_eq!(killed.code, None);
    let held = app.run("status", &[], &[]).json();
    assert!(held["lock"]["holder"]["who"].is_string(), "{held}");
    let refused = app.run("unlock", &[], &[]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    let unlocked = app.run("unlock", &["--yes"], &[]);
    assert_eq!(unlocked.code, Some(0), "{}", unlocked.stderr);
    assert!(unlocked.json()["released"]["deploy_id"].is_string());
    assert_eq!(app.lock().await["holder"], Value::Null);

    // A revision deregistered since cannot be gone back to: refused before any change.
    let ecs = app.ecs().await;
    ecs.deregister_task_definition()
        .task_definition(&first_revisions[0])
        .send()
        .await
        .unwrap();
    let inactive = app.run("rollback", &["--to", &second_id], &[]);
    assert_eq!(inactive.code, Some(0), "{}", inactive.stderr);
    let refused = app.run("rollback", &["--to", &first_id], &[]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains("INACTIVE"), "{}", refused.stderr);
}

/// `on_failure = "rollback"` (the default): when `web`'s rollout fails, `devops`, which had
/// moved, goes back too; the record and the report say so.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_rollout_moves_the_environment_back_to_one_commit() {
    let app = App::new(
        "onefail",
        "migrate = \"skip\"\n[environment]\nCRASH_ON_BOOT = \"1\"\n",
    );
    let before = app.service_task_definitions().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("rolled back: "), "{}", run.stderr);
    assert_eq!(
        app.service_task_definitions().await,
        before,
        "both services back"
    );
    let report = run.json();
    assert_eq!(report["rolled_back"].as_array().unwrap().len(), 2);
    let record = app.record(report["deploy_id"].as_str().unwrap()).await;
    assert_eq!(record["state"], "rolled_back");
    assert_eq!(record["services"]["devops"]["outcome"], "rolled_back");
}

/// With a fifth of this app's AWS calls failing (throttling, 500, 503, a connection dropped
/// before the call was applied or after, its answer lost) and a burst of 10 throttles on
/// `DescribeServices` during a rollout, ten deploys in a row land, each exactly once. The SDK's
/// retries do the retrying; the record and the `clientToken` keep `RegisterTaskDefinition` and
/// `RunTask` from happening twice.
///
/// The faulted deploys get 10 attempts per call (`AWS_MAX_ATTEMPTS`) instead of berth's 5: at a
/// fifth of calls failing, 5 attempts all fail for one call in about 2,700, and these deploys
/// make some 700 calls, so a deploy that stops on a call that failed 5 times (as it should, exit
/// 1 or 4) would come about once every four runs. With 10 it is once in about 7 million calls.
#[tokio::test(flavor = "multi_thread")]
async fn ten_deploys_land_exactly_once_while_a_fifth_of_aws_calls_fail() {
    let app = App::new("faults", "");
    let seeded = app.counters();
    let clean = app.deploy(&[]);
    assert_eq!(clean.code, Some(0), "{}", clean.stderr);
    let clean_calls = app.counters().since(&seeded);
    assert_landed_once(&app, &clean, &seeded).await;

    // Five kinds at 4.5 % each: 1 - 0.955^5 = 20.6 % of calls fail.
    for (i, kind) in ["throttle", "500", "503", "drop", "lost"]
        .iter()
        .enumerate()
    {
        app.fault(json!({"error": kind, "probability": 0.045, "seed": 100 + i}));
    }
    const PATIENT: &[(&str, &str)] = &[("AWS_MAX_ATTEMPTS", "10")];
    let mut faulted = Vec::new();
    for n in 0..10 {
        let before = app.counters();
        let run = if n == 4 {
            app.deploy_watching(
                &["--new"],
                PATIENT,
                &|line| line.ends_with("rollout: started"),
                None,
                &|_| {
                    app.fault(json!({
                        "service": "ecs", "operation": "DescribeServices",
                        "error": "throttle", "first": 10
                    }));
                },
            )
        } else {
            app.deploy_with(&["--new"], PATIENT)
        };
        assert_eq!(run.code, Some(0), "deploy {n}: {}", run.stderr);
        assert_landed_once(&app, &run, &seeded).await;
        faulted.push(app.counters().since(&before));
    }
    let rules = admin(
        &app.var("BERTH_SANDBOX_PORT"),
        "GET",
        "/_sandbox/faults",
        None,
    );
    for rule in rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["app"] == app.name.as_str())
    {
        println!(
            "fault {} {}: {} of {} calls failed",
            rule["error"], rule["operation"], rule["fired"], rule["matched"]
        );
    }

    println!("AWS calls: a clean deploy, then each faulted deploy (--new: no build, no push)");
    let operations: std::collections::BTreeSet<&String> = clean_calls
        .keys()
        .chain(faulted.iter().flat_map(|calls| calls.keys()))
        .collect();
    for operation in operations {
        let counts: Vec<String> = faulted
            .iter()
            .map(|calls| calls.get(operation).copied().unwrap_or(0).to_string())
            .collect();
        println!(
            "  {operation:<40} {:>5} | {}",
            clean_calls.get(operation).copied().unwrap_or(0),
            counts.join(" ")
        );
    }
    let total = |calls: &std::collections::BTreeMap<String, u64>| calls.values().sum::<u64>();
    println!(
        "  {:<40} {:>5} | {}",
        "total",
        total(&clean_calls),
        faulted
            .iter()
            .map(|calls| total(calls).to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// `[state] create = false` and no such bucket: refused before any change, naming the setting.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_state_bucket_that_may_not_be_created_changes_nothing() {
    let app = App::new(
        "nobucket",
        "[state]\nbucket = \"berth-no-such-bucket\"\ncreate = false\n",
    );
    let before = app.service_task_definitions().await;
    let counted = app.counters();
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "state bucket `berth-no-such-bucket` does not exist, and `[state] create = false`"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: create it"), "{}", run.stderr);
    assert_eq!(app.service_task_definitions().await, before);
    app.counters().assert_none_since(
        &counted,
        &[
            "ecs:RegisterTaskDefinition",
            "ecs:UpdateService",
            "ecs:RunTask",
            "s3:CreateBucket",
        ],
    );
}

/// A deploy paused (SIGSTOP) past its lease while another deploy takes the lock over, lands and
/// releases it: resumed, the first makes no further change, says what happened (not "released
/// with `berth unlock`", not "S3 did not answer"), ends its record `lost`, and is not listed as
/// running.
#[test]
fn a_deploy_paused_past_its_lease_tells_what_happened_and_ends_lost() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = App::new("paused", &format!("migrate = \"skip\"\n{LEASE}"));
    let newer = app.another_checkout("NOTES.md", "newer\n");
    let meanwhile = std::sync::Mutex::new(None);
    let signal = |name: &str, pid: u32| {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let paused = app.deploy_watching(&[], &[], &|l| l.ends_with("build: started"), None, &|pid| {
        signal("STOP", pid);
        // The lease (5 s) runs out; the newer deploy waits for it, then lands.
        let run = newer.deploy(&["--lock-wait", "1m"]);
        *meanwhile.lock().unwrap() = Some(run);
        signal("CONT", pid);
    });
    let newer_run = meanwhile.lock().unwrap().take().unwrap();
    assert_eq!(newer_run.code, Some(0), "{}", newer_run.stderr);
    let newer_id = newer_run.json()["deploy_id"].as_str().unwrap().to_owned();
    let landed = runtime.block_on(app.service_task_definitions());

    assert_eq!(paused.code, Some(1), "{}", paused.stderr);
    let error = paused.error_line();
    assert!(
        error.contains("this run lost the environment's lock: this run's lease ran out")
            && error.contains(&format!("deploy `{newer_id}`"))
            && error.contains("took it over, ran, and released it")
            && !error.contains("unlock")
            && !error.contains("did not answer"),
        "{error}"
    );
    assert_eq!(
        runtime.block_on(app.service_task_definitions()),
        landed,
        "the paused run changed nothing more"
    );
    let paused_id = paused.json()["deploy_id"].as_str().unwrap().to_owned();
    let record = runtime.block_on(app.record(&paused_id));
    assert_eq!(record["state"], "lost", "{record}");
    let status = app.run("status", &[], &[]).json();
    let listed: Vec<(&str, &str)> = status["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["deploy_id"].as_str().unwrap(),
                d["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(listed.contains(&(paused_id.as_str(), "lost")), "{listed:?}");
    assert!(
        !listed.iter().any(|(_, state)| *state == "running"),
        "{listed:?}"
    );
}

/// A blue/green deploy killed inside its bake time: the record does not name the service
/// deployment yet (its next write would have), so the rerun finds it by
/// `ListServiceDeployments`, attaches to that one, starts no second one, and ends when ECS ends
/// it. With `ecs:ListServiceDeployments` denied, the rerun says so once and judges the rollout
/// from `DescribeServices`: still right, and still only after the bake.
#[test]
fn a_deploy_killed_inside_the_bake_time_is_finished_by_its_own_service_deployment() {
    // The two variants side by side, each on its own copy of the app: each waits out real bake
    // times.
    std::thread::scope(|scope| {
        let variants = [("crashbake", false), ("crashbakedenied", true)].map(|(test, denied)| {
            scope.spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(killed_inside_the_bake_time(test, denied));
            })
        });
        for variant in variants {
            variant.join().unwrap();
        }
    });
}

/// One variant: killed while `web-bg` bakes, then rerun (with `ListServiceDeployments` denied
/// when `denied`).
async fn killed_inside_the_bake_time(test: &str, denied: bool) {
    let app = App::blue_green(test, &format!("migrate = \"skip\"\n{CRASH_LEASE}"));
    admin(
        &app.var("BERTH_SANDBOX_PORT"),
        "POST",
        "/_sandbox/config",
        Some(&json!({"minute_seconds": 20.0})),
    );
    let counted = app.counters();
    let killed = app.interrupt(
        &[],
        &[],
        &|line| line.contains("`web-bg`: stage BAKE_TIME"),
        "KILL",
    );
    assert_eq!(killed.code, None, "{test}: killed by a signal");
    let ecs = app.ecs().await;
    let current = |ecs: aws_sdk_ecs::Client, cluster: String| async move {
        let out = ecs
            .describe_services()
            .cluster(cluster)
            .services("web-bg")
            .send()
            .await
            .unwrap();
        out.services()[0]
            .current_service_deployment()
            .unwrap()
            .to_owned()
    };
    let baking = current(ecs.clone(), app.cluster()).await;
    if denied {
        app.fault(
            json!({"service": "ecs", "operation": "ListServiceDeployments", "error": "denied"}),
        );
    }
    let rerun = app.deploy(&["--lock-wait", "30s"]);
    assert_eq!(rerun.code, Some(0), "{test}: {}", rerun.stderr);
    assert!(
        rerun.stderr.contains("already runs"),
        "{test}: {}",
        rerun.stderr
    );
    let calls = app.counters().since(&counted);
    assert_eq!(
        calls.get("ecs:UpdateService"),
        Some(&1),
        "{test}: one deployment: {calls:?}"
    );
    assert_eq!(current(ecs.clone(), app.cluster()).await, baking, "{test}");
    let described = ecs
        .describe_service_deployments()
        .service_deployment_arns(&baking)
        .send()
        .await
        .unwrap();
    let status = described.service_deployments()[0]
        .status()
        .unwrap()
        .as_str()
        .to_owned();
    assert_eq!(
        status, "SUCCESSFUL",
        "{test}: berth exits after ECS ends it"
    );
    let web = &rerun.json()["services"][0];
    if denied {
        let warned = rerun
            .stderr
            .lines()
            .filter(|l| l.contains("`ecs:ListServiceDeployments` is denied"))
            .count();
        assert_eq!(warned, 1, "{test}: {}", rerun.stderr);
        assert!(web.get("service_deployment").is_none(), "{test}: {web}");
    } else {
        assert!(
            calls.contains_key("ecs:ListServiceDeployments"),
            "{calls:?}"
        );
        assert_eq!(web["service_deployment"], baking.as_str(), "{test}: {web}");
        assert_eq!(web["service_deployment_status"], "SUCCESSFUL");
    }
    let deploy_id = rerun.json()["deploy_id"].as_str().unwrap().to_owned();
    assert_eq!(app.record(&deploy_id).await["state"], "succeeded", "{test}");
}

/// A promotion killed inside its copy: every blob is in prd's registry, its manifest is not (the
/// registry drops that request). The same command finishes the copy without sending a blob
/// again, and prd's registry holds the image's manifest once, with stg's digest.
#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_killed_inside_its_copy_is_finished_by_the_same_command() {
    let mut app = App::create(
        "crashcopy",
        &format!("migrate = \"skip\"\n{CRASH_LEASE}"),
        "",
        &["stg"],
    );
    let prd_at = (ACCOUNT, SECOND_REGION);
    app.seed_elsewhere("prd", prd_at, "promote_from = \"stg\"");
    let stg = app.deploy(&[]);
    assert_eq!(stg.code, Some(0), "{}", stg.stderr);
    let image = stg.json()["image"].clone();
    let (tag, digest) = (
        image["tag"].as_str().unwrap(),
        image["digest"].as_str().unwrap(),
    );
    app.fault(json!({
        "service": "registry", "operation": "PutManifest", "app": app.name,
        "latency_ms": 3000, "error": "drop"
    }));
    let killed = app.interrupt_in_flight(
        &["--env", "prd"],
        &[],
        &|line| line.contains("copying `"),
        Some("registry:PutManifest"),
        "KILL",
    );
    assert_eq!(killed.code, None, "killed by a signal");
    app.clear_faults();
    let stored = format!("{ACCOUNT}/{SECOND_REGION}/{}", app.name);
    assert_eq!(
        app.manifest_pushes(&stored, tag),
        0,
        "the manifest never landed"
    );

    let rerun = app.deploy(&["--env", "prd", "--lock-wait", "30s"]);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    let copied = &rerun.json()["promoted"]["copied"];
    assert_eq!(copied["blobs_copied"], 0, "every blob was there: {copied}");
    assert!(copied["blobs_present"].as_u64().unwrap() >= 2, "{copied}");
    assert_eq!(copied["manifests"], 1);
    assert_eq!(app.manifest_pushes(&stored, tag), 1, "one manifest");
    let repository = app.repository_in(prd_at).await;
    assert_eq!(
        rerun.json()["image"]["uri"],
        format!("{repository}@{digest}").as_str()
    );
    assert_eq!(
        app.web_image_in(prd_at, "prd").await,
        format!("{repository}@{digest}")
    );
}
