//! Bad `berth.toml` files, flags and variables: each ends with exit code 2 and a message that
//! names the key, the file and what to do. Then the good path: the plan and `--output json`.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::common::{berth, stderr, stdout};
use harness::{admin, sandbox_env};

/// A valid file; cases append to it or replace it.
const VALID: &str = r#"
repository = "berth-example"
containers = ["app"]
region = "eu-west-1"
cluster = "shared"

[build]
args = { RAILS_ENV = "production" }

[env.stg]
region = "us-east-1"
cluster = "berth-stg"
services = ["web", "devops"]

[env.prd]
cluster = "berth-prd"
services = ["web"]
"#;

struct Case {
    name: &'static str,
    /// Contents of `berth.toml`; `None` leaves the folder empty.
    file: Option<&'static str>,
    args: &'static [&'static str],
    vars: &'static [(&'static str, &'static str)],
    /// Every one of these must appear on stderr.
    expect: &'static [&'static str],
}

const STG: &[&str] = &["deploy", "--env", "stg"];

const CASES: &[Case] = &[
    Case {
        name: "requires names no environment",
        file: Some(
            "repository = \"app\"\nregion = \"us-east-1\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n[env.prd]\ncluster = \"p\"\nservices = [\"web\"]\nrequires = \"staging\"\n",
        ),
        args: &["deploy", "--env", "prd"],
        vars: &[],
        expect: &[
            "berth.toml:9:12:",
            "`requires`",
            "`staging`, which is not an environment of this file",
            "`stg`",
        ],
    },
    Case {
        name: "promote_from the environment itself",
        file: Some(
            "repository = \"app\"\nregion = \"us-east-1\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\npromote_from = \"stg\"\n",
        ),
        args: STG,
        vars: &[],
        expect: &["`stg`, the environment itself"],
    },
    Case {
        name: "requires and promote_from disagree",
        file: Some(
            "repository = \"app\"\nregion = \"us-east-1\"\n[env.qa]\ncluster = \"q\"\nservices = [\"web\"]\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n[env.prd]\ncluster = \"p\"\nservices = [\"web\"]\npromote_from = \"stg\"\nrequires = \"qa\"\n",
        ),
        args: &["deploy", "--env", "prd"],
        vars: &[],
        expect: &[
            "`requires`",
            "is `qa`, but `promote_from` is `stg`",
            "leave `requires` out",
        ],
    },
    Case {
        name: "an unknown promotion",
        file: Some(
            "repository = \"app\"\nregion = \"us-east-1\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n[env.prd]\ncluster = \"p\"\nservices = [\"web\"]\npromote_from = \"stg\"\npromotion = \"pull\"\n",
        ),
        args: &["deploy", "--env", "prd"],
        vars: &[],
        expect: &["`promotion`", "is `pull`", "`copy`", "`reference`"],
    },
    Case {
        name: "an account that is not an account id",
        file: Some(
            "repository = \"app\"\nregion = \"us-east-1\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\naccount = \"12345\"\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "`account`",
            "is `12345`, not an AWS account id",
            "12 digits",
        ],
    },
    Case {
        name: "unknown key",
        file: Some("servcies = [\"web\"]\n[env.stg]\n"),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:1:1:",
            "unknown field `servcies`",
            "servcies = [\"web\"]",
        ],
    },
    Case {
        name: "unknown key inside an environment table",
        file: Some("[env.stg]\ncluster = \"c\"\n[env.stg.build]\nplatfrom = \"linux/amd64\"\n"),
        args: STG,
        vars: &[],
        expect: &["berth.toml:4:1:", "unknown field `platfrom`"],
    },
    Case {
        name: "wrong type",
        file: Some("[env.stg]\ncluster = 3\n"),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:2:11:",
            "invalid type: integer `3`, expected a string",
            "cluster = 3",
        ],
    },
    Case {
        name: "TOML syntax error",
        file: Some("repository = \"berth-example\n"),
        args: STG,
        vars: &[],
        expect: &["berth.toml:1:", "repository = \"berth-example"],
    },
    Case {
        name: "no environment chosen",
        file: Some(VALID),
        args: &["deploy"],
        vars: &[],
        expect: &[
            "berth.toml",
            "no environment chosen",
            "`prd`, `stg`",
            "`--env NAME`",
            "BERTH_ENV",
        ],
    },
    Case {
        name: "unknown environment",
        file: Some(VALID),
        args: &["deploy", "--env", "qa"],
        vars: &[],
        expect: &[
            "berth.toml",
            "unknown environment `qa`",
            "`prd`, `stg`",
            "`--env NAME`",
        ],
    },
    Case {
        name: "unknown environment from BERTH_ENV",
        file: Some(VALID),
        args: &["deploy"],
        vars: &[("BERTH_ENV", "staging")],
        expect: &["unknown environment `staging`", "BERTH_ENV"],
    },
    Case {
        name: "missing cluster",
        file: Some(
            "repository = \"berth-example\"\nregion = \"us-east-1\"\n[env.stg]\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml: `env.stg.cluster` is not set",
            "set `cluster`",
            "`[env.stg]`",
        ],
    },
    Case {
        name: "missing region and no AWS_REGION",
        file: Some(
            "repository = \"berth-example\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &["`env.stg.region` is not set", "`--region`", "`AWS_REGION`"],
    },
    Case {
        name: "empty services",
        file: Some(
            "repository = \"berth-example\"\nregion = \"us-east-1\"\n[env.stg]\ncluster = \"c\"\nservices = []\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:5:12: `services` is empty",
            "hint: list at least one name",
        ],
    },
    Case {
        name: "duplicate service",
        file: Some(
            "repository = \"berth-example\"\nregion = \"us-east-1\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\", \"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:5:12: `services` lists `web` twice",
            "hint: list each name once",
        ],
    },
    Case {
        name: "bad duration",
        file: Some(concat!(
            "repository = \"berth-example\"\nregion = \"us-east-1\"\n[timeouts]\nrollout = \"soon\"\n",
            "[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n"
        )),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:4:11: `timeouts.rollout` is `soon`",
            "hint:",
            "`20m`",
        ],
    },
    Case {
        name: "invalid migrate",
        file: Some(
            "repository = \"berth-example\"\nregion = \"us-east-1\"\nmigrate = \"later\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:3:11: `migrate` is `later`",
            "`after`, `before` or `skip`",
            "hint:",
        ],
    },
    Case {
        name: "empty migration command",
        file: Some(concat!(
            "repository = \"berth-example\"\nregion = \"us-east-1\"\n[migration]\ncommand = []\n",
            "[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n"
        )),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:4:11: `migration.command` is empty",
            "hint:",
            "`migrate = \"skip\"`",
        ],
    },
    Case {
        name: "migration capacity with a weight out of range",
        file: Some(
            "repository = \"app\"\n[migration]\ncapacity_provider_strategy = [{ capacity_provider = \"FARGATE\", weight = 2000 }]\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:3:",
            "`migration.capacity_provider_strategy` has a `weight` outside 0 to 1000",
            "hint: write it as ECS takes it",
        ],
    },
    Case {
        name: "malformed region in the file",
        file: Some(
            "repository = \"app\"\n[env.stg]\nregion = \"us east 1\"\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "`region` is `us east 1`, which is not an AWS region name",
            "hint: use a region such as `us-east-1`",
        ],
    },
    Case {
        name: "malformed region flag",
        file: Some("repository = \"app\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n"),
        args: &["deploy", "--env", "stg", "--region", "us_east_1"],
        vars: &[],
        expect: &["command line: `--region` is `us_east_1`, which is not an AWS region name"],
    },
    Case {
        name: "bad platform",
        file: Some(concat!(
            "repository = \"berth-example\"\nregion = \"us-east-1\"\n",
            "[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\nbuild.platform = \"amd64\"\n"
        )),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:6:18: `build.platform` is `amd64`",
            "`os/arch`",
            "hint:",
        ],
    },
    Case {
        name: "invalid repository name",
        file: Some(
            "repository = \"Berth_Example\"\nregion = \"us-east-1\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:1:14: `repository` is `Berth_Example`",
            "ECR",
            "hint:",
        ],
    },
    Case {
        name: "nested environment",
        file: Some("[env.stg]\ncluster = \"c\"\n[env.stg.env.other]\ncluster = \"d\"\n"),
        args: STG,
        vars: &[],
        expect: &["berth.toml:3:", "`env` tables cannot be nested", "hint:"],
    },
    Case {
        name: "config file not found",
        file: None,
        args: STG,
        vars: &[],
        expect: &[
            "configuration file `berth.toml` not found",
            "hint:",
            "`--config PATH`",
            "BERTH_CONFIG",
        ],
    },
    Case {
        name: "config file from BERTH_CONFIG not found",
        file: Some(VALID),
        args: STG,
        vars: &[("BERTH_CONFIG", "deploy/berth.toml")],
        expect: &["configuration file `deploy/berth.toml` not found"],
    },
    Case {
        name: "a cache source that is not an image reference",
        file: Some(
            "repository = \"app\"\n[build]\ncache_from = [\"Registry.example.com/App:v1\"]\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:3:14: `build.cache_from` names `Registry.example.com/App:v1`, which is not an image reference",
            "hint: name each image as `registry/repository:tag`",
        ],
    },
    Case {
        name: "a [registry] map, which berth no longer has",
        file: Some(
            "repository = \"app\"\n[registry]\nmap = { \"a.example\" = \"127.0.0.1:5055\" }\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:2:2:",
            "`[registry]` was removed: berth pushes to the ECR registry of the account and `region` it deploys to",
        ],
    },
    Case {
        name: "an empty task_definition_vars, the documented default, is no error",
        file: Some(
            "repository = \"app\"\ntask_definition_vars = []\n[build]\ncontext = \"no-such-folder\"\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &["`build.context` `", "no-such-folder` is not a folder"],
    },
    Case {
        name: "a value clap refuses",
        file: None,
        args: &["deploy", "--env", "stg", "--output", "xml"],
        vars: &[],
        expect: &[
            "error: invalid value 'xml' for '--output <OUTPUT>'",
            "hint: `berth --help` lists the commands",
        ],
    },
    Case {
        name: "a duration clap refuses",
        file: None,
        args: &["deploy", "--env", "stg", "--lock-wait", "soon"],
        vars: &[],
        expect: &[
            "'--lock-wait <DURATION>'",
            "hint: a duration reads like `90s`",
        ],
    },
    Case {
        name: "a profile the AWS config files do not define",
        file: Some(
            "repository = \"app\"\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: &["status", "--env", "stg", "--profile", "nosuch"],
        vars: &[
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ],
        expect: &["AWS profile `nosuch` (`--profile`) is not defined"],
    },
    Case {
        name: "variable both set and removed",
        file: Some(concat!(
            "repository = \"berth-example\"\nregion = \"us-east-1\"\nremove_environment = [\"OLD\"]\n",
            "[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\nenvironment = { OLD = \"1\" }\n"
        )),
        args: STG,
        vars: &[],
        expect: &["berth.toml: `remove_environment` removes `OLD`", "hint:"],
    },
    Case {
        name: "secret build arg with a value in the file",
        file: Some(concat!(
            "repository = \"berth-example\"\nregion = \"us-east-1\"\n",
            "[build]\nargs = { TOKEN = \"x\" }\nsecret_args = [\"TOKEN\"]\n",
            "[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n"
        )),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:5:15: `build.secret_args` names `TOKEN`",
            "hint:",
        ],
    },
    Case {
        name: "a state bucket S3 would refuse",
        file: Some(
            "repository = \"app\"\n[state]\nbucket = \"Berth_State\"\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:3:10: `state.bucket` is `Berth_State`, not a valid S3 bucket name",
            "hint: use 3 to 63 characters",
        ],
    },
    Case {
        name: "a lease too short to renew",
        file: Some(
            "repository = \"app\"\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n[env.stg.state]\nlease = \"1s\"\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:7:9: `state.lease` is 1s, shorter than 3s",
            "hint:",
        ],
    },
    Case {
        name: "unknown on_failure",
        file: Some(
            "repository = \"app\"\non_failure = \"retry\"\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:2:14: `on_failure` is `retry`",
            "hint: use `rollback`",
        ],
    },
    Case {
        name: "unknown on_cancel",
        file: Some(
            "repository = \"app\"\non_cancel = \"stop\"\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n",
        ),
        args: STG,
        vars: &[],
        expect: &[
            "berth.toml:2:13: `on_cancel` is `stop`",
            "hint: use `leave`",
        ],
    },
];

