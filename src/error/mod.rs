//! What can go wrong, the hint that goes with it, and the exit code it ends with.

mod config;

pub use config::{ConfigError, Place};

/// How `berth` ends. The numbers are part of the interface: scripts and CI branch on them.
///
/// | code | meaning |
/// |------|---------|
/// | 0    | success |
/// | 1    | deploy failed: the build or push failed, the rollout failed, was rolled back or timed out, an AWS call was denied, or the run lost the lock |
/// | 2    | usage or configuration error: bad flags, bad `berth.toml`; nothing was changed |
/// | 3    | migration failed; for `berth run`, the task did not run its command to an exit code (ECS could not start it, it was left running at `--timeout`) |
/// | 4    | environment error: no Docker, no AWS credentials, AWS unreachable |
/// | 5    | another deploy holds the environment's lock; nothing was changed |
/// | 7    | a service deployment waits at a pause hook: nothing failed, nothing is finished |
/// | 130  | interrupted (Ctrl-C, or SIGTERM as when CircleCI cancels a job) |
///
/// `berth run` ends with its command's own exit code once the task ran it; the codes above are
/// berth's only when the command did not run (its JSON result says which under `exit_code` and
/// `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    DeployFailed,
    Usage,
    MigrationFailed,
    Environment,
    Locked,
    /// `berth plan`: a deploy would change nothing.
    NothingToDeploy,
    /// A service deployment waits at a pause hook for a person (`berth continue`).
    Paused,
    Interrupted,
    /// `berth run`: the exit code of the command the task ran.
    Command(u8),
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::DeployFailed => 1,
            Self::Usage => 2,
            Self::MigrationFailed => 3,
            Self::Environment => 4,
            Self::Locked => 5,
            Self::NothingToDeploy => 6,
            Self::Paused => 7,
            Self::Interrupted => 130,
            Self::Command(code) => code,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        Self::from(status.code())
    }
}

