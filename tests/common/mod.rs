//! Runs the real `berth` binary in a scratch folder with a clean environment, and waits for what
//! the sandbox does in its own time.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `berth ARGS` in `dir`, with the environment scrubbed (see [`scrub`]) and `vars` set.
pub fn berth(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command.current_dir(dir).args(args);
    scrub(&mut command)
        .env("NO_COLOR", "1")
        .envs(vars.iter().copied());
    command.output().unwrap()
}

/// Removes from `command` every `BERTH_*`, `AWS_*` and `CIRCLE*` variable of the environment the
/// tests run in. The suite may itself run on CircleCI: its variables are the job's, not the
/// app's. Variables a test then sets on `command` still reach berth.
pub fn scrub(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("BERTH_") || name.starts_with("AWS_") || name.starts_with("CIRCLE") {
            command.env_remove(&*name);
        }
    }
    command
}

/// Calls `check` every `every` until it returns `Ok`; once `within` has passed, fails the test
/// with the last `Err`, which says what never happened.
pub fn eventually<T>(
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(done) => return done,
            Err(waiting) => assert!(Instant::now() < deadline, "{waiting}"),
        }
        std::thread::sleep(every);
    }
}

/// As [`eventually`], for a check that awaits: the test's runtime goes on while it sleeps.
pub async fn eventually_async<T>(
    within: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(done) => return done,
            Err(waiting) => assert!(Instant::now() < deadline, "{waiting}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// ECS's description of task `arn` in `cluster` once it has stopped, read every `every`; fails
/// the test with `failure` when it has not within `within`.
pub async fn stopped_task(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    arn: &str,
    within: Duration,
    every: Duration,
    failure: &str,
) -> aws_sdk_ecs::types::Task {
    eventually_async(within, every, async || {
        let described = ecs
            .describe_tasks()
            .cluster(cluster)
            .tasks(arn)
            .send()
            .await
            .unwrap();
        let task = described.tasks()[0].clone();
        if task.last_status() == Some("STOPPED") {
            Ok(task)
        } else {
            Err(failure.to_owned())
        }
    })
    .await
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A `PATH` of the system's folders on which `circleci` is not found, as on a machine without
/// the CircleCI CLI: a folder that holds it is replaced by a folder of links to everything else
/// in it. The tests of a job without the CLI use it, also when the suite runs in a CircleCI job,
/// which has `circleci` on its `PATH`.
pub fn path_without_circleci() -> String {
    static MADE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let program = "circleci";
    let system = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let farms = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("path-without-{program}"));
    MADE.get_or_init(|| {
        std::env::split_paths(system)
            .map(|folder| {
                if !folder.join(program).exists() {
                    return folder;
                }
                let farm = farms.join(folder.strip_prefix("/").unwrap_or(&folder));
                let _ = fs_err::create_dir_all(&farm);
                for entry in fs_err::read_dir(&folder).into_iter().flatten().flatten() {
                    if entry.file_name() != program {
                        // Already there from another test binary: fine.
                        let _ =
                            std::os::unix::fs::symlink(entry.path(), farm.join(entry.file_name()));
                    }
                }
                farm
            })
            .map(|folder| folder.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    })
    .clone()
}
