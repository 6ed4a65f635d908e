//! `berth deploy` end to end against the sandbox: the real binary, a real build and push, real
//! ECS tasks. Each test deploys its own copy of the example app (own repository, cluster,
//! families, EFS folder) and reads only its own request counters (`AWS_SDK_UA_APP_ID`), so tests
//! run side by side. Needs the sandbox (`scripts/test` starts it).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ecs::types::{ContainerDefinition, TaskDefinition};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The value of a secret build arg; it must never be printed.
const SECRET: &str = "s3cr3t-bundle-token-value";
/// The calls that change a service: none of them may happen again in a rerun of a finished step.
const CHANGES: &[&str] = &[
    "ecs:RegisterTaskDefinition",
    "ecs:UpdateService",
    "ecs:RunTask",
];

/// One test's copy of the example app and its corner of the sandbox.
struct App {
    name: String,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl App {
    /// Seeds `<name>`'s services and a git work tree of the example app with `extra` settings.
    fn new(test: &str, extra: &str) -> Self {
        Self::with_build(test, extra, "")
    }

    /// As [`App::new`], with `build` lines added to the `[build]` table.
    fn with_build(test: &str, extra: &str, build: &str) -> Self {
        Self::create(test, extra, build, &["stg"])
    }

    /// As [`App::with_build`], seeded and configured for each of `envs`.
    fn create(test: &str, extra: &str, build: &str, envs: &[&str]) -> Self {
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
        let app = Self { name, dir, env };
        app.git(&["init", "-q", "-b", "main"]);
        app.commit("app");
        app
    }

    /// Runs `git` in the app's work tree; it must succeed.
    fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    }

    /// Commits every change in the work tree.
    fn commit(&self, message: &str) {
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

    fn deploy(&self, args: &[&str]) -> Run {
        self.deploy_with(args, &[])
    }

    fn deploy_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let began = Instant::now();
        let output = self.command(args, vars).output().unwrap();
        let run = Run {
            elapsed: began.elapsed(),
            ended: SystemTime::now(),
            code: output.status.code(),
            stderr: text(&output.stderr),
            stdout: text(&output.stdout),
        };
        println!(
            "--- berth deploy {args:?} → {:?} in {:?}\n{}",
            run.code, run.elapsed, run.stderr
        );
        run
    }

    /// `berth deploy --output json` in the app (`--env stg` unless `args` name one), with the
    /// sandbox's environment only.
    fn command(&self, args: &[&str], vars: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command
            .current_dir(self.dir.path())
            .args(["deploy", "--output", "json"])
            .args(args);
        if !args.contains(&"--env") {
            command.args(["--env", "stg"]);
        }
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("BERTH_") || name.starts_with("AWS_") || name == "CIRCLE_SHA1" {
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
    fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let path = self.dir.path().join("berth.toml");
        let config = fs_err::read_to_string(&path).unwrap();
        fs_err::write(&path, edit(config)).unwrap();
        self.commit("config");
    }

    /// Writes `deploy/web.json`, a task definition for `web` with `containers`, and commits it.
    fn write_web_task_definition(&self, containers: Value) {
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
    fn app_container(&self, environment: Value) -> Value {
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
    fn rerun_without(&self, args: &[&str], calls: &[&str]) -> Run {
        let counted = self.counters();
        let run = self.deploy(args);
        self.counters().assert_none_since(&counted, calls);
        run
    }

    async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.var("AWS_ENDPOINT_URL"))
            .credentials_provider(aws_sdk_ecs::config::Credentials::for_tests())
            .load()
            .await
    }

    async fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk_config().await)
    }

    fn var(&self, key: &str) -> String {
        self.env.iter().find(|(k, _)| k == key).unwrap().1.clone()
    }

    fn cluster(&self) -> String {
        format!("{}-stg", self.name)
    }

    /// This app's AWS calls per operation, plus the registry's manifest pushes of its repository.
    fn counters(&self) -> Counters {
        let port = self.var("BERTH_SANDBOX_PORT");
        let mine = admin(
            &port,
            "GET",
            &format!("/_sandbox/counters?app={}", self.name),
            None,
        );
        let all = admin(&port, "GET", "/_sandbox/counters", None);
        let pushes = all[format!("registry:push:{}", self.name)]
            .as_u64()
            .unwrap_or(0);
        Counters {
            calls: mine,
            pushes,
        }
    }

    /// `web` and `devops`, as ECS describes them now.
    async fn services(&self) -> Vec<aws_sdk_ecs::types::Service> {
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

    /// Adds a sandbox fault rule that only this app's calls meet.
    fn fault(&self, mut rule: Value) -> Value {
        rule["app"] = Value::from(self.name.clone());
        admin(
            &self.var("BERTH_SANDBOX_PORT"),
            "POST",
            "/_sandbox/faults",
            Some(&rule),
        )
    }

    /// Every task ECS knows (running or stopped) that `deploy_id` started, by ARN.
    async fn tasks_started_by(&self, deploy_id: &str) -> Vec<String> {
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
        let described = ecs
            .describe_tasks()
            .cluster(self.cluster())
            .set_tasks(Some(arns.into_iter().collect()))
            .send()
            .await
            .unwrap();
        described
            .tasks()
            .iter()
            .filter(|t| t.started_by() == Some(deploy_id))
            .filter_map(|t| t.task_arn().map(str::to_owned))
            .collect()
    }

    async fn service_task_definitions(&self) -> Vec<String> {
        self.services()
            .await
            .iter()
            .map(|s| s.task_definition().unwrap().to_owned())
            .collect()
    }
}