/// Any failure of a berth command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("cannot reach the Docker engine at `{host}`{}", if *.tls { " over TLS" } else { "" })]
    DockerUnreachable {
        host: String,
        tls: bool,
        #[source]
        source: bollard::errors::Error,
    },

    /// `DOCKER_TLS_VERIFY` asks for TLS, and the certificates are not there.
    #[error("{problem}")]
    DockerTls { problem: String },

    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),

    #[error("cannot write the result to stdout")]
    Stdout(#[source] std::io::Error),

    #[error("interrupted")]
    Interrupted,

    /// A service deployment waits at a pause hook: nothing failed, nothing is finished.
    #[error("{what}")]
    Paused { what: String, env: String },

    /// The commit to deploy could not be determined, or the work tree is dirty.
    #[error("{problem}")]
    Git { problem: String, hint: String },

    /// Something the settings name does not exist in AWS, or does not fit; found before any
    /// change was made.
    #[error("{problem}")]
    Mismatch { problem: String, hint: String },

    /// An AWS call failed. `environment` is true when AWS could not be reached or would not
    /// accept our credentials; `transient` when it failed as the SDK retries (throttling, a
    /// server error, no answer) and only ran out of attempts.
    #[error("{action} failed")]
    Aws {
        action: String,
        environment: bool,
        transient: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The default credentials chain found no credentials.
    #[error(
        "no AWS credentials: tried `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, the profile (`AWS_PROFILE` or `default` in `~/.aws`), SSO, web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`), the ECS container endpoint and EC2 instance metadata: {detail}"
    )]
    NoCredentials { detail: String },

    /// STS would not trade CircleCI's OIDC token for `AWS_ROLE_ARN`'s credentials.
    #[error("AWS refused CircleCI's OIDC token (`{token_var}`) for role `{role_arn}`: {detail}")]
    OidcRefused {
        role_arn: String,
        token_var: &'static str,
        detail: String,
    },

    /// `AWS_ROLE_ARN` is set and no OIDC token can be had to assume it with.
    #[error("no OIDC token to assume role `{role_arn}` (`AWS_ROLE_ARN`): {problem}")]
    OidcToken { role_arn: String, problem: String },

    /// The credentials may not make an AWS call. `iam_action` is the one AWS named.
    #[error("{action} was refused: access denied")]
    AccessDenied {
        action: String,
        iam_action: Option<String>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Building or pushing the image failed; the cause says why.
    #[error("the {step} failed")]
    Image {
        step: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("the rollout of {service} failed: {reason}")]
    RolloutFailed { service: String, reason: String },

    /// `cause`: the health or stop reason of the newest failing task, when one was seen.
    #[error("the rollout did not finish within {timeout}: {state}{}", .cause.as_ref().map(|c| format!("; {c}")).unwrap_or_default())]
    RolloutTimeout {
        timeout: String,
        state: String,
        cause: Option<String>,
    },

    /// A service's `UpdateService` failed: a failed rollout, though another service may have
    /// moved.
    #[error("{service} was not moved: its update failed")]
    UpdateFailed {
        service: String,
        #[source]
        source: Box<Error>,
    },

    /// A failed rollout after which every service this deploy moved went back
    /// (`on_failure = "rollback"`): `failure` says what failed, with its causes, `back` where
    /// each service is now.
    #[error("{failure}; rolled back: {back}")]
    RolledBack {
        failure: String,
        back: String,
        /// What to do about the failure itself.
        hint: String,
    },

    #[error("the migration failed: {summary}")]
    MigrationFailed { summary: String, hint: String },

    /// Another run holds the environment's lock.
    #[error("`{env}` is locked by {holder}{}", .waited.as_ref().map(|w| format!("; waited {w}")).unwrap_or_default())]
    Locked {
        env: String,
        holder: String,
        /// How long this run waited (`--lock-wait`).
        waited: Option<String>,
        /// Until the holder's lease runs out unless renewed.
        lease_left: String,
    },

    /// A rerun of a deploy older than the newest one started on the environment.
    #[error("deploy `{deploy_id}` is older than the newest deploy of this environment, {newer}")]
    StaleDeploy { deploy_id: String, newer: String },

    /// `requires`: the image has no successful deploy in the environment that must test it.
    #[error("`{env}` takes an image only once `{requires}` deployed it, and {missing}")]
    Untested {
        env: String,
        requires: String,
        /// What is missing: `` `stg` has no successful deploy of image `tree-3be2…` ``.
        missing: String,
    },

    /// The environment deploys from another branch than the one checked out.
    #[error("`{env}` deploys from branch `{wanted}`, {found}")]
    WrongBranch {
        env: String,
        wanted: String,
        /// What was found instead: `not from `main` (the checkout's branch)`.
        found: String,
    },

    /// `berth run`: the task did not end with its command exiting 0. `exit_code`: the command's,
    /// when it ran and failed; `None` when it never ran to an exit code of its own.
    #[error("{summary}")]
    TaskFailed {
        summary: String,
        hint: String,
        exit_code: Option<u8>,
    },

    /// `berth run`: a deploy of the environment is between registering its revisions and rolling
    /// them out, so the service's revision is on its way out.
    #[error("a deploy of `{env}` is in flight: {why}")]
    DeployInFlight { env: String, why: String },

    /// A `before_deploy` hook failed: the deploy stopped before any change in AWS. `left`: what
    /// the run could not undo in S3 (`None`: the lock went back as it was, nothing was written).
    #[error("hook `{hook}` {summary}: the deploy stopped before any change")]
    HookFailed {
        hook: &'static str,
        summary: String,
        left: Option<String>,
    },

    /// The lock was taken over while this run held it; it stopped before changing anything more.
    #[error("this run lost the environment's lock: {why}")]
    LockLost { why: String },
}

