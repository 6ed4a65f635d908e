//! `berth run`: one-off commands as tasks of the service's revision, against the seeded
//! environment (no deploy needed: the seed runs the example app).

use aws_sdk_ecs::types::{ContainerDefinition, Task};

use crate::harness::*;

/// The `berth run` tasks ECS knows in the app's cluster (started by a `berth-run-…`), running or
/// stopped.
async fn run_tasks(app: &App) -> Vec<Task> {
    app.tasks()
        .await
        .into_iter()
        .filter(|t| t.started_by().is_some_and(|s| s.starts_with("berth-run-")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_streams_its_output_and_berth_ends_with_its_exit_code() {
    let app = App::new("run", "");
    let before = app.snapshot().await;

    let ok = app.run("run", &["--", "bin/rails", "runner", "puts 1"], &[]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(
        ok.stderr.contains("run | => puts 1 on version"),
        "the command's output, live: {}",
        ok.stderr
    );
    let ran = ok.json();
    assert_eq!(ran["exit_code"], 0, "{ran}");
    assert_eq!(ran["container"], "app");
    assert_eq!(ran["service"], "web");
    assert_eq!(ran["status"], "STOPPED");
    assert!(ran.get("error").is_none(), "{ran}");
    let revision = ran["revision"].as_str().unwrap().to_owned();
    assert!(
        app.service_task_definitions().await.contains(&revision),
        "the task runs the web service's revision {revision}"
    );

    let failed = app.run("run", &["--", "sh", "-c", "echo boom; exit 42"], &[]);
    assert_eq!(failed.code, Some(42), "the command's own code");
    assert!(failed.stderr.contains("run | boom"), "{}", failed.stderr);
    let error = failed.error_line();
    assert!(error.contains("`app` exited 42"), "{error}");
    assert!(
        error.contains("app=42") && error.contains("datadog-agent="),
        "every container's exit code: {error}"
    );
    assert!(
        error.contains("stopCode `EssentialContainerExited`"),
        "{error}"
    );
    let ran = failed.json();
    assert_eq!(ran["exit_code"], 42);
    assert_eq!(ran["error"]["exit_code"], 42);
    assert!(ran["exit_codes"]["datadog-agent"].is_number(), "{ran}");

    // Two tasks ran, each once; nothing else changed: no service, revision, state object or image.
    let tasks = run_tasks(&app).await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let mut after = app.snapshot().await;
    after.retain(|line| !tasks.iter().any(|t| line.contains(t.task_arn().unwrap())));
    assert_eq!(after, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_with_the_same_client_token_follows_the_task_it_started() {
    let app = App::new("runtoken", "");
    let command = ["--", "sh", "-c", "echo once; exit 0"];
    let first = app.run(
        "run",
        &[&["--client-token", "backfill-1"][..], &command].concat(),
        &[],
    );
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let task = first.json()["task_arn"].as_str().unwrap().to_owned();

    let again = app.run(
        "run",
        &[&["--client-token", "backfill-1"][..], &command].concat(),
        &[],
    );
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("was started before with this client token"),
        "{}",
        again.stderr
    );
    assert_eq!(again.json()["task_arn"], task.as_str());
    assert_eq!(again.json()["attached"], true);
    assert_eq!(run_tasks(&app).await.len(), 1, "one task for one token");

    // In CircleCI, a retry within one job gets the job's token; another command gets its own.
    let job = [("CIRCLE_WORKFLOW_JOB_ID", "5e1f-job")];
    let in_job = app.run("run", &command, &job);
    let retried = app.run("run", &command, &job);
    assert_eq!((in_job.code, retried.code), (Some(0), Some(0)));
    assert_eq!(in_job.json()["task_arn"], retried.json()["task_arn"]);
    let other = app.run("run", &["--", "sh", "-c", "echo other"], &job);
    assert_ne!(other.json()["task_arn"], in_job.json()["task_arn"]);
    assert_eq!(run_tasks(&app).await.len(), 3);

    // The same token for another command while its task runs: berth does not follow that task
    // as if it were this command's.
    let long = [
        "--client-token",
        "backfill-2",
        "--detach",
        "--",
        "sh",
        "-c",
        "sleep 20",
    ];
    let detached = app.run("run", &long, &[]);
    assert_eq!(detached.code, Some(0), "{}", detached.stderr);
    let other = app.run(
        "run",
        &["--client-token", "backfill-2", "--", "sh", "-c", "exit 0"],
        &[],
    );
    assert_eq!(other.code, Some(2), "{}", other.stderr);
    assert!(
        other.error_line().contains("which runs another command"),
        "{}",
        other.stderr
    );
    assert_eq!(run_tasks(&app).await.len(), 4);

    // The same token for another command: ECS refuses, and berth starts nothing.
    let conflict = app.run(
        "run",
        &["--client-token", "backfill-1", "--", "sh", "-c", "exit 1"],
        &[],
    );
    assert_eq!(conflict.code, Some(2), "{}", conflict.stderr);
    assert!(
        conflict.error_line().contains("`backfill-1`"),
        "{}",
        conflict.stderr
    );
    assert_eq!(run_tasks(&app).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_detached_task_is_followed_to_its_end_by_attach() {
    let app = App::new("rundetach", "");
    let detached = app.run(
        "run",
        &[
            "--detach",
            "--output",
            "text",
            "--",
            "sh",
            "-c",
            "sleep 2; echo done; exit 9",
        ],
        &[],
    );
    assert_eq!(detached.code, Some(0), "{}", detached.stderr);
    let task = detached.stdout.trim().to_owned();
    assert!(
        task.starts_with("arn:aws:ecs:"),
        "stdout is the task: {task:?}"
    );
    let attached = app.run("run", &["--attach", &task], &[]);
    assert_eq!(attached.code, Some(9), "{}", attached.stderr);
    assert!(
        attached.stderr.contains("run | done"),
        "{}",
        attached.stderr
    );
    let ran = attached.json();
    assert_eq!(ran["attached"], true);
    assert_eq!(
        ran["container"], "app",
        "the container whose command the task overrides"
    );
    assert_eq!(ran["command"][0], "sh");
    assert_eq!(run_tasks(&app).await.len(), 1);
}

/// A copy of the web service's revision, registered, with `edit` applied to its `app` container.
async fn register_copy(
    app: &App,
    edit: impl Fn(ContainerDefinition) -> ContainerDefinition,
) -> String {
    let ecs = app.ecs().await;
    let current = app.service_task_definitions().await[0].clone();
    let base = task_definition(&ecs, &current).await;
    let containers = base
        .container_definitions()
        .iter()
        .cloned()
        .map(|c| if c.name() == Some("app") { edit(c) } else { c })
        .collect();
    ecs.register_task_definition()
        .family(base.family().unwrap())
        .set_container_definitions(Some(containers))
        .set_network_mode(base.network_mode().cloned())
        .set_requires_compatibilities(Some(base.requires_compatibilities().to_vec()))
        .set_cpu(base.cpu().map(str::to_owned))
        .set_memory(base.memory().map(str::to_owned))
        .set_execution_role_arn(base.execution_role_arn().map(str::to_owned))
        .set_task_role_arn(base.task_role_arn().map(str::to_owned))
        .set_volumes(Some(base.volumes().to_vec()))
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_anything_runs() {
    let app = App::new("runbad", "");
    let inactive = register_copy(&app, |c| c).await;
    app.ecs()
        .await
        .deregister_task_definition()
        .task_definition(&inactive)
        .send()
        .await
        .unwrap();
    let before = app.snapshot().await;
    let cases: [(&str, Vec<&str>, &str); 5] = [
        ("no command", vec![], "needs a command after `--`"),
        (
            "no command after --",
            vec!["--"],
            "needs a command after `--`",
        ),
        (
            "unknown service",
            vec!["--service", "worker", "--", "true"],
            "`--service worker` is not a service of `stg`",
        ),
        (
            "unknown container",
            vec!["--container", "sidekiq", "--", "true"],
            "has no container `sidekiq`",
        ),
        (
            "INACTIVE revision",
            vec!["--revision", &inactive, "--", "true"],
            "is INACTIVE",
        ),
    ];
    for (case, args, says) in cases {
        let run = app.run("run", &args, &[]);
        assert_eq!(run.code, Some(2), "{case}: {}", run.stderr);
        assert!(run.error_line().contains(says), "{case}: {}", run.stderr);
        assert!(run.stderr.contains("\nhint: "), "{case}: {}", run.stderr);
    }
    assert_eq!(app.snapshot().await, before, "nothing ran, nothing changed");

    // A task ECS cannot start (its image cannot be pulled): exit 3, and ECS's reason.
    let unpullable = register_copy(&app, |c| {
        let image = format!(
            "{}:no-such-tag",
            c.image().unwrap().rsplit_once(':').unwrap().0
        );
        let mut c = c;
        c.image = Some(image);
        c
    })
    .await;
    let run = app.run("run", &["--revision", &unpullable, "--", "true"], &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.error_line().contains("TaskFailedToStart"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the task never started"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_between_register_and_rollout_refuses_the_services_revision() {
    let app = App::new("runflight", "migrate = \"before\"\n");
    // A migration that takes a while: the deploy waits on it between register and rollout.
    fs_err::write(app.dir.path().join("db/migrate/900_slow.sh"), "sleep 20\n").unwrap();
    app.commit("a slow migration");
    let running = app.service_task_definitions().await[0].clone();
    let number = running.rsplit(':').next().unwrap().to_owned();
    let seen = std::sync::Mutex::new(Vec::new());
    let deploy = app.deploy_watching(
        &[],
        &[],
        &|line| line.contains("migration task `") && line.contains("started:"),
        None,
        &|_| {
            let refused = app.run("run", &["--", "bin/rails", "runner", "x"], &[]);
            let named = app.run(
                "run",
                &["--revision", &number, "--", "bin/rails", "runner", "x"],
                &[],
            );
            seen.lock().unwrap().extend([refused, named]);
        },
    );
    assert_eq!(deploy.code, Some(0), "{}", deploy.stderr);
    let seen = seen.into_inner().unwrap();
    let (refused, named) = (&seen[0], &seen[1]);
    assert_eq!(refused.code, Some(5), "{}", refused.stderr);
    assert!(
        refused.error_line().contains("is in flight"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.error_line().contains("has not rolled"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--revision"),
        "the hint names the way out"
    );
    assert_eq!(named.code, Some(0), "{}", named.stderr);
    assert_eq!(named.json()["revision"], running.as_str());
    assert_eq!(
        run_tasks(&app).await.len(),
        1,
        "the refused run started nothing"
    );
}