struct Run {
    elapsed: Duration,
    ended: SystemTime,
    code: Option<i32>,
    stderr: String,
    stdout: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Asserts that each of `steps` reported its result already in AWS.
    fn assert_skipped(&self, steps: &[&str]) {
        for step in steps {
            assert!(
                self.stderr.contains(&format!("{step}: already done")),
                "{step} was not skipped"
            );
        }
    }
}

struct Counters {
    calls: Value,
    pushes: u64,
}

impl Counters {
    fn get(&self, key: &str) -> u64 {
        self.calls[key].as_u64().unwrap_or(0)
    }

    /// Asserts that none of `operations` was called, and nothing was pushed, since `before`.
    fn assert_none_since(&self, before: &Counters, operations: &[&str]) {
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `export K=V` lines of `sandboxctl env`.
fn sandbox_env() -> Vec<(String, String)> {
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
fn admin(port: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
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

fn copy_tree(from: &Path, to: &Path) {
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

fn container<'a>(definition: &'a TaskDefinition, name: &str) -> &'a ContainerDefinition {
    definition
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(name))
        .unwrap_or_else(|| panic!("{:?} has no container `{name}`", definition.family()))
}

async fn task_definition(ecs: &aws_sdk_ecs::Client, arn: &str) -> TaskDefinition {
    ecs.describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_the_example_in_one_command_and_a_rerun_skips_everything() {
    let app = App::with_build(
        "ok",
        "env_tag = \"stg-latest\"\n",
        "secret_args = [\"BUNDLE_TOKEN\"]",
    );
    let before = app.service_task_definitions().await;
    let seeded = app.counters();
    // Debug logs on, and a secret build arg: its value must appear nowhere.
    let run = app.deploy_with(&[], &[("BUNDLE_TOKEN", SECRET), ("BERTH_LOG", "debug")]);
    assert_eq!(run.code, Some(0), "deploy failed");
    assert!(
        !run.stderr.contains(SECRET) && !run.stdout.contains(SECRET),
        "a secret leaked"
    );
    let report = run.json();

    // Built and pushed: ECR holds the commit's tag with the digest the revisions are pinned to.
    let digest = report["image"]["digest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:"));
    let ecr = aws_sdk_ecr::Client::new(&app.sdk_config().await);
    // The image is named as ECR names the repository: its `repositoryUri`.
    let repositories = ecr
        .describe_repositories()
        .repository_names(&app.name)
        .send()
        .await
        .unwrap();
    let uri = repositories.repositories()[0].repository_uri().unwrap();
    let pinned = format!("{uri}@{digest}");
    assert_eq!(report["image"]["uri"], pinned.as_str());
    assert_eq!(app.counters().pushes, seeded.pushes + 1);
    let latest = ecr
        .describe_images()
        .repository_name(&app.name)
        .image_ids(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_tag("stg-latest")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        latest.image_details()[0].image_digest(),
        Some(digest),
        "`stg-latest` not moved"
    );

    // web and devops on new revisions, pinned by digest, every other field kept.
    let ecs = app.ecs().await;
    let after = app.service_task_definitions().await;
    let mut sidecars_checked = 0;
    for (old_arn, new_arn) in before.iter().zip(&after) {
        assert_ne!(old_arn, new_arn);
        let old = task_definition(&ecs, old_arn).await;
        let new = task_definition(&ecs, new_arn).await;
        assert_eq!(container(&new, "app").image(), Some(pinned.as_str()));
        let mut expected_app = container(&old, "app").clone();
        expected_app.image = Some(pinned.clone());
        assert_eq!(
            container(&new, "app"),
            &expected_app,
            "app container changed beyond its image"
        );
        for (name, field_old, field_new) in [
            ("cpu", old.cpu(), new.cpu()),
            ("memory", old.memory(), new.memory()),
            ("taskRoleArn", old.task_role_arn(), new.task_role_arn()),
            (
                "executionRoleArn",
                old.execution_role_arn(),
                new.execution_role_arn(),
            ),
        ] {
            assert_eq!(field_old, field_new, "{name} changed");
        }
        assert_eq!(old.volumes(), new.volumes());
        assert_eq!(old.network_mode(), new.network_mode());
        assert_eq!(old.runtime_platform(), new.runtime_platform());
        assert_eq!(old.ephemeral_storage(), new.ephemeral_storage());
        assert_eq!(
            old.requires_compatibilities(),
            new.requires_compatibilities()
        );
        assert_eq!(
            old.container_definitions().len(),
            new.container_definitions().len(),
            "containers added or dropped"
        );
        // Containers that are not ours are untouched, whatever the seed gives each family.
        for other in old.container_definitions() {
            if other.name() != Some("app") {
                assert_eq!(container(&new, other.name().unwrap()), other);
            }
        }
        if old.family().is_some_and(|family| family.ends_with("-web")) {
            // The seed gives `web` a Datadog sidecar (`container` fails if it has none). It is
            // not ours: its definition, image included, is unchanged.
            assert_eq!(
                container(&old, "datadog-agent"),
                container(&new, "datadog-agent")
            );
            assert_eq!(
                container(&new, "datadog-agent").image(),
                Some("public.ecr.aws/datadog/agent:7")
            );
            sidecars_checked += 1;
        }
    }
    assert_eq!(sidecars_checked, 1, "`web` was not among the services");
    for service in &app.services().await {
        let [deployment] = service.deployments() else {
            panic!("{:?} has several deployments", service.service_name());
        };
        assert_eq!(
            deployment.rollout_state().map(|s| s.as_str()),
            Some("COMPLETED")
        );
        assert_eq!(deployment.running_count(), deployment.desired_count());
    }

    // The migration really ran: its log lines are in berth's output, the schema changed.
    assert!(
        run.stderr
            .contains("migrate | == 20260201000000 add_email_to_users: migrated")
    );
    assert_eq!(report["migration"]["exit_codes"]["app"], 0);
    let schema = Path::new(ROOT)
        .join("sandbox/.state/efs/fs-0b1e2a7c9d4f35e61")
        .join(format!("{}-stg", app.name))
        .join("schema.rb");
    assert!(
        fs_err::read_to_string(schema)
            .unwrap()
            .contains("add_column \"users\", \"email\"")
    );

    // A rerun of the completed deploy finds everything done, changes nothing, and is quick.
    let counted = app.counters();
    let rerun = app.deploy_with(&[], &[("BUNDLE_TOKEN", SECRET)]);
    assert_eq!(rerun.code, Some(0));
    let again = app.counters();
    rerun.assert_skipped(&["build", "push", "register", "rollout", "migrate"]);
    again.assert_none_since(&counted, CHANGES);
    assert_eq!(rerun.json()["revisions"], report["revisions"]);
    assert!(
        rerun.elapsed < Duration::from_secs(2),
        "rerun took {:?}",
        rerun.elapsed
    );

    // Ten newer revisions later (other deploys, a console edit), a rerun still finds this
    // deploy's revision, named by the deploy record: no search, no tagging API.
    let web_family = format!("{}-stg-web", app.name);
    for n in 0..10 {
        ecs.register_task_definition()
            .family(&web_family)
            .memory("128")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("berth-sandbox/base:latest")
                    .environment(
                        aws_sdk_ecs::types::KeyValuePair::builder()
                            .name("N")
                            .value(n.to_string())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let counted = app.counters();
    let late = app.deploy(&[]);
    assert_eq!(late.code, Some(0));
    let again = app.counters();
    again.assert_none_since(&counted, CHANGES);
    assert_eq!(
        again.get("tagging:GetResources"),
        counted.get("tagging:GetResources")
    );
    assert_eq!(
        again.get("ecs:ListTaskDefinitions"),
        counted.get("ecs:ListTaskDefinitions")
    );
    assert_eq!(late.json()["revisions"], report["revisions"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_migration_before_rollout_leaves_services_untouched_and_is_not_rerun() {
    let app = App::new(
        "mig",
        "migrate = \"before\"\n[environment]\nMIGRATION_FAIL = \"1\"\n",
    );
    let before = app.service_task_definitions().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(3), "expected the migration-failed exit code");
    assert!(run.stderr.contains("`app` exited 1"), "no exit code shown");
    assert!(
        run.stderr.contains("failed (MIGRATION_FAIL=1)"),
        "no log tail shown"
    );
    assert!(run.stderr.contains("last log lines:"));
    // The JSON record says how far the deploy got, and how it failed.
    let record = run.json();
    assert_eq!(record["error"]["exit_code"], 3);
    let statuses: Vec<(String, String)> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("build", "done"),
            ("push", "done"),
            ("register", "done"),
            ("migrate", "failed")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(
        app.service_task_definitions().await,
        before,
        "services changed"
    );

    let rerun = app.rerun_without(&[], CHANGES);
    assert_eq!(rerun.code, Some(3));
    assert!(rerun.stderr.contains("--retry-migration"));
    rerun.assert_skipped(&["build", "push", "register"]);
    assert_eq!(app.service_task_definitions().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn crashing_image_is_reported_as_rolled_back_within_seconds() {
    let app = App::new("crash", "[environment]\nCRASH_ON_BOOT = \"1\"\n");
    let before = app.service_task_definitions().await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(1), "expected the deploy-failed exit code");
    assert!(
        run.stderr.contains("rollout of `web` failed"),
        "no failure named"
    );
    assert!(
        run.stderr
            .contains("deployment failed: tasks failed to start"),
        "no events shown"
    );
    assert!(
        run.stderr.contains("app exit 1"),
        "no exit codes of the stopped tasks"
    );

    // berth noticed within 10 s of the sandbox marking the deployment failed.
    let ecs = app.ecs().await;
    let web = ecs
        .describe_services()
        .cluster(app.cluster())
        .services("web")
        .send()
        .await
        .unwrap();
    let failed_at = web.services()[0]
        .events()
        .iter()
        .find(|e| {
            e.message()
                .unwrap_or_default()
                .contains("deployment failed")
        })
        .and_then(|e| e.created_at())
        .unwrap();
    let failed_at = UNIX_EPOCH + Duration::from_secs_f64(failed_at.as_secs_f64());
    let lag = run.ended.duration_since(failed_at).unwrap_or_default();
    assert!(
        lag < Duration::from_secs(10),
        "berth reported the failure {lag:?} after ECS"
    );

    // The rerun rebuilds nothing and registers nothing; it tries the rollout again, honestly.
    let rerun = app.rerun_without(&[], &["ecs:RegisterTaskDefinition", "ecs:RunTask"]);
    assert_eq!(rerun.code, Some(1));
    // web rolled back to its old revision; devops took the new one (it does not crash).
    assert_eq!(app.service_task_definitions().await[0], before[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_the_revision_from_a_task_definition_file_with_variables() {
    let app = App::new(
        "file",
        "migrate = \"skip\"\nservices = [\"web\"]\ntask_definition_vars = [\"RELEASE_CHANNEL\"]\n[task_definitions]\nweb = \"deploy/web.json\"\n",
    );
    let family = format!("{}-stg-web", app.name);
    app.write_web_task_definition(serde_json::json!([app.app_container(
        serde_json::json!([{"name": "RELEASE_CHANNEL", "value": "${RELEASE_CHANNEL}"}])
    )]));

    let missing = app.deploy(&[]);
    assert_eq!(
        missing.code,
        Some(2),
        "a missing variable is a settings error"
    );
    assert!(
        missing.stderr.contains("`${RELEASE_CHANNEL}`"),
        "{}",
        missing.stderr
    );

    let run = app.deploy_with(&[], &[("RELEASE_CHANNEL", "beta \"quoted\"")]);
    assert_eq!(run.code, Some(0));
    let ecs = app.ecs().await;
    let [web] = &app.service_task_definitions().await[..1] else {
        unreachable!()
    };
    let revision = task_definition(&ecs, web).await;
    assert_eq!(revision.family(), Some(family.as_str()));
    let env = container(&revision, "app").environment();
    assert_eq!(env[0].value(), Some("beta \"quoted\""));
    assert!(
        container(&revision, "app")
            .image()
            .unwrap()
            .contains("@sha256:")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_task_whose_answers_were_lost_starts_one_task_and_the_rerun_attaches_to_it() {
    let app = App::new("claim", "migrate = \"before\"\n");
    let before = app.service_task_definitions().await;
    // ECS starts the task on every attempt the SDK makes, and every answer is lost: berth cannot
    // know the task started. The SDK's retries and the rerun all pass the attempt's clientToken,
    // which the deploy record holds, so ECS starts one task.
    let rule = app.fault(serde_json::json!({
        "service": "ecs", "operation": "RunTask", "error": "lost", "first": 5
    }));
    assert_eq!(rule["first"], 5, "{rule}");
    let run = app.deploy(&[]);
    assert_ne!(run.code, Some(0), "the migration's start is unknown");
    assert_eq!(
        app.service_task_definitions().await,
        before,
        "services changed before the migration was known to succeed"
    );

    let counted = app.counters();
    let rerun = app.deploy(&[]);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert!(
        rerun.stderr.contains("resuming migration attempt 0"),
        "{}",
        rerun.stderr
    );
    assert!(rerun.stderr.contains("add_email_to_users: migrated"));
    assert_eq!(
        app.counters().get("ecs:RunTask"),
        counted.get("ecs:RunTask") + 1,
        "one RunTask, with the claimed attempt's token"
    );
    let deploy_id = rerun.json()["deploy_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.tasks_started_by(&deploy_id).await.len(),
        1,
        "one migration task for the deploy"
    );
    assert_ne!(
        app.service_task_definitions().await,
        before,
        "rolled out after the migration"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_essential_sidecar_that_ecs_kills_at_the_end_does_not_fail_the_migration() {
    let app = App::new("sidecar", "[task_definitions]\nweb = \"deploy/web.json\"\n");
    // `sleep` as PID 1 has no SIGTERM handler: when `app` exits, ECS's SIGTERM does nothing and
    // the SIGKILL after `stopTimeout` ends it with 137.
    app.write_web_task_definition(serde_json::json!([
        app.app_container(serde_json::json!([])),
        {
            "name": "proxy",
            "image": "berth-sandbox/base:latest",
            "essential": true,
            "command": ["sleep", "3600"],
            "stopTimeout": 2
        }
    ]));
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(0), "the migration container exited 0");
    let record = run.json();
    assert_eq!(record["migration"]["exit_codes"]["app"], 0);
    assert_eq!(record["migration"]["exit_codes"]["proxy"], 137);
    assert!(
        run.stderr.contains(
            "essential container `proxy` was stopped by ECS when the task ended (SIGKILL after its `stopTimeout`, exit 137)"
        ),
        "the killed sidecar is reported"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_with_another_deployment_controller_is_refused_before_any_change() {
    let app = App::new("ctrl", "");
    let ecs = app.ecs().await;
    let web = app.services().await.remove(0);
    ecs.create_service()
        .cluster(app.cluster())
        .service_name("blue")
        .task_definition(web.task_definition().unwrap())
        .desired_count(0)
        .deployment_controller(
            aws_sdk_ecs::types::DeploymentController::builder()
                .r#type(aws_sdk_ecs::types::DeploymentControllerType::CodeDeploy)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    app.edit_config(|config| {
        config.replace(
            "services = [\"web\", \"devops\"]",
            "services = [\"web\", \"blue\"]",
        )
    });
    let before = app.service_task_definitions().await;
    let run = app.rerun_without(&[], CHANGES);
    assert_eq!(run.code, Some(2), "a settings error");
    assert!(
        run.stderr
            .contains("service `blue` uses the `CODE_DEPLOY` deployment controller"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"));
    assert!(!run.stderr.contains("build: started"), "nothing was built");
    assert_eq!(app.service_task_definitions().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_a_deploy_as_ctrl_c_does() {
    use std::io::BufRead;

    let app = App::new("term", "");
    let mut child = app
        .command(&[], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
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
    // CircleCI cancels a job with SIGTERM; send it while the rollout is under way.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let line = seen
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the rollout never started");
        if line.ends_with("rollout: started") {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    println!("--- berth deploy, SIGTERM during the rollout\n{stderr}");
    assert_eq!(output.status.code(), Some(130), "exit 130, as after Ctrl-C");
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    let record: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["error"]["exit_code"], 130);
    let last = record["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["step"], "rollout");
    assert_eq!(last["status"], "interrupted");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_env_tag_that_cannot_be_moved_is_a_warning_and_the_deploy_succeeds() {
    let app = App::new("envtag", "env_tag = \"stg-latest\"\nmigrate = \"skip\"\n");
    let before = app.service_task_definitions().await;
    // Every attempt at the tag move fails; the build's push goes to the registry, not PutImage.
    app.fault(serde_json::json!({
        "service": "ecr", "operation": "PutImage", "error": "500", "first": 10
    }));
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(0), "the deploy landed");
    assert!(
        run.stderr
            .contains("warning: the deploy landed, but tag `stg-latest` was not moved"),
        "{}",
        run.stderr
    );
    let warnings = run.json()["warnings"].clone();
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.contains("`stg-latest`")),
        "{warnings}"
    );
    assert_ne!(
        app.service_task_definitions().await,
        before,
        "services are on the new revisions"
    );
}

/// The image names a build, not a deploy: `prd` after `stg` with the same build settings promotes
/// the image without building or pushing it; other build args make another image.
#[tokio::test(flavor = "multi_thread")]
async fn a_prd_deploy_after_stg_promotes_the_same_image() {
    let app = App::create("promote", "migrate = \"skip\"\n", "", &["stg", "prd"]);
    let seeded = app.counters();
    let stg = app.deploy(&[]);
    assert_eq!(stg.code, Some(0));
    let stg_image = stg.json()["image"].clone();
    assert_eq!(app.counters().pushes, seeded.pushes + 1);

    let prd = app.rerun_without(&["--env", "prd"], &["ecr:GetAuthorizationToken"]);
    assert_eq!(prd.code, Some(0));
    prd.assert_skipped(&["build", "push"]);
    assert_eq!(prd.json()["image"], stg_image, "the same tag and digest");
    assert_ne!(
        prd.json()["deploy_id"],
        stg.json()["deploy_id"],
        "another deploy"
    );

    app.edit_config(|config| {
        format!("{config}[env.prd.build]\nargs = {{ RAILS_LOG_LEVEL = \"warn\" }}\n")
    });
    let other = app.deploy(&["--env", "prd"]);
    assert_eq!(other.code, Some(0));
    assert_ne!(
        other.json()["image"]["tag"],
        stg_image["tag"],
        "other build args, another image"
    );
    assert_eq!(app.counters().pushes, seeded.pushes + 2);
}

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

/// CircleCI's remote Docker is a TLS endpoint: berth builds and pushes through the sandbox's TLS
/// front, and without the certificates it stops before changing anything (exit 4).
#[tokio::test(flavor = "multi_thread")]
async fn builds_and_pushes_through_docker_over_tls() {
    let app = App::new("tls", "migrate = \"skip\"\n");
    let host = app.var("BERTH_SANDBOX_DOCKER_TLS_HOST");
    let certs = app.var("BERTH_SANDBOX_DOCKER_CERT_PATH");
    // A deploy through the TLS front, with the certificates in `folder`.
    let over_tls = |folder: &str| {
        app.deploy_with(
            &[],
            &[
                ("DOCKER_HOST", &host),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", folder),
            ],
        )
    };
    let before = app.service_task_definitions().await;

    let missing = tempfile::tempdir().unwrap();
    let counted = app.counters();
    let without = over_tls(missing.path().to_str().unwrap());
    assert_eq!(without.code, Some(4), "{}", without.stderr);
    assert!(
        without
            .stderr
            .contains("error: `DOCKER_TLS_VERIFY` is set, but `"),
        "{}",
        without.stderr
    );
    assert!(without.stderr.contains("ca.pem"));
    app.counters().assert_none_since(&counted, CHANGES);
    assert_eq!(app.service_task_definitions().await, before);

    // The wrong CA: the engine's certificate is not signed by this `ca.pem`.
    let wrong = tempfile::tempdir().unwrap();
    for file in ["cert.pem", "key.pem"] {
        fs_err::copy(Path::new(&certs).join(file), wrong.path().join(file)).unwrap();
    }
    fs_err::copy(
        Path::new(&certs).join("cert.pem"),
        wrong.path().join("ca.pem"),
    )
    .unwrap();
    let untrusted = over_tls(wrong.path().to_str().unwrap());
    assert_eq!(untrusted.code, Some(4), "{}", untrusted.stderr);
    assert!(
        untrusted.stderr.contains(&format!(
            "error: cannot reach the Docker engine at `{host}` over TLS"
        )),
        "{}",
        untrusted.stderr
    );
    assert!(
        untrusted
            .stderr
            .contains("hint: `DOCKER_CERT_PATH` must hold")
    );
    app.counters().assert_none_since(&counted, CHANGES);

    let seeded = app.counters();
    let run = over_tls(&certs);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("build: done"), "built over TLS");
    assert_eq!(app.counters().pushes, seeded.pushes + 1);
    assert_ne!(app.service_task_definitions().await, before);
}

impl App {
    /// Sets `web`'s circuit breaker: `None` turns it off.
    async fn set_web_breaker(&self, rollback: Option<bool>) {
        let breaker = aws_sdk_ecs::types::DeploymentCircuitBreaker::builder()
            .enable(rollback.is_some())
            .rollback(rollback.unwrap_or(false))
            .build();
        self.ecs()
            .await
            .update_service()
            .cluster(self.cluster())
            .service("web")
            .deployment_configuration(
                aws_sdk_ecs::types::DeploymentConfiguration::builder()
                    .deployment_circuit_breaker(breaker)
                    .maximum_percent(200)
                    .minimum_healthy_percent(100)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
}

/// Without a circuit breaker ECS replaces a crashing task for ever; berth fails at the breaker's
/// threshold, with the events and exit codes, long before `timeouts.rollout` (3 minutes here).
#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_image_without_a_circuit_breaker_fails_in_bounded_time() {
    let app = App::new(
        "nobreaker",
        "migrate = \"skip\"\n[environment]\nCRASH_ON_BOOT = \"1\"\n",
    );
    app.set_web_breaker(None).await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("the service has no circuit breaker"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("app exit 1"), "exit codes shown");
    assert!(
        run.elapsed < Duration::from_secs(90),
        "failed after {:?}, not at the timeout",
        run.elapsed
    );
    assert!(run.stderr.contains("where each service ends:"));
    let record = run.json();
    let web = record["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web")
        .unwrap()
        .clone();
    assert_eq!(web["rollout_state"], "FAILED");
    assert_eq!(web["ends_on"], web["task_definition"], "ECS left it there");
}

/// A breaker without rollback leaves the FAILED deployment in place; the rerun of that deploy
/// says so and starts a new deployment of the same revision instead of failing at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deployment_left_in_place_is_started_again_by_the_rerun() {
    // `on_failure = "leave"`: the failed deployment stays for the rerun to find.
    let app = App::new(
        "again",
        "migrate = \"skip\"\non_failure = \"leave\"\n[environment]\nCRASH_ON_BOOT = \"1\"\n",
    );
    app.set_web_breaker(Some(false)).await;
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("is FAILED"), "{}", run.stderr);

    let counted = app.counters();
    let rerun = app.deploy(&[]);
    assert_eq!(rerun.code, Some(1), "still crashing");
    assert!(
        rerun
            .stderr
            .contains("FAILED and ECS did not roll it back (the circuit breaker's rollback is off): starting a new deployment of it"),
        "{}",
        rerun.stderr
    );
    let again = app.counters();
    assert_eq!(
        again.get("ecs:UpdateService"),
        counted.get("ecs:UpdateService") + 1,
        "one new deployment, of web"
    );
    again.assert_none_since(&counted, &["ecs:RegisterTaskDefinition"]);
}
