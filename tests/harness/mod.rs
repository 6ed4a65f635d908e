//! The harness of the end-to-end tests: one test's copy of the example app against the sandbox,
//! the real `berth` binary, and what the sandbox counts. Each test deploys its own copy (own
//! repository, cluster, families, EFS folder) and reads only its own request counters
//! (`AWS_SDK_UA_APP_ID`), so tests run side by side.

#![allow(dead_code, clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinition};
use serde_json::Value;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The state bucket berth makes in the sandbox's account (`berth-state-<account>-<region>`).
pub const STATE_BUCKET: &str = "berth-state-123456789012-us-east-1";
/// The value of a secret build arg; it must never be printed.
pub const SECRET: &str = "s3cr3t-bundle-token-value";
/// The calls that change a service: none of them may happen again in a rerun of a finished step.
pub const CHANGES: &[&str] = &[
    "ecs:RegisterTaskDefinition",
    "ecs:UpdateService",
    "ecs:RunTask",
];

/// One test's copy of the example app and its corner of the sandbox.
pub struct App {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// The environments seeded for it; their services go when the app that seeded them does.
    pub envs: Vec<String>,
    /// This copy seeded the services (another checkout of the app does not).
    owns: bool,
}

impl Drop for App {
    /// Deletes the app's services, so that their tasks stop: a suite that leaves every test's
    /// tasks running loads the machine for the tests after it.
    fn drop(&mut self) {
        if !self.owns {
            return;
        }
        let clusters: Vec<String> = self
            .envs
            .iter()
            .map(|env| format!("{}-{env}", self.name))
            .collect();
        let endpoint = self.var("AWS_ENDPOINT_URL");
        // Drop may run inside a test's runtime: the calls get a thread and a runtime of their own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new("us-east-1"))
                    .endpoint_url(endpoint)
                    .credentials_provider(aws_sdk_ecs::config::Credentials::for_tests())
                    .load()
                    .await;
                let ecs = aws_sdk_ecs::Client::new(&config);
                for cluster in clusters {
                    for service in ["web", "devops"] {
                        let _ = ecs
                            .delete_service()
                            .cluster(&cluster)
                            .service(service)
                            .force(true)
                            .send()
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

impl App {
    /// Seeds `<name>`'s services and a git work tree of the example app with `extra` settings.
    pub fn new(test: &str, extra: &str) -> Self {
        Self::with_build(test, extra, "")
    }

    /// As [`App::new`], with `build` lines added to the `[build]` table.
    pub fn with_build(test: &str, extra: &str, build: &str) -> Self {
        Self::create(test, extra, build, &["stg"])
    }

    /// As [`App::with_build`], seeded and configured for each of `envs`.
    pub fn create(test: &str, extra: &str, build: &str, envs: &[&str]) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("e2e-{test}-{:05x}", nanos % 0xfffff);
        let env = sandbox_env();
        let seeded = Command::new(Path::new(ROOT).join("sandbox/sandboxctl"))
            .args(["seed", "--envs", &envs.join(","), "--keep", "--app", &name])
            .output()
            .unwrap();
        assert!(
            seeded.status.success(),
            "seed failed: {}",
            text(&seeded.stderr)
        );

        let dir = tempfile::tempdir().unwrap();
        copy_tree(&Path::new(ROOT).join("examples/rails-app"), dir.path());
        // No build cache export unless a test asks for it: Docker 20.10's BuildKit can crash the
        // daemon ("concurrent map writes" in its inline cache export) when builds that share
        // steps export inline cache at once, and the tests build the same app side by side.
        let build = if build.contains("cache") {
            build.to_owned()
        } else {
            format!("cache = false\n{build}")
        };
        let mut config = format!(
            "repository = \"{name}\"\ncontainers = [\"app\"]\n{extra}\n\
             [build]\ntarget = \"release\"\n{build}\n\
             [timeouts]\nrollout = \"3m\"\nmigration = \"3m\"\npoll = \"500ms\"\nheartbeat = \"5s\"\n"
        );
        for env in envs {
            config.push_str(&format!(
                "[env.{env}]\nregion = \"us-east-1\"\ncluster = \"{name}-{env}\"\nservices = [\"web\", \"devops\"]\n"
            ));
        }
        fs_err::write(dir.path().join("berth.toml"), config).unwrap();
        let app = Self {
            name,
            dir,
            env,
            envs: envs.iter().map(|env| (*env).to_owned()).collect(),
            owns: true,
        };
        app.git(&["init", "-q", "-b", "main"]);
        app.commit("app");
        app
    }

    /// Runs `git` in the app's work tree; it must succeed.
    pub fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    }

    /// Commits every change in the work tree.
    pub fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            message,
        ]);
    }

    pub fn deploy(&self, args: &[&str]) -> Run {
        self.deploy_with(args, &[])
    }

    pub fn deploy_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        self.run("deploy", args, vars)
    }

    /// Runs `berth NAME ARGS` (`status`, `rollback`, `unlock`, …) to its end.
    pub fn run(&self, name: &str, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let began = Instant::now();
        let output = self
            .subcommand(name, args, vars)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let run = Run {
            elapsed: began.elapsed(),
            ended: SystemTime::now(),
            code: output.status.code(),
            stderr: text(&output.stderr),
            stdout: text(&output.stdout),
        };
        println!(
            "--- berth {name} {args:?} → {:?} in {:?}\n{}",
            run.code, run.elapsed, run.stderr
        );
        run
    }

    /// `berth deploy --output json` in the app (`--env stg` unless `args` name one), with the
    /// sandbox's environment only.
    pub fn command(&self, args: &[&str], vars: &[(&str, &str)]) -> Command {
        self.subcommand("deploy", args, vars)
    }

    /// `berth NAME --output json` in the app, as [`App::command`] runs `deploy`.
    pub fn subcommand(&self, name: &str, args: &[&str], vars: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command.current_dir(self.dir.path()).arg(name).args(args);
        if !args.contains(&"--output") {
            command.args(["--output", "json"]);
        }
        if !args.contains(&"--env") {
            command.args(["--env", "stg"]);
        }
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            // The suite may itself run on CircleCI: its variables are the job's, not the app's.
            if name.starts_with("BERTH_") || name.starts_with("AWS_") || name.starts_with("CIRCLE")
            {
                command.env_remove(name);
            }
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_SDK_UA_APP_ID", &self.name)
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .envs(vars.iter().copied());
        command
    }

    /// Writes `berth.toml` anew with `edit` applied, and commits it.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let path = self.dir.path().join("berth.toml");
        let config = fs_err::read_to_string(&path).unwrap();
        fs_err::write(&path, edit(config)).unwrap();
        self.commit("config");
    }

    /// Writes `deploy/web.json`, a task definition for `web` with `containers`, and commits it.
    pub fn write_web_task_definition(&self, containers: Value) {
        let file = serde_json::json!({
            "family": format!("{}-stg-web", self.name),
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": containers,
        });
        fs_err::create_dir_all(self.dir.path().join("deploy")).unwrap();
        fs_err::write(self.dir.path().join("deploy/web.json"), file.to_string()).unwrap();
        self.commit("task definition");
    }

    /// The `app` container of a task-definition file: our image, logging to CloudWatch.
    pub fn app_container(&self, environment: Value) -> Value {
        serde_json::json!({
            "name": "app",
            "image": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{}:latest", self.name),
            "essential": true,
            "command": ["bin/rails", "server"],
            "environment": environment,
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": format!("/ecs/{}", self.name),
                "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "file"
            }}
        })
    }

    /// Runs `berth deploy` again and asserts that it made none of the `calls` and pushed nothing.
    pub fn rerun_without(&self, args: &[&str], calls: &[&str]) -> Run {
        let counted = self.counters();
        let run = self.deploy(args);
        self.counters().assert_none_since(&counted, calls);
        run
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.var("AWS_ENDPOINT_URL"))
            .credentials_provider(aws_sdk_ecs::config::Credentials::for_tests())
            .load()
            .await
    }

    pub async fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk_config().await)
    }

    pub fn var(&self, key: &str) -> String {
        self.env.iter().find(|(k, _)| k == key).unwrap().1.clone()
    }

    pub fn cluster(&self) -> String {
        format!("{}-stg", self.name)
    }

    /// This app's AWS calls per operation, plus the registry's manifest pushes of its repository.
    pub fn counters(&self) -> Counters {
        let port = self.var("BERTH_SANDBOX_PORT");
        let mine = admin(
            &port,
            "GET",
            &format!("/_sandbox/counters?app={}", self.name),
            None,
        );
        let all = admin(&port, "GET", "/_sandbox/counters", None);
        // Pushes by tag: the deploys' images, and berth's stage cache images apart.
        let by_tag = format!("registry:push:{}:", self.name);
        let (mut pushes, mut cache_pushes) = (0, 0);
        for (key, count) in all.as_object().into_iter().flatten() {
            let count = count.as_u64().unwrap_or(0);
            match key.strip_prefix(&by_tag) {
                Some(tag) if tag.starts_with(berth::steps::image::cache::TAG_PREFIX) => {
                    cache_pushes += count
                }
                Some(_) => pushes += count,
                None => {}
            }
        }
        Counters {
            calls: mine,
            pushes,
            cache_pushes,
        }
    }

    /// `web` and `devops`, as ECS describes them now.
    pub async fn services(&self) -> Vec<aws_sdk_ecs::types::Service> {
        let out = self
            .ecs()
            .await
            .describe_services()
            .cluster(self.cluster())
            .services("web")
            .services("devops")
            .send()
            .await
            .unwrap();
        out.services().to_vec()
    }

    /// Forgets this app's fault rules.
    pub fn clear_faults(&self) {
        admin(
            &self.var("BERTH_SANDBOX_PORT"),
            "DELETE",
            &format!("/_sandbox/faults?app={}", self.name),
            None,
        );
    }

    /// Starts `berth deploy` (as [`App::command`]) with stdout and stderr piped.
    pub fn spawn(&self, args: &[&str], vars: &[(&str, &str)]) -> std::process::Child {
        self.command(args, vars)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs `berth deploy` and sends it `signal` (`KILL`, `TERM`, `INT`) as soon as a line of its
    /// stderr meets `at`. Fails the test when berth ends or 4 minutes pass first.
    pub fn interrupt(
        &self,
        args: &[&str],
        vars: &[(&str, &str)],
        at: &dyn Fn(&str) -> bool,
        signal: &str,
    ) -> Run {
        self.interrupt_in_flight(args, vars, at, None, signal)
    }

    /// As [`App::interrupt`], once the line was seen and then the sandbox has counted one more
    /// call of `in_flight` (`ecs:RunTask`) from this app: a call the sandbox holds (a latency
    /// fault) is then under way when the signal lands.
    pub fn interrupt_in_flight(
        &self,
        args: &[&str],
        vars: &[(&str, &str)],
        at: &dyn Fn(&str) -> bool,
        in_flight: Option<&str>,
        signal: &str,
    ) -> Run {
        self.deploy_watching(args, vars, at, in_flight, &|pid| {
            let sent = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
        })
    }

    /// Runs `berth deploy` to its end, and calls `act` with its process id once a line of its
    /// stderr meets `at` (and, with `in_flight`, the sandbox counted one more such call). Fails
    /// the test when berth ends or 4 minutes pass first.
    pub fn deploy_watching(
        &self,
        args: &[&str],
        vars: &[(&str, &str)],
        at: &dyn Fn(&str) -> bool,
        in_flight: Option<&str>,
        act: &dyn Fn(u32),
    ) -> Run {
        use std::io::BufRead;
        let began = Instant::now();
        let calls = |operation: &str| self.counters().get(operation);
        let before = in_flight.map(calls);
        let mut child = self.spawn(args, vars);
        let stderr = child.stderr.take().unwrap();
        let (lines, seen) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line.unwrap();
                let _ = lines.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            match seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if at(&line) => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "berth ended or stalled before the line to act at:\n{}",
                        reader.join().unwrap()
                    );
                }
            }
        }
        if let (Some(operation), Some(before)) = (in_flight, before) {
            while calls(operation) == before {
                assert!(Instant::now() < deadline, "`{operation}` was never called");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        act(child.id());
        let output = child.wait_with_output().unwrap();
        let run = Run {
            elapsed: began.elapsed(),
            ended: SystemTime::now(),
            code: output.status.code(),
            stderr: reader.join().unwrap(),
            stdout: text(&output.stdout),
        };
        println!(
            "--- berth deploy {args:?} (acted at a line) → {:?} in {:?}\n{}",
            run.code, run.elapsed, run.stderr
        );
        run
    }

    /// A second work tree of this app (same AWS resources), with `file` changed and committed:
    /// another commit, as another pipeline would deploy it.
    pub fn another_checkout(&self, file: &str, content: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", self.dir.path().display()))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(copied.success());
        let other = Self {
            name: self.name.clone(),
            dir,
            env: self.env.clone(),
            envs: self.envs.clone(),
            owns: false,
        };
        fs_err::write(other.dir.path().join(file), content).unwrap();
        other.commit("another commit");
        other
    }

    async fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::new(&self.sdk_config().await)
    }

    /// An object of berth's state for `env`, as JSON; `None` when there is none.
    pub async fn state_object(&self, env: &str, key: &str) -> Option<Value> {
        let got = self
            .s3()
            .await
            .get_object()
            .bucket(STATE_BUCKET)
            .key(format!("{}/{env}/{key}", self.name))
            .send()
            .await
            .ok()?;
        let bytes = got.body.collect().await.unwrap().into_bytes();
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    /// `stg`'s lock file.
    pub async fn lock(&self) -> Value {
        self.state_object("stg", "lock.json")
            .await
            .expect("no lock file")
    }

    /// The record of a deploy to `stg`.
    pub async fn record(&self, deploy_id: &str) -> Value {
        self.state_object("stg", &format!("deploys/{deploy_id}.json"))
            .await
            .unwrap_or_else(|| panic!("no record of `{deploy_id}`"))
    }

    /// Revisions of `family` tagged with `deploy_id` (ACTIVE or not).
    pub async fn revisions_of_deploy(&self, family: &str, deploy_id: &str) -> Vec<String> {
        let ecs = self.ecs().await;
        let mut found = Vec::new();
        for status in [
            aws_sdk_ecs::types::TaskDefinitionStatus::Active,
            aws_sdk_ecs::types::TaskDefinitionStatus::Inactive,
        ] {
            let listed = ecs
                .list_task_definitions()
                .family_prefix(family)
                .status(status)
                .send()
                .await
                .unwrap();
            for arn in listed.task_definition_arns() {
                let described = ecs
                    .describe_task_definition()
                    .task_definition(arn)
                    .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
                    .send()
                    .await
                    .unwrap();
                if described
                    .tags()
                    .iter()
                    .any(|t| t.key() == Some("berth:deploy-id") && t.value() == Some(deploy_id))
                {
                    found.push(arn.clone());
                }
            }
        }
        found
    }

    /// Adds a sandbox fault rule that only this app's calls meet.
    pub fn fault(&self, mut rule: Value) -> Value {
        rule["app"] = Value::from(self.name.clone());
        admin(
            &self.var("BERTH_SANDBOX_PORT"),
            "POST",
            "/_sandbox/faults",
            Some(&rule),
        )
    }

    /// Every task ECS knows in the cluster, running or stopped, described.
    pub async fn tasks(&self) -> Vec<aws_sdk_ecs::types::Task> {
        let ecs = self.ecs().await;
        let mut arns = std::collections::BTreeSet::new();
        for status in [
            aws_sdk_ecs::types::DesiredStatus::Running,
            aws_sdk_ecs::types::DesiredStatus::Stopped,
        ] {
            let listed = ecs
                .list_tasks()
                .cluster(self.cluster())
                .desired_status(status)
                .send()
                .await
                .unwrap();
            arns.extend(listed.task_arns().iter().cloned());
        }
        if arns.is_empty() {
            return Vec::new();
        }
        ecs.describe_tasks()
            .cluster(self.cluster())
            .set_tasks(Some(arns.into_iter().collect()))
            .send()
            .await
            .unwrap()
            .tasks()
            .to_vec()
    }

    /// Every task ECS knows (running or stopped) that `deploy_id` started, by ARN.
    pub async fn tasks_started_by(&self, deploy_id: &str) -> Vec<String> {
        self.tasks()
            .await
            .iter()
            .filter(|t| t.started_by() == Some(deploy_id))
            .filter_map(|t| t.task_arn().map(str::to_owned))
            .collect()
    }

    /// Scales `web` and `devops` to 0 and waits (up to 90 s) until every task has stopped, so
    /// that no container holds an image.
    pub async fn stop_services(&self) {
        let ecs = self.ecs().await;
        for service in ["web", "devops"] {
            ecs.update_service()
                .cluster(self.cluster())
                .service(service)
                .desired_count(0)
                .send()
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let live: Vec<String> = self
                .tasks()
                .await
                .iter()
                .filter(|task| task.last_status() != Some("STOPPED"))
                .filter_map(|task| task.task_arn().map(str::to_owned))
                .collect();
            if live.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "tasks still running: {live:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn service_task_definitions(&self) -> Vec<String> {
        self.services()
            .await
            .iter()
            .map(|s| s.task_definition().unwrap().to_owned())
            .collect()
    }
}

pub struct Run {
    pub elapsed: Duration,
    pub ended: SystemTime,
    pub code: Option<i32>,
    pub stderr: String,
    pub stdout: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts that each of `steps` reported its result already in AWS.
    pub fn assert_skipped(&self, steps: &[&str]) {
        for step in steps {
            assert!(
                self.stderr.contains(&format!("{step}: already done")),
                "{step} was not skipped"
            );
        }
    }
}

pub struct Counters {
    pub calls: Value,
    /// Manifests pushed by tag to the app's repository, berth's cache images left out.
    pub pushes: u64,
    /// Manifests pushed to the app's repository as `berth-cache-…` tags.
    pub cache_pushes: u64,
}

impl Counters {
    pub fn get(&self, key: &str) -> u64 {
        self.calls[key].as_u64().unwrap_or(0)
    }

    /// Calls per operation since `before`, the operations called at all.
    pub fn since(&self, before: &Counters) -> std::collections::BTreeMap<String, u64> {
        self.calls
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, _)| (key.clone(), self.get(key) - before.get(key)))
            .filter(|(_, calls)| *calls > 0)
            .collect()
    }

    /// Asserts that none of `operations` was called, and nothing was pushed, since `before`.
    pub fn assert_none_since(&self, before: &Counters, operations: &[&str]) {
        for operation in operations {
            assert_eq!(
                self.get(operation),
                before.get(operation),
                "{operation} was called again"
            );
        }
        assert_eq!(self.pushes, before.pushes, "the image was pushed again");
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `export K=V` lines of `sandboxctl env`.
pub fn sandbox_env() -> Vec<(String, String)> {
    let out = Command::new(Path::new(ROOT).join("sandbox/sandboxctl"))
        .arg("env")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sandboxctl env: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One call to the sandbox's admin API (`/_sandbox/…`), its JSON answer.
pub fn admin(port: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap_or_else(|e| {
            panic!("the sandbox is not running on port {port}: {e}; run `sandbox/sandboxctl start`")
        });
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap()
}

pub fn copy_tree(from: &Path, to: &Path) {
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs_err::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else if entry.file_name() != "berth.toml" {
            fs_err::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn container<'a>(definition: &'a TaskDefinition, name: &str) -> &'a ContainerDefinition {
    definition
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(name))
        .unwrap_or_else(|| panic!("{:?} has no container `{name}`", definition.family()))
}

pub async fn task_definition(ecs: &aws_sdk_ecs::Client, arn: &str) -> TaskDefinition {
    ecs.describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .clone()
}
