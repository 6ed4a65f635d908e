//! The CircleCI orb end to end, and CircleCI OIDC in berth: the packed orb's `install` and
//! `deploy` steps run in a shell as a CircleCI job runs them (its variables, an OIDC token, the
//! remote Docker's TLS endpoint, no AWS keys), against the sandbox and a local release server
//! serving this build of berth.
//!
//! Needs the orb's venv, which `orb/check` makes (the README's test command runs it first).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::common::eventually;
use harness::{App, ROOT, admin, text};
use serde_json::{Value, json};

/// The orb's venv Python, which has PyYAML for the packer.
fn orb_python() -> PathBuf {
    let python = Path::new(ROOT).join("orb/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing; run `orb/check` first (it makes the orb's venv)",
        python.display()
    );
    python
}

/// Packs `orb/src` into `folder/orb.yml`, as the release would publish it.
fn pack(folder: &Path) -> PathBuf {
    let packed = folder.join("orb.yml");
    let out = Command::new(orb_python())
        .arg(Path::new(ROOT).join("orb/tools/pack.py"))
        .arg(Path::new(ROOT).join("orb/src"))
        .arg(&packed)
        .output()
        .unwrap();
    assert!(out.status.success(), "pack: {}", text(&out.stderr));
    packed
}

/// The run steps of one command of the packed orb, its parameters put in as CircleCI does.
fn steps(packed: &Path, command: &str, parameters: &[(&str, &str)]) -> Vec<Value> {
    let out = Command::new(orb_python())
        .arg(Path::new(ROOT).join("orb/tools/steps.py"))
        .arg(packed)
        .arg(command)
        .args(parameters.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .unwrap();
    assert!(out.status.success(), "steps: {}", text(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A local HTTP server for `folder`, as GitHub serves release assets; stopped on drop.
struct ReleaseServer {
    child: Child,
    url: String,
}

impl ReleaseServer {
    fn start(folder: &Path) -> Self {
        let port_file = folder.join("port");
        let child = Command::new("python3")
            .args([
                "-c",
                "import functools, http.server, sys\n\
                 handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
                 server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)\n\
                 open(sys.argv[2] + '.tmp', 'w').write(str(server.server_address[1]))\n\
                 __import__('os').rename(sys.argv[2] + '.tmp', sys.argv[2])\n\
                 server.serve_forever()",
            ])
            .arg(folder)
            .arg(&port_file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Made first, so that a server that never answers is stopped with it.
        let mut server = Self {
            child,
            url: String::new(),
        };
        let port = eventually(Duration::from_secs(5), Duration::from_millis(50), || {
            fs_err::read_to_string(&port_file)
                .map_err(|_| "the release server did not start".to_owned())
        });
        server.url = format!("http://127.0.0.1:{port}");
        server
    }
}

impl Drop for ReleaseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release of this crate's version as the release job lays it out: the binary for this
/// machine (x86_64 Linux: the musl asset's name) and its sha256 file.
fn release_assets(folder: &Path) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let assets = folder.join(format!("v{version}"));
    fs_err::create_dir_all(&assets).unwrap();
    let asset = "berth-x86_64-unknown-linux-musl";
    let binary = fs_err::read(env!("CARGO_BIN_EXE_berth")).unwrap();
    fs_err::write(assets.join(asset), &binary).unwrap();
    use sha2::Digest;
    let sum = sha2::Sha256::digest(&binary);
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    fs_err::write(
        assets.join(format!("{asset}.sha256")),
        format!("{hex}  {asset}\n"),
    )
    .unwrap();
    version.to_owned()
}

/// A token as CircleCI mints one for a job, from the sandbox's issuer.
fn oidc_token(app: &App, claims: Value) -> String {
    admin(
        &app.var("BERTH_SANDBOX_PORT"),
        "POST",
        "/_sandbox/oidc/token",
        Some(&claims),
    )["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn role(app: &App, name: &str) -> String {
    format!("arn:aws:iam::123456789012:role/{}-{name}", app.name)
}

/// A CircleCI job's shell: only CircleCI's variables, the sandbox's endpoint and region, the
/// remote Docker's TLS variables; no AWS keys, and no CircleCI CLI unless a test adds the
/// sandbox's stand-in ([`with_circleci`]).
fn job_shell(app: &App, home: &Path, vars: &[(&str, String)]) -> Command {
    let mut shell = Command::new("bash");
    shell
        .env_clear()
        .current_dir(app.dir.path())
        .env("PATH", harness::common::path_without_circleci())
        .env("HOME", home)
        .env("TMPDIR", home.join("tmp"))
        .env("CI", "true")
        .env("CIRCLECI", "true")
        .env("NO_COLOR", "1")
        .env("AWS_SDK_UA_APP_ID", &app.name)
        .env("AWS_ENDPOINT_URL", app.var("AWS_ENDPOINT_URL"))
        .env("AWS_REGION", app.var("AWS_REGION"))
        .env("DOCKER_HOST", app.var("BERTH_SANDBOX_DOCKER_TLS_HOST"))
        .env("DOCKER_TLS_VERIFY", "1")
        .env(
            "DOCKER_CERT_PATH",
            app.var("BERTH_SANDBOX_DOCKER_CERT_PATH"),
        )
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
    shell
}

/// Runs one orb step as CircleCI does: `bash -eo pipefail -c COMMAND`, the step's environment
/// on top of the job's; `BASH_ENV` carries one step's exports to the next.
fn run_step(mut shell: Command, step: &Value) -> (Option<i32>, String) {
    let environment = step["environment"].as_object().unwrap();
    let out = shell
        .envs(
            environment
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap())),
        )
        .args(["-eo", "pipefail", "-c", step["command"].as_str().unwrap()])
        .output()
        .unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    println!(
        "--- step `{}` → {:?}\n{said}",
        step["name"],
        out.status.code()
    );
    (out.status.code(), said)
}

fn all_calls(app: &App, operation: &str) -> u64 {
    admin(
        &app.var("BERTH_SANDBOX_PORT"),
        "GET",
        "/_sandbox/counters",
        None,
    )[operation]
        .as_u64()
        .unwrap_or(0)
}

/// A job's home folder, with the temp folder berth must leave empty.
fn job_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(home.path().join("tmp")).unwrap();
    home
}

/// What berth left in its temp folder: the token stays in memory, so nothing.
fn leftover_token_files(tmp: &Path) -> Vec<String> {
    fs_err::read_dir(tmp)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The packed orb's `install` then `deploy`, as a CircleCI job on `develop` runs them: berth is
/// downloaded and verified, trades the job's OIDC token for the role, builds through the remote
/// Docker's TLS endpoint and deploys; the record goes to the file the `record` parameter names.
#[tokio::test(flavor = "multi_thread")]
async fn the_packed_orb_installs_berth_and_deploys_as_a_circleci_job() {
    let app = App::new("orb", "");
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    fs_err::create_dir_all(home.join("tmp")).unwrap();
    let releases = work.path().join("releases");
    let version = release_assets(&releases);
    let server = ReleaseServer::start(&releases);
    let packed = pack(work.path());
    let bash_env = work.path().join("bash_env");
    fs_err::write(&bash_env, "").unwrap();
    let commit = {
        let out = Command::new("git")
            .current_dir(app.dir.path())
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        text(&out.stdout).trim().to_owned()
    };
    let token = oidc_token(&app, json!({}));
    let build_url = "https://circleci.com/gh/acme/shop/4242";
    let vars = [
        ("BASH_ENV", bash_env.to_string_lossy().into_owned()),
        ("CIRCLE_SHA1", commit.clone()),
        ("CIRCLE_BRANCH", "develop".to_owned()),
        ("CIRCLE_BUILD_URL", build_url.to_owned()),
        ("CIRCLE_BUILD_NUM", "4242".to_owned()),
        ("CIRCLE_OIDC_TOKEN_V2", token.clone()),
        ("DEPLOY_ROLE", role(&app, "circleci")),
    ];
    let install_dir = home.join(".berth");
    let install_dir = install_dir.to_string_lossy();
    let install = steps(
        &packed,
        "install",
        &[
            ("version", &version),
            ("download_url", &server.url),
            ("install_dir", &install_dir),
        ],
    );
    // A relative record path lands in the work tree, which berth's dirty check must not count;
    // the role comes from the job's variable, as a migrated config names it.
    let record = app.dir.path().join("out/deploy.json");
    let deploy = steps(
        &packed,
        "deploy",
        &[
            ("env", "stg"),
            ("role_arn", "${DEPLOY_ROLE}"),
            ("record", "out/deploy.json"),
            ("migrate", "before"),
            ("rollout_timeout", "3m"),
        ],
    );
    assert_eq!((install.len(), deploy.len()), (1, 1));
    let assumed = all_calls(&app, "sts:AssumeRoleWithWebIdentity");
    let tls_connections = || {
        admin(
            &app.var("BERTH_SANDBOX_PORT"),
            "GET",
            "/_sandbox/health",
            None,
        )["docker_tls_connections"]
            .as_u64()
            .unwrap()
    };
    let through_tls = tls_connections();
    let before = app.service_task_definitions().await;

    let (code, said) = run_step(job_shell(&app, &home, &vars), &install[0]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "installed berth {version} (x86_64-unknown-linux-musl)"
        )),
        "{said}"
    );
    let bash_env_text = fs_err::read_to_string(&bash_env).unwrap();
    assert!(bash_env_text.contains(&format!("{install_dir}/{version}")));

    let mut shell = job_shell(&app, &home, &vars);
    with_circleci(&mut shell, &app, 3600, &work.path().join("circleci.log"));
    let (code, said) = run_step(shell, &deploy[0]);
    assert_eq!(code, Some(0), "{said}");
    assert!(!said.contains("uncommitted"), "{said}");
    let report: Value = serde_json::from_str(&fs_err::read_to_string(&record).unwrap()).unwrap();
    assert!(
        report["image"]["tag"]
            .as_str()
            .unwrap()
            .starts_with(&commit)
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
    let after = app.service_task_definitions().await;
    assert_eq!(after, revisions);
    assert_ne!(after, before);
    // `migrate: before` reached berth: the migration ran before the rollout started.
    let migrated = said.find("migrate: done").expect("the migration ran");
    let rolled = said.find("rollout: started").expect("the rollout ran");
    assert!(migrated < rolled, "{said}");
    // The record file was in the work tree when the image was built, and is not in the image.
    let image = report["image"]["uri"].as_str().unwrap();
    let listed = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--entrypoint",
            "ls",
            image,
            "-a",
            "/app",
            "/app/out",
        ])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let in_image = text(&listed.stdout);
    assert!(in_image.contains("Gemfile"), "{in_image}");
    // The folder the orb made for it is sent as any empty folder is; the file is not.
    assert!(
        !in_image.contains("deploy.json"),
        "the record reached the image: {in_image}"
    );
    // Credentials came from the OIDC token: there were no keys, and STS traded it.
    assert!(all_calls(&app, "sts:AssumeRoleWithWebIdentity") > assumed);
    // The environment's journal names the CircleCI job that started the deploy.
    let lock = app.lock().await;
    let started = lock["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["deploy_id"] == report["deploy_id"])
        .unwrap_or_else(|| panic!("the deploy is not in the journal: {lock}"));
    assert_eq!(started["by"], build_url, "{lock}");
    assert!(!said.contains(&token), "the OIDC token reached the output");
    assert_eq!(
        leftover_token_files(&home.join("tmp")),
        Vec::<String>::new()
    );
    // Built through the remote Docker's TLS endpoint, as `setup_remote_docker` gives it.
    assert!(said.contains("build: started"), "{said}");
    assert!(
        tls_connections() > through_tls,
        "no connection to the TLS front"
    );
}

