//! Hooks: the commands of berth.toml's `[hooks]`, run locally at points of a deploy (announce it
//! in chat, warm a cache, tag a release in the error tracker). Each runs as `sh -c COMMAND` in
//! the folder of berth.toml with the deploy's facts in `BERTH_*` variables, its output streamed
//! line by line, prefixed with the hook's name and masked like the build's, and killed (with
//! everything it started) at `hooks.timeout`. Where a hook sits in the deploy, and what its
//! failure does, is the deploy's to say.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::report::Reporter;
use crate::settings::HookSettings;
use crate::state::record::{HookOutcome, HookRan};
use crate::text::{Masker, short_duration};

/// A point of the deploy where a hook may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    BeforeDeploy,
    AfterDeploy,
    AfterFailure,
    BeforeMigrate,
    AfterMigrate,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Self::BeforeDeploy => "before_deploy",
            Self::AfterDeploy => "after_deploy",
            Self::AfterFailure => "after_failure",
            Self::BeforeMigrate => "before_migrate",
            Self::AfterMigrate => "after_migrate",
        }
    }

    /// The command berth.toml gives it, if any.
    pub fn command(self, hooks: &HookSettings) -> Option<&str> {
        match self {
            Self::BeforeDeploy => hooks.before_deploy.as_deref(),
            Self::AfterDeploy => hooks.after_deploy.as_deref(),
            Self::AfterFailure => hooks.after_failure.as_deref(),
            Self::BeforeMigrate => hooks.before_migrate.as_deref(),
            Self::AfterMigrate => hooks.after_migrate.as_deref(),
        }
    }
}

/// What a hook is told, as `BERTH_*` variables; an unknown value is an empty variable.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub deploy_id: String,
    pub env: String,
    pub commit: String,
    /// The image's tag, known from the start.
    pub tag: String,
    /// `sha256:…`, once the image is in ECR.
    pub digest: Option<String>,
    /// Where the revisions pull the image from, pinned by digest.
    pub image: Option<String>,
    pub services: Vec<String>,
    /// `succeeded`, `failed`, `rolled_back`, `interrupted`, `lost`: after the deploy.
    pub outcome: Option<String>,
    /// The deploy record's S3 URL.
    pub record: Option<String>,
    /// How the deploy failed (`after_failure`).
    pub error: Option<String>,
}

impl Facts {
    /// The variables, every one set (empty when unknown), so that a hook run with `set -u` in a
    /// shell sees them all.
    pub fn vars(&self, hook: Hook) -> Vec<(&'static str, String)> {
        let or_empty = |value: &Option<String>| value.clone().unwrap_or_default();
        vec![
            ("BERTH_HOOK", hook.name().to_owned()),
            ("BERTH_DEPLOY_ID", self.deploy_id.clone()),
            ("BERTH_ENV", self.env.clone()),
            ("BERTH_COMMIT", self.commit.clone()),
            ("BERTH_IMAGE_TAG", self.tag.clone()),
            ("BERTH_IMAGE_DIGEST", or_empty(&self.digest)),
            ("BERTH_IMAGE", or_empty(&self.image)),
            ("BERTH_SERVICES", self.services.join(",")),
            ("BERTH_OUTCOME", or_empty(&self.outcome)),
            ("BERTH_RECORD", or_empty(&self.record)),
            ("BERTH_ERROR", or_empty(&self.error)),
        ]
    }
}

/// Where hooks run and what they may not show.
pub struct Runner<'a> {
    pub hooks: &'a HookSettings,
    /// The folder of berth.toml.
    pub dir: &'a Path,
    pub masker: &'a Masker,
}

impl Runner<'_> {
    /// Runs `hook` if berth.toml gives it a command: `None` when it does not.
    pub async fn run(&self, hook: Hook, facts: &Facts, reporter: &dyn Reporter) -> Option<HookRan> {
        let command = hook.command(self.hooks)?;
        reporter.info(&format!(
            "hook `{}`: `{}`",
            hook.name(),
            self.masker.mask(command)
        ));
        let began = Instant::now();
        let (outcome, exit_code, summary) = self.spawn(hook, command, facts, reporter).await;
        let ran = HookRan {
            hook: hook.name().to_owned(),
            outcome,
            exit_code,
            seconds: began.elapsed().as_secs(),
            at: crate::state::now(),
            summary,
        };
        reporter.info(&format!("hook `{}`: {}", hook.name(), ran.said()));
        Some(ran)
    }

    async fn spawn(
        &self,
        hook: Hook,
        command: &str,
        facts: &Facts,
        reporter: &dyn Reporter,
    ) -> (HookOutcome, Option<i32>, Option<String>) {
        let spawned = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(self.dir)
            .envs(facts.vars(hook))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a timeout kills what the hook started too (`curl`, …).
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                return (
                    HookOutcome::Failed,
                    None,
                    Some(format!("could not be started: {error}")),
                );
            }
        };
        let label = hook.name();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let finished = async {
            tokio::join!(
                self.stream(stdout, label, reporter),
                self.stream(stderr, label, reporter)
            );
            child.wait().await
        };
        match tokio::time::timeout(self.hooks.timeout, finished).await {
            Ok(Ok(status)) if status.success() => (HookOutcome::Succeeded, Some(0), None),
            Ok(Ok(status)) => (
                HookOutcome::Failed,
                status.code(),
                Some(match status.code() {
                    Some(code) => format!("exited {code}"),
                    None => "was killed by a signal".to_owned(),
                }),
            ),
            Ok(Err(error)) => (
                HookOutcome::Failed,
                None,
                Some(format!("could not be waited on: {error}")),
            ),
            Err(_) => {
                if let Some(pid) = child.id() {
                    kill_group(pid);
                }
                let _ = child.kill().await;
                (
                    HookOutcome::TimedOut,
                    None,
                    Some(format!(
                        "was still running after {} (`hooks.timeout`) and was killed",
                        short_duration(self.hooks.timeout)
                    )),
                )
            }
        }
    }

    /// The lines of one of the hook's outputs, masked, as they come.
    async fn stream(
        &self,
        output: Option<impl AsyncRead + Unpin>,
        label: &str,
        reporter: &dyn Reporter,
    ) {
        let Some(output) = output else {
            return;
        };
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            reporter.output(label, &self.masker.mask(&line));
        }
    }
}

/// Kills the hook's process group: `sh` and whatever it started.
fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The values of the secret build args set in berth's environment: a hook's output masks them.
pub fn masker(settings: &crate::settings::Settings) -> Masker {
    let values: Vec<String> = settings
        .build
        .secret_args
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .collect();
    Masker::new(&values)
}
