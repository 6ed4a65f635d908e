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
        // Whatever ends this run (a timeout, Ctrl-C dropping the deploy) kills the hook's whole
        // process group: `sh` and what it started.
        let group = Group(child.id());
        let label = hook.name();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let reading = async {
            tokio::join!(
                self.stream(stdout, label, reporter),
                self.stream(stderr, label, reporter)
            );
        };
        let finished = async {
            tokio::pin!(reading);
            // The hook's end decides, not its outputs' ends: a process it left in the background
            // may hold them open. What it wrote by then is read for a moment more.
            let mut read = false;
            let status = tokio::select! {
                status = child.wait() => status,
                () = &mut reading => {
                    read = true;
                    child.wait().await
                }
            };
            if !read {
                let _ = tokio::time::timeout(OUTPUT_GRACE, &mut reading).await;
            }
            status
        };
        let outcome = outcome(
            tokio::time::timeout(self.hooks.timeout, finished).await,
            self.hooks.timeout,
        );
        drop(group);
        let _ = child.kill().await;
        outcome
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
        // Bytes, not text: a line that is not UTF-8 is shown as best it can be, and the reading
        // goes on (a reader that stopped would leave the hook writing into a closed pipe).
        let mut output = BufReader::new(output);
        let mut line = Vec::new();
        while matches!(output.read_until(b'\n', &mut line).await, Ok(read) if read > 0) {
            let text = String::from_utf8_lossy(&line);
            reporter.output(
                label,
                &self.masker.mask(text.trim_end_matches(['\n', '\r'])),
            );
            line.clear();
        }
    }
}

/// The hook's end, from how its wait ended: its status, an error, or `hooks.timeout`.
fn outcome(
    waited: Result<std::io::Result<std::process::ExitStatus>, tokio::time::error::Elapsed>,
    timeout: std::time::Duration,
) -> (HookOutcome, Option<i32>, Option<String>) {
    match waited {
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
        Err(_) => (
            HookOutcome::TimedOut,
            None,
            Some(format!(
                "was still running after {} (`hooks.timeout`) and was killed",
                short_duration(timeout)
            )),
        ),
    }
}

/// How long a hook's output is still read once the hook has ended.
const OUTPUT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// A hook's process group, killed when dropped: `sh` and whatever it started. `kill(1)` with a
/// negative id signals the group (berth makes no libc calls of its own).
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::{Facts, Hook, Runner};
    use crate::report::Reporter;
    use crate::settings::HookSettings;
    use crate::state::record::HookOutcome;
    use crate::text::Masker;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Reporter for Lines {
        fn step_started(&self, _: &str) {}
        fn step_finished(&self, _: &str, _: Duration) {}
        fn step_skipped(&self, _: &str, _: &str) {}
        fn info(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
    }

    async fn run(
        command: &str,
        timeout: Duration,
        dir: &std::path::Path,
    ) -> (HookOutcome, Vec<String>) {
        let hooks = HookSettings {
            after_deploy: Some(command.to_owned()),
            timeout,
            ..HookSettings::default()
        };
        let masker = Masker::new(&["s3cr3t".to_owned()]);
        let runner = Runner {
            hooks: &hooks,
            dir,
            masker: &masker,
        };
        let lines = Lines::default();
        let ran = runner
            .run(Hook::AfterDeploy, &Facts::default(), &lines)
            .await
            .unwrap();
        (ran.outcome, lines.0.into_inner().unwrap())
    }

    /// A hook's output is read as bytes and masked; one that leaves a process behind holding its
    /// output ends when it ends; one past its timeout is killed with what it started.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_hook_ends_with_its_shell_and_its_timeout_kills_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let (outcome, lines) = run(
            r"printf 'caf\351 s3cr3t\n'; echo $BERTH_HOOK; exit 3",
            Duration::from_secs(10),
            dir.path(),
        )
        .await;
        assert_eq!(outcome, HookOutcome::Failed);
        assert!(
            lines.contains(&"after_deploy | caf\u{fffd} ***".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"after_deploy | after_deploy".to_owned()),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l.contains("exited 3")), "{lines:?}");

        let began = Instant::now();
        let (outcome, _) = run("sleep 30 & echo left", Duration::from_secs(10), dir.path()).await;
        assert_eq!(outcome, HookOutcome::Succeeded);
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );

        let marker = dir.path().join("survived");
        let command = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let (outcome, lines) = run(&command, Duration::from_millis(500), dir.path()).await;
        assert_eq!(outcome, HookOutcome::TimedOut, "{lines:?}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !marker.exists(),
            "the hook's background process outlived its timeout"
        );
    }
}