/// A token the role does not trust, or one that expired, stops berth before any change with
/// exit 4 and a message naming the role and AWS's reason; nothing is left on disk.
#[tokio::test(flavor = "multi_thread")]
async fn berth_names_the_role_when_aws_refuses_the_circleci_token() {
    let app = App::new("oidc", "");
    let work = job_home();
    let home = work.path().to_path_buf();
    let berth = env!("CARGO_BIN_EXE_berth");
    let trust = "hint: the role's trust policy";
    let cases = [
        // The execution role trusts ECS tasks, not CircleCI's OIDC provider.
        (role(&app, "execution"), json!({}), "AccessDenied", trust),
        // Expired, and no `circleci` on PATH to mint another.
        (
            role(&app, "circleci"),
            json!({"ttl": -60}),
            "ExpiredTokenException",
            "hint: the token has expired (CircleCI's last one hour); keep the CircleCI CLI on PATH",
        ),
        (
            role(&app, "circleci"),
            json!({"audience": "another-organization"}),
            "Incorrect token audience",
            trust,
        ),
    ];
    for (role_arn, claims, reason, hint) in cases {
        let token = oidc_token(&app, claims);
        let vars = [
            ("AWS_ROLE_ARN", role_arn.clone()),
            ("CIRCLE_OIDC_TOKEN_V2", token.clone()),
        ];
        let out = job_shell(&app, &home, &vars)
            .args(["-c", &format!("{berth} deploy --env stg")])
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        println!("--- {role_arn} → {:?}\n{stderr}", out.status.code());
        assert_eq!(out.status.code(), Some(4), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "AWS refused CircleCI's OIDC token (`CIRCLE_OIDC_TOKEN_V2`) for role `{role_arn}`"
            )),
            "{stderr}"
        );
        assert!(stderr.contains(reason), "{stderr}");
        assert!(stderr.contains(hint), "{stderr}");
        assert!(
            !stderr.contains(&token),
            "the OIDC token reached the output"
        );
        assert!(!stderr.contains("build: started"), "{stderr}");
        assert_eq!(
            leftover_token_files(&home.join("tmp")),
            Vec::<String>::new()
        );
    }
}

