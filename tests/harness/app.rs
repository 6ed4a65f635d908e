//! The app a test deploys: its copy of the example app in a git work tree, seeded in the sandbox,
//! and the edits a test makes to it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{ACCOUNT, ROOT, config_in, sandbox_env, text};

/// `sandboxctl seed` with `args`; it must succeed.
pub fn seed(args: &[&str]) {
    let seeded = Command::new(Path::new(ROOT).join("sandbox/sandboxctl"))
        .arg("seed")
        .args(args)
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "seed failed: {}",
        text(&seeded.stderr)
    );
}

/// One test's copy of the example app and its corner of the sandbox.
pub struct App {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// The environments seeded for it; their services go when the app that seeded them does.
    pub envs: Vec<String>,
    /// This copy seeded the services (another checkout of the app does not).
    owns: bool,
    /// Environments seeded in another account or region: (account, region, cluster).
    pub elsewhere: Vec<(String, String, String)>,
}

impl Drop for App {
    /// Deletes the app's services, so that their tasks stop: a suite that leaves every test's
    /// tasks running loads the machine for the tests after it.
    fn drop(&mut self) {
        if !self.owns {
            return;
        }
        let mut clusters: Vec<(String, String, String)> = self
            .envs
            .iter()
            .map(|env| {
                let cluster = format!("{}-{env}", self.name);
                (ACCOUNT.to_owned(), "us-east-1".to_owned(), cluster)
            })
            .collect();
        clusters.extend(self.elsewhere.iter().cloned());
        let endpoint = self.var("AWS_ENDPOINT_URL");
        // Drop may run inside a test's runtime: the calls get a thread and a runtime of their own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                for (account, region, cluster) in clusters {
                    let ecs =
                        aws_sdk_ecs::Client::new(&config_in(&endpoint, &account, &region).await);
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
        Self::seeded(test, (extra, build), envs, false)
    }

    /// An app whose environment has one service, `web-bg`: a copy of `web` that ECS deploys
    /// blue/green (a one-minute bake time, an alarm that rolls back), behind a load balancer.
    pub fn blue_green(test: &str, extra: &str) -> Self {
        Self::seeded(test, (extra, ""), &["stg"], true)
    }

    fn seeded(test: &str, (extra, build): (&str, &str), envs: &[&str], blue_green: bool) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("e2e-{test}-{:05x}", nanos % 0xfffff);
        let env = sandbox_env();
        let listed = envs.join(",");
        let mut args = vec!["--envs", &listed, "--keep", "--app", &name];
        args.extend(blue_green.then_some("--blue-green"));
        seed(&args);

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
        let services = if blue_green {
            r#"["web-bg"]"#
        } else {
            r#"["web", "devops"]"#
        };
        for env in envs {
            config.push_str(&format!(
                "[env.{env}]\nregion = \"us-east-1\"\ncluster = \"{name}-{env}\"\nservices = {services}\n"
            ));
        }
        fs_err::write(dir.path().join("berth.toml"), config).unwrap();
        let app = Self {
            name,
            dir,
            env,
            envs: envs.iter().map(|env| (*env).to_owned()).collect(),
            owns: true,
            elsewhere: Vec::new(),
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

    pub fn var(&self, key: &str) -> String {
        self.env.iter().find(|(k, _)| k == key).unwrap().1.clone()
    }

    pub fn cluster(&self) -> String {
        format!("{}-stg", self.name)
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
            elsewhere: Vec::new(),
        };
        fs_err::write(other.dir.path().join(file), content).unwrap();
        other.commit("another commit");
        other
    }
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
