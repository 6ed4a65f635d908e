//! Every environment variable berth reads, declared once.
//!
//! `docs/configuration.md` lists the same variables; keep the two in step.

/// Path of the configuration file when `--config` is absent. Default: `berth.toml` in the current
/// folder.
pub const BERTH_CONFIG: &str = "BERTH_CONFIG";

/// Environment to deploy (a `[env.NAME]` table of `berth.toml`) when `--env` is absent.
pub const BERTH_ENV: &str = "BERTH_ENV";

/// Output format when `--output` is absent: `text` (default) or `json`.
pub const BERTH_OUTPUT: &str = "BERTH_OUTPUT";

/// Log filter for berth's diagnostic logs on stderr, in `tracing` `EnvFilter` syntax (for
/// example `debug` or `berth=debug,aws_config=info`). Default: `warn`.
pub const BERTH_LOG: &str = "BERTH_LOG";

/// Standard AWS variable: endpoint for every AWS service (the local sandbox sets it). Read by the
/// AWS SDK itself, together with the per-service forms such as `AWS_ENDPOINT_URL_ECS`.
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

/// Standard AWS variable: region used when neither `--region` nor `berth.toml` sets one.
pub const AWS_REGION: &str = "AWS_REGION";

/// The AWS CLI's region variable, read after `AWS_REGION` as the AWS CLI reads it (contexts
/// made for the aws-cli orb often set only this one).
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";

/// Standard AWS variable: attempts per AWS call, the first included (berth's default: 5). Read
/// by the AWS SDK itself.
pub const AWS_MAX_ATTEMPTS: &str = "AWS_MAX_ATTEMPTS";

/// Standard AWS variable: `standard` or `adaptive` retries (berth's default: `standard`). Read by
/// the AWS SDK itself.
pub const AWS_RETRY_MODE: &str = "AWS_RETRY_MODE";

/// Standard AWS variable: named profile used when `--profile` is absent. Read by the AWS SDK
/// itself.
pub const AWS_PROFILE: &str = "AWS_PROFILE";

/// Standard AWS variable: the AWS config file, instead of `~/.aws/config`. Read by the AWS SDK
/// itself; named in the hint when `--profile` names no profile.
pub const AWS_CONFIG_FILE: &str = "AWS_CONFIG_FILE";

/// Standard AWS variable: the AWS credentials file, instead of `~/.aws/credentials`. Read by the
/// AWS SDK itself; named in the hint when `--profile` names no profile.
pub const AWS_SHARED_CREDENTIALS_FILE: &str = "AWS_SHARED_CREDENTIALS_FILE";

/// Standard AWS variable: the role to assume with a web identity token. With no
/// `AWS_WEB_IDENTITY_TOKEN_FILE`, berth assumes it itself with CircleCI's OIDC token
/// (`CIRCLE_OIDC_TOKEN_V2`, else `CIRCLE_OIDC_TOKEN`, else one minted by `circleci run oidc
/// get`), again before each session expires; with neither a token nor `circleci`, berth exits 4
/// rather than use other credentials. With a token file, the AWS SDK assumes it.
pub const AWS_ROLE_ARN: &str = "AWS_ROLE_ARN";

/// Standard AWS variable: a file holding a web identity token for `AWS_ROLE_ARN`. Read by the
/// AWS SDK itself; when set, berth leaves CircleCI's OIDC token alone.
pub const AWS_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";

/// Standard AWS variable: the session name of an assumed role. Default with CircleCI's OIDC
/// token: `berth-<CIRCLE_BUILD_NUM>`, else `berth`.
pub const AWS_ROLE_SESSION_NAME: &str = "AWS_ROLE_SESSION_NAME";

/// CircleCI's OIDC token for the job (version 2 of its claims), traded for `AWS_ROLE_ARN`'s
/// credentials.
pub const CIRCLE_OIDC_TOKEN_V2: &str = "CIRCLE_OIDC_TOKEN_V2";

/// CircleCI's OIDC token for the job (version 1), used when `CIRCLE_OIDC_TOKEN_V2` is absent.
pub const CIRCLE_OIDC_TOKEN: &str = "CIRCLE_OIDC_TOKEN";

/// CircleCI's organization id: the audience of a token berth mints with `circleci run oidc
/// get` when the job's own token does not name one.
pub const CIRCLE_ORGANIZATION_ID: &str = "CIRCLE_ORGANIZATION_ID";

/// CircleCI's job number: names the role session of a job that assumes `AWS_ROLE_ARN`.
pub const CIRCLE_BUILD_NUM: &str = "CIRCLE_BUILD_NUM";

/// CircleCI's id of the running job: `berth run` derives its `clientToken` from it (with the
/// environment, service, container and command), so that a retry within the job follows the
/// task instead of starting another.
pub const CIRCLE_WORKFLOW_JOB_ID: &str = "CIRCLE_WORKFLOW_JOB_ID";

/// Standard Docker variable: address of the Docker engine, for example
/// `unix:///var/run/docker.sock` (the default) or `tcp://127.0.0.1:2375`.
pub const DOCKER_HOST: &str = "DOCKER_HOST";

/// Standard Docker variable: when set to anything non-empty, the engine at a `tcp://` `DOCKER_HOST`
/// is reached over TLS, its certificate checked against `ca.pem` and berth's own certificate
/// (`cert.pem`, `key.pem`) shown to it, as CircleCI's remote Docker requires.
pub const DOCKER_TLS_VERIFY: &str = "DOCKER_TLS_VERIFY";

/// Standard Docker variable: the folder holding `ca.pem`, `cert.pem` and `key.pem` for
/// `DOCKER_TLS_VERIFY`. Default: `~/.docker`.
pub const DOCKER_CERT_PATH: &str = "DOCKER_CERT_PATH";

/// Colourless output when set to anything non-empty (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// The region from the environment and the variable it came from: `AWS_REGION`, else
/// `AWS_DEFAULT_REGION`.
pub fn aws_region() -> Option<(&'static str, String)> {
    [AWS_REGION, AWS_DEFAULT_REGION]
        .into_iter()
        .find_map(|name| var(name).map(|value| (name, value)))
}

/// The value of an environment variable, with unset, empty and non-UTF-8 values all read as
/// absent.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// CircleCI's commit sha for the job. When set, it is the commit being deployed (and the image
/// tag); otherwise berth asks `git rev-parse HEAD` in the build context.
pub const CIRCLE_SHA1: &str = "CIRCLE_SHA1";

/// CircleCI's branch of the job (its checkout is detached). When set, it is the branch an
/// environment's `branch` is checked against; otherwise the checkout's branch is.
pub const CIRCLE_BRANCH: &str = "CIRCLE_BRANCH";

/// Set (to anything non-empty) by CI systems, CircleCI included: plain timestamped progress
/// lines instead of a live terminal view, even under a pseudo-terminal.
pub const CI: &str = "CI";

/// CircleCI's URL of the running job: names the holder of an environment's lock, so a blocked
/// deploy can say which job holds it.
pub const CIRCLE_BUILD_URL: &str = "CIRCLE_BUILD_URL";

/// The login name; with the host name it names the lock's holder outside CircleCI.
pub const USER: &str = "USER";