/// The stand-in `circleci` (sandbox/bin) on a job shell's PATH, as the CLI is in a job: it mints
/// tokens from the sandbox's issuer that last `ttl` seconds, and logs each call to `log`.
fn with_circleci(shell: &mut Command, app: &App, ttl: u64, log: &Path) {
    let bin = Path::new(ROOT).join("sandbox/bin");
    shell
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                harness::common::path_without_circleci()
            ),
        )
        .env("BERTH_SANDBOX_PORT", app.var("BERTH_SANDBOX_PORT"))
        .env("BERTH_SANDBOX_OIDC_TTL", ttl.to_string())
        .env("BERTH_SANDBOX_CIRCLECI_LOG", log);
}

/// A deploy longer than its role's sessions and the job's token: the role allows one hour (which
/// the sandbox makes pass in 18 s), the job's token lasts 30 s, and the migration sleeps 45 s.
/// berth learns the role's limit from STS's refusal, assumes the role again before each session
/// expires, and mints a fresh token with `circleci run oidc get` once the job's has run out.
#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_outlives_its_role_sessions_and_the_jobs_token() {
    let app = App::new(
        "long",
        "[migration]\ncommand = [\"sh\", \"-c\", \"sleep 45 && exec bin/rails db:migrate\"]\n",
    );
    let work = job_home();
    let home = work.path().to_path_buf();
    let role_arn = role(&app, "circleci");
    admin(
        &app.var("BERTH_SANDBOX_PORT"),
        "POST",
        "/_sandbox/sessions",
        Some(&json!({"role": role_arn, "scale": 0.005})),
    );
    let token = oidc_token(&app, json!({"ttl": 30}));
    let log = work.path().join("circleci.log");
    let vars = [
        ("AWS_ROLE_ARN", role_arn.clone()),
        ("CIRCLE_OIDC_TOKEN_V2", token.clone()),
        ("CIRCLE_BRANCH", "main".to_owned()),
        ("BERTH_LOG", "berth=info".to_owned()),
    ];
    let before = app.counters();
    let mut shell = job_shell(&app, &home, &vars);
    with_circleci(&mut shell, &app, 30, &log);
    let berth = env!("CARGO_BIN_EXE_berth");
    let out = shell
        .args(["-c", &format!("{berth} deploy --env stg --migrate before")])
        .output()
        .unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    println!("{said}");
    assert_eq!(out.status.code(), Some(0), "{said}");
    let after = app.service_task_definitions().await;
    assert!(after.iter().all(|arn| arn.ends_with(":2")), "{after:?}");

    let calls = app.counters().since(&before);
    let assumed = calls["sts:AssumeRoleWithWebIdentity"];
    // 45 s of migration alone outlast two 18 s sessions; one more call was the refused ask.
    assert!(
        assumed >= 4,
        "the role was assumed {assumed} times: {calls:?}"
    );
    // The job's token first; once it ran out, tokens minted by `circleci run oidc get`.
    let job = said.find("with the OIDC token from `CIRCLE_OIDC_TOKEN_V2`");
    let fresh = said.find("with the OIDC token from `circleci run oidc get`");
    assert!(job.is_some() && fresh.is_some() && job < fresh, "{said}");
    let minted = fs_err::read_to_string(&log).unwrap_or_default();
    assert!(
        minted
            .lines()
            .any(|l| l.starts_with("run oidc get --claims")),
        "no token was minted: {minted:?}"
    );
    // The limit was learnt once and said once, not as a warning.
    assert_eq!(
        said.matches("allows sessions shorter than").count(),
        1,
        "{said}"
    );
    assert!(!said.contains("WARN"), "{said}");
    assert!(!said.contains(&token), "the OIDC token reached the output");
}