/// The sandbox's count of every call that changes something (and of registry pushes), by
/// operation, over all callers.
fn writes(port: &str) -> std::collections::BTreeMap<String, u64> {
    const WRITES: &[&str] = &[
        "Put",
        "Create",
        "Register",
        "Deregister",
        "Update",
        "Run",
        "Start",
        "Stop",
        "Delete",
        "Tag",
        "Untag",
        "push",
    ];
    admin(port, "GET", "/_sandbox/counters", None)
        .as_object()
        .unwrap()
        .iter()
        .filter(|(key, _)| {
            let operation = key.split(':').nth(1).unwrap_or_default();
            WRITES.iter().any(|verb| operation.starts_with(verb))
        })
        .map(|(key, count)| (key.clone(), count.as_u64().unwrap_or(0)))
        .collect()
}

/// Exit code 2 means nothing was written anywhere: each case runs pointed at the sandbox, as a
/// real run would reach AWS, and the sandbox counts no write of any kind (no test of this binary
/// writes to it meanwhile).
#[test]
fn bad_settings_exit_2_with_key_file_and_hint() {
    let sandbox = sandbox_env();
    let port = &sandbox
        .iter()
        .find(|(key, _)| key == "BERTH_SANDBOX_PORT")
        .unwrap()
        .1;
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        if let Some(file) = case.file {
            fs_err::write(dir.path().join("berth.toml"), file).unwrap();
        }
        // The sandbox's endpoint and keys; the region is each case's own.
        let mut vars: Vec<(&str, &str)> = sandbox
            .iter()
            .filter(|(key, _)| !key.ends_with("_REGION"))
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        vars.extend(case.vars);
        let before = writes(port);
        let output = berth(dir.path(), case.args, &vars);
        let stderr = stderr(&output);
        let mut problems = Vec::new();
        if writes(port) != before {
            problems.push("wrote to the sandbox".to_owned());
        }
        if output.status.code() != Some(2) {
            problems.push(format!("exit code {:?}, expected 2", output.status.code()));
        }
        if !stderr.starts_with("error: ") || !stderr.contains("\nhint: ") {
            problems.push("no `error:` and `hint:` lines".to_owned());
        }
        for expected in case.expect {
            if !stderr.contains(expected) {
                problems.push(format!("missing {expected:?}"));
            }
        }
        if !stdout(&output).is_empty() {
            problems.push("wrote to stdout".to_owned());
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n{stderr}", case.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_settings_print_the_plan_and_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("berth.toml"), VALID).unwrap();
    let output = berth(dir.path(), &["config", "--env", "stg"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = stdout(&output);
    for expected in [
        "settings of environment `stg`",
        "`us-east-1`",
        "`berth-stg`",
        "`web`, `devops`",
        "`berth-example`",
        "`bin/rails db:migrate` in container `app`",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn json_output_carries_the_resolved_settings() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("berth.toml"), VALID).unwrap();
    let output = berth(
        dir.path(),
        &["config", "--region", "ca-central-1", "--output", "json"],
        &[("BERTH_ENV", "stg"), ("AWS_REGION", "ap-south-1")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["env"], "stg");
    assert_eq!(
        json["cluster"], "berth-stg",
        "`[env.stg]` beats the top level"
    );
    assert_eq!(json["region"], "ca-central-1", "`--region` beats the file");
    assert_eq!(json["services"], serde_json::json!(["web", "devops"]));
    assert_eq!(json["migrate"], "after");
    assert_eq!(json["timeouts"]["rollout"], "30m");
}

/// With no region in the flags or the file, `AWS_REGION` and then `AWS_DEFAULT_REGION` (the AWS
/// CLI's order); a bad one is blamed on the variable it came from.
#[test]
fn the_region_falls_back_to_aws_region_then_aws_default_region() {
    let dir = tempfile::tempdir().unwrap();
    let file = "repository = \"app\"\n[env.stg]\ncluster = \"c\"\nservices = [\"web\"]\n";
    fs_err::write(dir.path().join("berth.toml"), file).unwrap();
    let region = |vars: &[(&str, &str)]| {
        let output = berth(
            dir.path(),
            &["config", "--env", "stg", "--output", "json"],
            vars,
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        (
            output.status.code(),
            json["region"].clone(),
            stderr(&output),
        )
    };
    let (code, found, _) = region(&[("AWS_DEFAULT_REGION", "eu-west-3")]);
    assert_eq!((code, found), (Some(0), serde_json::json!("eu-west-3")));
    let both = [
        ("AWS_REGION", "ap-south-1"),
        ("AWS_DEFAULT_REGION", "eu-west-3"),
    ];
    let (code, found, _) = region(&both);
    assert_eq!((code, found), (Some(0), serde_json::json!("ap-south-1")));
    let (code, _, said) = region(&[("AWS_DEFAULT_REGION", "Moon-1")]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("AWS_DEFAULT_REGION"), "{said}");
    let (code, _, said) = region(&[]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("`AWS_DEFAULT_REGION`"),
        "the hint names both: {said}"
    );
}

#[test]
fn output_format_can_come_from_berth_output() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("prd.toml"), VALID).unwrap();
    let output = berth(
        dir.path(),
        &["config", "--env", "prd", "--config", "prd.toml"],
        &[("BERTH_OUTPUT", "json")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["cluster"], "berth-prd");
    assert_eq!(
        json["region"], "eu-west-1",
        "top level fills what `[env.prd]` leaves out"
    );
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A git work tree holding `berth.toml` and, when given, a `Dockerfile`, all committed.
fn committed(config: &str, dockerfile: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("berth.toml"), config).unwrap();
    if let Some(dockerfile) = dockerfile {
        fs_err::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    }
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "app"]);
    dir
}

/// The image tag is the commit: a context with uncommitted changes is refused before any AWS
/// call (the endpoint here does not even exist), and the hint names the way out.
#[test]
fn a_dirty_work_tree_is_refused_before_anything_happens() {
    let dir = committed(VALID, Some("FROM scratch\n"));
    fs_err::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
    let unreachable = [("AWS_ENDPOINT_URL", "http://127.0.0.1:9")];
    let output = berth(dir.path(), STG, &unreachable);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("has uncommitted changes: `Dockerfile`"),
        "names the changed path: {text}"
    );
    assert!(text.contains("--allow-dirty"), "{text}");

    // Up to five paths are named, then how many more.
    for n in 1..=6 {
        fs_err::write(dir.path().join(format!("new-{n}.txt")), "").unwrap();
    }
    let text = stderr(&berth(dir.path(), STG, &unreachable));
    assert!(text.contains("and 2 more"), "{text}");

    // berth's own output (the orb's `record` file, here inside the work tree) is not a change:
    // the refusal that follows is the next check's (no AWS endpoint), not a dirty tree.
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "clean"]);
    // In a new folder, which git lists alone (`out/`).
    fs_err::create_dir_all(dir.path().join("out")).unwrap();
    let record = fs_err::File::create(dir.path().join("out/record.json")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    harness::common::scrub(command.current_dir(dir.path()).args(STG))
        .args(["--output", "json"])
        .env("NO_COLOR", "1")
        .envs(unreachable)
        .stdout(record.into_file());
    let output = command.output().unwrap();
    let text = stderr(&output);
    assert!(!text.contains("uncommitted"), "{text}");
    assert_eq!(output.status.code(), Some(4), "{text}");
    // Another file beside it is still a change, and named.
    fs_err::write(dir.path().join("out/other.txt"), "").unwrap();
    let record = fs_err::File::create(dir.path().join("out/record.json")).unwrap();
    command.stdout(record.into_file());
    let text = stderr(&command.output().unwrap());
    assert!(
        text.contains("has uncommitted changes: `out/other.txt`"),
        "{text}"
    );

    // Outside a git work tree, and without CIRCLE_SHA1, there is no commit to deploy.
    let bare = tempfile::tempdir().unwrap();
    fs_err::write(bare.path().join("berth.toml"), VALID).unwrap();
    let output = berth(bare.path(), STG, &unreachable);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("CIRCLE_SHA1"), "{text}");
}