impl Error {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Self::Config(_) => ExitStatus::Usage,
            Self::DockerUnreachable { .. }
            | Self::DockerTls { .. }
            | Self::NoCredentials { .. }
            | Self::OidcRefused { .. }
            | Self::OidcToken { .. }
            | Self::Runtime(_)
            | Self::Stdout(_) => ExitStatus::Environment,
            Self::Interrupted => ExitStatus::Interrupted,
            Self::Paused { .. } => ExitStatus::Paused,
            Self::Git { .. } | Self::Mismatch { .. } => ExitStatus::Usage,
            Self::Aws { environment, .. } => {
                if *environment {
                    ExitStatus::Environment
                } else {
                    ExitStatus::DeployFailed
                }
            }
            Self::AccessDenied { .. }
            | Self::Image { .. }
            | Self::RolloutFailed { .. }
            | Self::RolloutTimeout { .. }
            | Self::UpdateFailed { .. }
            | Self::RolledBack { .. } => ExitStatus::DeployFailed,
            Self::MigrationFailed { .. } => ExitStatus::MigrationFailed,
            Self::Locked { .. } => ExitStatus::Locked,
            Self::StaleDeploy { .. } | Self::WrongBranch { .. } | Self::Untested { .. } => {
                ExitStatus::Usage
            }
            Self::LockLost { .. } => ExitStatus::DeployFailed,
            Self::TaskFailed {
                exit_code: Some(code),
                ..
            } => ExitStatus::Command(*code),
            Self::TaskFailed { .. } => ExitStatus::MigrationFailed,
            Self::DeployInFlight { .. } => ExitStatus::Locked,
            Self::HookFailed { left: None, .. } => ExitStatus::Usage,
            Self::HookFailed { .. } => ExitStatus::DeployFailed,
        }
    }

    /// What the user can do about it: every error has one.
    pub fn hint(&self) -> String {
        match self {
            Self::Config(error) => error.hint(),
            Self::DockerUnreachable { tls: true, .. } | Self::DockerTls { .. } => format!(
                "`{}` must hold `ca.pem` (the CA that signed the engine's certificate), `cert.pem` and `key.pem` (berth's client certificate); CircleCI's `setup_remote_docker` sets `{}`, `{}` and `{}`",
                crate::env_vars::DOCKER_CERT_PATH,
                crate::env_vars::DOCKER_HOST,
                crate::env_vars::DOCKER_TLS_VERIFY,
                crate::env_vars::DOCKER_CERT_PATH
            ),
            Self::DockerUnreachable { .. } => format!(
                "start Docker, or set `{}` to the engine's address (for example `unix:///var/run/docker.sock`)",
                crate::env_vars::DOCKER_HOST
            ),
            Self::Runtime(_) => {
                "the machine is short of threads or file descriptors; retry, and check `ulimit -n`"
                    .to_owned()
            }
            Self::Stdout(_) => {
                "stdout was closed or is full: check what berth's output is piped into".to_owned()
            }
            Self::Interrupted => "a rollout or migration berth started goes on in ECS (unless `on_cancel = \"rollback\"`, which has ECS roll back the service deployments still in flight); rerun the same command to attach to it, or stop a service deployment with `aws ecs stop-service-deployment --stop-type ROLLBACK`".to_owned(),
            Self::Paused { env, .. } => format!(
                "a person decides: `berth continue --env {env}` lets it go on and finishes the deploy, `berth continue --env {env} --rollback` goes back; a rerun of this deploy waits on it again (docs/troubleshooting.md)"
            ),
            Self::Git { hint, .. } | Self::Mismatch { hint, .. } => hint.clone(),
            Self::Aws { environment: true, .. } => "check AWS credentials (`AWS_PROFILE`, `aws sso login`) and that AWS is reachable; `AWS_ENDPOINT_URL` points berth elsewhere".to_owned(),
            Self::Aws { .. } => "the cause above is AWS's own message".to_owned(),
            Self::OidcToken { .. } => format!(
                "inside a CircleCI job, run it with a context (CircleCI gives the job `{}` then) or keep the CircleCI CLI on PATH (berth runs `circleci run oidc get`); elsewhere unset `AWS_ROLE_ARN` to use other credentials",
                crate::env_vars::CIRCLE_OIDC_TOKEN_V2
            ),
            Self::OidcRefused { detail, .. } if detail.starts_with("ExpiredTokenException") => "the token has expired (CircleCI's last one hour); keep the CircleCI CLI on PATH so that berth mints a fresh one with `circleci run oidc get`".to_owned(),
            Self::OidcRefused { .. } => "the role's trust policy must allow `sts:AssumeRoleWithWebIdentity` to the IAM OIDC provider `oidc.circleci.com/org/<organization id>` with the organization id as audience; the job must run with a context (CircleCI mints OIDC tokens only then)".to_owned(),
            Self::NoCredentials { .. } => "log in (`aws sso login`), set `AWS_PROFILE` or `--profile`, or export `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; in CircleCI, set `AWS_ROLE_ARN` and berth trades the job's OIDC token for it, or use a context with the keys".to_owned(),
            Self::AccessDenied { iam_action, action, .. } => format!(
                "grant {} to the role berth runs as; docs/configuration.md (AWS permissions) lists every action berth calls",
                iam_action.as_ref().map_or_else(|| format!("the IAM action for {action}"), |a| format!("`{a}`"))
            ),
            Self::Image { step: "build", .. } => "the build output above says why; fix it and deploy again: nothing was pushed and no service changed (the deploy's record in S3 says it failed)".to_owned(),
            Self::Image { .. } => "the cause above is the engine's or the registry's; rerun the same command: the image is rebuilt from the engine's cache and nothing in ECS changed yet".to_owned(),
            Self::RolloutFailed { .. } => "the service events and the stopped tasks above say why, and where each service is; fix the cause and deploy again: finished steps are skipped (docs/troubleshooting.md)".to_owned(),
            Self::RolloutTimeout { .. } => "the deployments go on in ECS (`on_failure = \"leave\"`): rerun the same command to wait again (nothing is redone), or raise `timeouts.rollout`".to_owned(),
            Self::UpdateFailed { source, .. } => source.hint(),
            Self::RolledBack { hint, .. } => format!("{hint}; the environment runs what it ran before this deploy, and a rerun of this deploy rolls it out again (docs/troubleshooting.md)"),
            Self::MigrationFailed { hint, .. } => hint.clone(),
            Self::Locked { env, lease_left, .. } => format!(
                "wait for it to finish, or pass `--lock-wait 15m` to wait here; if the holder is gone for good its lease runs out within {lease_left}, or release it now with `berth unlock --env {env}`"
            ),
            Self::StaleDeploy { .. } => "deploy the newer commit instead, or pass `--force` to roll this older deploy out over it".to_owned(),
            Self::Untested { requires, .. } => format!("deploy this build to `{requires}` first (this commit, or any with the same build context), or pass `--force` to deploy it untested"),
            Self::WrongBranch { wanted, .. } => format!("deploy a commit of `{wanted}`, or pass `--any-branch` to deploy this one anyway (`branch` in berth.toml names the environment's branch)"),
            Self::TaskFailed { hint, .. } => hint.clone(),
            Self::DeployInFlight { env, .. } => format!("wait for it to finish (`berth status --env {env}`), or name the revision to run with `--revision`"),
            Self::HookFailed { hook, left: None, .. } => format!("its output above says why; nothing was written (the lock went back as it was): fix it, or `[hooks] {hook}` in berth.toml, and deploy again"),
            Self::HookFailed { hook, left: Some(left), .. } => format!("its output above says why; nothing in AWS changed, but {left}: fix the hook, or `[hooks] {hook}` in berth.toml, and deploy again"),
            Self::LockLost { .. } => "this run stopped before its next change; if another deploy ran since (above), the environment runs that one and a rerun of this deploy is refused as stale (deploy a newer commit, or `--force`); otherwise rerun the same command: finished steps are skipped".to_owned(),
        }
    }
}