/// `AWS_ROLE_ARN` set and no way to a token (no token variable, no `circleci`): berth exits 4
/// before any AWS call, names the variable and the fix, and does not fall back to the keys that
/// are in the environment.
#[tokio::test(flavor = "multi_thread")]
async fn a_role_without_a_token_exits_4_and_never_falls_back_to_other_keys() {
    let app = App::new("notoken", "");
    let work = job_home();
    let home = work.path().to_path_buf();
    let role_arn = role(&app, "circleci");
    let vars = [
        ("AWS_ROLE_ARN", role_arn.clone()),
        ("AWS_ACCESS_KEY_ID", "AKIAOTHERACCOUNT0001".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "other-account-secret".to_owned()),
        ("CIRCLE_BRANCH", "main".to_owned()),
    ];
    let before = app.counters();
    let revisions = app.service_task_definitions().await;
    let berth = env!("CARGO_BIN_EXE_berth");
    let out = job_shell(&app, &home, &vars)
        .args(["-c", &format!("{berth} deploy --env stg")])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    println!("{stderr}");
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no OIDC token to assume role `{role_arn}` (`AWS_ROLE_ARN`): `CIRCLE_OIDC_TOKEN_V2` is not set and `circleci` is not on PATH"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint: inside a CircleCI job"), "{stderr}");
    assert!(!stderr.contains("other-account-secret"), "{stderr}");
    // Not one AWS call: nothing read, nothing written, S3 included.
    assert_eq!(app.counters().since(&before), Default::default());
    assert_eq!(app.service_task_definitions().await, revisions);
    assert_eq!(text(&out.stdout), "");
}

/// A job token that has already expired is not sent: berth mints a fresh one with `circleci run
/// oidc get` (for the same audience) and goes on.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_job_token_is_replaced_by_one_circleci_mints() {
    let app = App::new("expired", "");
    let work = job_home();
    let home = work.path().to_path_buf();
    let expired = oidc_token(&app, json!({"ttl": -60}));
    let log = work.path().join("circleci.log");
    let vars = [
        ("AWS_ROLE_ARN", role(&app, "circleci")),
        ("CIRCLE_OIDC_TOKEN_V2", expired),
    ];
    let mut shell = job_shell(&app, &home, &vars);
    with_circleci(&mut shell, &app, 3600, &log);
    let berth = env!("CARGO_BIN_EXE_berth");
    let out = shell
        .args(["-c", &format!("{berth} status --env stg")])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(text(&out.stdout).contains("web"), "{}", text(&out.stdout));
    let minted = fs_err::read_to_string(&log).unwrap();
    assert_eq!(
        minted.lines().collect::<Vec<_>>(),
        ["run oidc get --claims {\"aud\":\"7f6b2a3e-0c51-4d5e-9a9e-5a1b2c3d4e5f\"}"],
        "one token minted, for the job token's audience"
    );
}