/// A missing Dockerfile, or a `build.target` it does not name, is a settings error found before
/// any AWS call (the endpoint here does not even exist).
#[test]
fn a_missing_dockerfile_or_build_target_is_refused_before_any_aws_call() {
    let unreachable = [("AWS_ENDPOINT_URL", "http://127.0.0.1:9")];
    let config = VALID.replace("[build]\n", "[build]\ntarget = \"release\"\n");
    let dir = committed(&config, None);
    let output = berth(dir.path(), STG, &unreachable);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.starts_with("error: Dockerfile `"), "{text}");
    assert!(text.contains("` not found"), "{text}");
    assert!(text.contains("hint: set `build.dockerfile`"), "{text}");

    fs_err::write(
        dir.path().join("Dockerfile"),
        "FROM scratch AS base\nFROM base AS assets\n",
    )
    .unwrap();
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "dockerfile"]);
    let output = berth(dir.path(), STG, &unreachable);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("`build.target` `release` is not a stage of"),
        "{text}"
    );
    assert!(text.contains("its stages: `base`, `assets`"), "{text}");
    assert!(text.contains("hint: fix `build.target`"), "{text}");
}

/// No credentials anywhere: one line naming the sources tried, exit 4, before any AWS call.
#[test]
fn no_aws_credentials_is_one_line_naming_the_sources() {
    let dir = committed(VALID, Some("FROM scratch\n"));
    let home = dir.path().to_str().unwrap();
    let output = berth(
        dir.path(),
        STG,
        &[
            ("HOME", home),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ],
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0].starts_with("error: no AWS credentials: tried `AWS_ACCESS_KEY_ID`"),
        "{text}"
    );
    assert!(
        !text.contains("caused by"),
        "one line, no provider dump: {text}"
    );
    assert!(!text.contains("WARN"), "{text}");
    assert!(text.contains("hint: log in (`aws sso login`)"), "{text}");
}

/// A berth.toml saved in another encoding than UTF-8 is named as such, not as unreadable.
#[test]
fn a_berth_toml_that_is_not_utf8_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    // `[env.stg]` in UTF-16, as some editors save it.
    let utf16: Vec<u8> = "\u{feff}[env.stg]\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    fs_err::write(dir.path().join("berth.toml"), utf16).unwrap();
    let output = berth(dir.path(), &["config", "--env", "stg"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr(&output);
    assert!(
        stderr.starts_with("error: configuration file `berth.toml` is not UTF-8 text\nhint: "),
        "{stderr}"
    );
}