/// Renders an error for the terminal: `error: <message>`, a `caused by:` line per underlying
/// error, then `hint: <hint>`. Plain text, so it reads the same with or without colour.
pub fn render(error: &Error) -> String {
    let mut out = format!("error: {error}\n");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        out.push_str(&format!("  caused by: {cause}\n"));
        source = cause.source();
    }
    out.push_str(&format!("hint: {}\n", error.hint()));
    out
}

/// For tests: `got` is a settings error (exit 2) whose message holds `part`.
#[cfg(test)]
pub(crate) fn assert_usage_error<T: std::fmt::Debug>(
    got: Result<T, Error>,
    part: &str,
    case: &str,
) {
    match got {
        Err(error) => {
            assert!(error.to_string().contains(part), "{case}: {error}");
            assert_eq!(error.exit_status(), ExitStatus::Usage, "{case}");
        }
        Ok(value) => panic!("{case}: got {value:?}, not an error with {part:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_puts_message_then_hint() {
        let error = Error::Config(ConfigError::Missing {
            file: "berth.toml".to_owned(),
            key: "env.stg.cluster".to_owned(),
            hint: "add `cluster`".to_owned(),
        });
        assert_eq!(
            render(&error),
            "error: berth.toml: `env.stg.cluster` is not set\nhint: add `cluster`\n"
        );
        assert_eq!(error.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn place_shows_line_and_column_when_known() {
        let place = Place {
            file: "berth.toml".to_owned(),
            position: Some((4, 11)),
        };
        assert_eq!(place.to_string(), "berth.toml:4:11");
    }

    /// Every error, the build's and the push's included, ends with what to do about it.
    #[test]
    fn every_error_ends_with_a_hint() {
        let io = || std::io::Error::other("closed");
        let errors = [
            Error::Runtime(io()),
            Error::Stdout(io()),
            Error::Interrupted,
            Error::Image {
                step: "build",
                source: "`RUN exit 3` failed".into(),
            },
            Error::Image {
                step: "push",
                source: "denied".into(),
            },
            Error::Aws {
                action: "describing services".into(),
                environment: false,
                transient: false,
                source: "AccessDenied".into(),
            },
            Error::RolloutFailed {
                service: "`web`".into(),
                reason: "rolled back".into(),
            },
            Error::RolloutTimeout {
                timeout: "30m".into(),
                state: "IN_PROGRESS".into(),
                cause: None,
            },
            Error::UpdateFailed {
                service: "`web`".into(),
                source: Box::new(Error::Interrupted),
            },
            Error::RolledBack {
                failure: "the rollout of `web` failed".into(),
                back: "`web` on `web:3`".into(),
                hint: "the service events above say why".into(),
            },
        ];
        for error in errors {
            let rendered = render(&error);
            let last = rendered.lines().last().unwrap_or_default();
            assert!(
                last.starts_with("hint: ") && last.len() > "hint: ".len() + 10,
                "{rendered}"
            );
        }
    }
}
