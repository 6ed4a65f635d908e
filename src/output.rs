//! The terminal: progress on stderr through a [`Reporter`], results on stdout, logs on stderr.
//! The core calls a [`Reporter`]; only this module knows where the words go.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use crate::Outcome;
use crate::env_vars;
use crate::error::Error;
use crate::flags::OutputFormat;

/// Progress of a command, for people. Results go to stdout elsewhere; this is for stderr.
pub trait Reporter: Sync {
    fn step_started(&self, step: &str);
    fn step_finished(&self, step: &str, elapsed: Duration);
    /// The step's result is already in AWS; `why` says where.
    fn step_skipped(&self, step: &str, why: &str);
    fn info(&self, line: &str);
    /// One line of a process berth runs or watches (build output, migration logs).
    fn output(&self, source: &str, line: &str) {
        self.info(&format!("{source} | {line}"));
    }
    /// The state of a wait, called on every look at AWS. A terminal shows it in place; plain
    /// output shows it only in heartbeats ([`Watch`]).
    fn status(&self, _line: &str) {}
    /// How long since the last line, when that matters to the reader: plain output under CI,
    /// which kills a step that is silent too long. `None`: a live view shows time passing itself.
    fn quiet_for(&self) -> Option<Duration> {
        None
    }
}

/// One plain line per event on stderr, prefixed with the UTC wall-clock time (`12:04:05`) so a CI
/// log lines up with AWS events. Used when stderr is not a terminal or `CI` is set.
#[derive(Debug)]
pub struct PlainReporter {
    last_line: std::sync::Mutex<Instant>,
}

impl Default for PlainReporter {
    fn default() -> Self {
        Self {
            last_line: std::sync::Mutex::new(Instant::now()),
        }
    }
}

impl PlainReporter {
    fn line(&self, text: &str) {
        if let Ok(mut last) = self.last_line.lock() {
            *last = Instant::now();
        }
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        // `2024-05-01T12:04:05Z`: keep the time of day.
        let time = now.get(11..19).unwrap_or(&now);
        // Progress is best effort: a closed stderr must not fail the deploy.
        let _ = writeln!(std::io::stderr().lock(), "{time} {text}");
    }
}

impl Reporter for PlainReporter {
    fn step_started(&self, step: &str) {
        self.line(&format!("{step}: started"));
    }

    fn step_finished(&self, step: &str, elapsed: Duration) {
        self.line(&format!("{step}: done in {}", short_duration(elapsed)));
    }

    fn step_skipped(&self, step: &str, why: &str) {
        self.line(&format!("{step}: already done ({why})"));
    }

    fn info(&self, line: &str) {
        self.line(line);
    }

    fn quiet_for(&self) -> Option<Duration> {
        self.last_line.lock().ok().map(|last| last.elapsed())
    }
}

/// A live view for a person at a terminal: a spinner with the current step and its state, and
/// the step's lines printed above it.
pub struct TerminalReporter {
    bar: indicatif::ProgressBar,
}

impl Default for TerminalReporter {
    fn default() -> Self {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        Self { bar }
    }
}

impl Reporter for TerminalReporter {
    fn step_started(&self, step: &str) {
        self.bar.reset_elapsed();
        self.bar.set_prefix(step.to_owned());
        self.bar.set_message("");
        self.bar.enable_steady_tick(Duration::from_millis(120));
    }

    fn step_finished(&self, step: &str, elapsed: Duration) {
        self.bar.disable_steady_tick();
        self.bar
            .println(format!("✓ {step} ({})", short_duration(elapsed)));
        self.bar.set_prefix("");
        self.bar.set_message("");
    }

    fn step_skipped(&self, step: &str, why: &str) {
        self.bar.println(format!("- {step}: already done ({why})"));
    }

    fn info(&self, line: &str) {
        self.bar.println(line);
    }

    fn status(&self, line: &str) {
        self.bar.set_message(line.to_owned());
    }
}

impl Drop for TerminalReporter {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The reporter for this process: a live view on a terminal, plain lines under CI (CircleCI runs
/// steps under a pseudo-terminal and sets `CI=true`) or when stderr is not a terminal.
pub fn reporter() -> Box<dyn Reporter> {
    let ci = env_vars::var(env_vars::CI).is_some_and(|v| v != "false");
    if ci || !std::io::stderr().is_terminal() {
        Box::new(PlainReporter::default())
    } else {
        Box::new(TerminalReporter::default())
    }
}

/// Narrates a wait: the state on every look, and a heartbeat line with the elapsed time when the
/// reporter has been quiet for `every`, so CI never sees a silent step.
#[derive(Debug)]
pub struct Watch {
    started: Instant,
    every: Duration,
}

impl Watch {
    pub fn new(every: Duration) -> Self {
        Self {
            started: Instant::now(),
            every,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn beat(&self, reporter: &dyn Reporter, state: &str) {
        reporter.status(state);
        if heartbeat_due(reporter, self.every) {
            reporter.info(&format!(
                "{state} ({} elapsed)",
                short_duration(self.elapsed())
            ));
        }
    }
}

/// The reporter has been quiet for `every` (only plain output keeps count).
fn heartbeat_due(reporter: &dyn Reporter, every: Duration) -> bool {
    reporter.quiet_for().is_some_and(|quiet| quiet >= every)
}

/// Runs `work`, and while it runs prints `"{what}: still running (… elapsed)"` whenever the
/// reporter has been quiet for `every`: a build step or a layer upload can be silent for minutes,
/// and CI kills a silent step.
pub async fn with_heartbeat<F: std::future::Future>(
    work: F,
    reporter: &dyn Reporter,
    what: &str,
    every: Duration,
) -> F::Output {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = tick.tick() => {
                if heartbeat_due(reporter, every) {
                    reporter.info(&format!(
                        "{what}: still running ({} elapsed)",
                        short_duration(started.elapsed())
                    ));
                }
            }
        }
    }
}

/// Names in backticks, comma-separated: `` `web`, `devops` ``.
pub fn code_list<S: std::fmt::Display>(names: impl IntoIterator<Item = S>) -> String {
    names
        .into_iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1m 5s`, whole seconds.
pub fn short_duration(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// Writes the result of a command to stdout: nothing in text mode (the progress on stderr says it
/// all), one JSON object in JSON mode.
pub fn write_result(format: OutputFormat, outcome: &Outcome) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    let written = match (format, outcome) {
        (OutputFormat::Text, Outcome::Deploy { .. }) => Ok(()),
        (OutputFormat::Text, Outcome::Config { settings }) => crate::summary::lines(settings)
            .iter()
            .try_for_each(|line| writeln!(stdout, "{line}")),
        (OutputFormat::Json, Outcome::Deploy { report, failure }) => {
            let mut record = serde_json::to_value(report).map_err(std::io::Error::from);
            if let (Ok(serde_json::Value::Object(map)), Some(error)) = (&mut record, failure) {
                map.insert(
                    "error".to_owned(),
                    serde_json::json!({
                        "message": error.to_string(),
                        "exit_code": error.exit_status() as u8,
                    }),
                );
            }
            record.and_then(|record| json(&mut stdout, &record))
        }
        (OutputFormat::Json, Outcome::Config { settings }) => json(&mut stdout, settings),
    };
    written.or_else(ignore_broken_pipe).map_err(Error::Stdout)
}

fn json(out: &mut impl Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    writeln!(out)
}

/// A reader that stopped reading (`berth … | head`) is not an error.
fn ignore_broken_pipe(error: std::io::Error) -> std::io::Result<()> {
    match error.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(error),
    }
}

/// Sends `tracing` logs to stderr, filtered by `BERTH_LOG` (default `warn`), coloured only on a
/// terminal and only without `NO_COLOR`.
pub fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env(env_vars::BERTH_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Secrets must not reach the log at any level: bollard logs each request's URI at debug,
    // and a build request carries the build args (secret ones included) in its query string;
    // the HTTP layers below log raw traffic at trace.
    for quiet in QUIET_TARGETS {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let colour = std::io::stderr().is_terminal() && env_vars::var(env_vars::NO_COLOR).is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

/// Targets whose debug and trace logs can carry secrets; never more verbose than `info`.
const QUIET_TARGETS: &[&str] = &["bollard=info", "hyper=info", "hyper_util=info", "h2=info"];

/// Writes an error, its causes and its hint to stderr.
pub fn write_error(error: &Error) {
    let _ = std::io::stderr()
        .lock()
        .write_all(crate::error::render(error).as_bytes());
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::{Reporter, with_heartbeat};

    /// Records lines; claims to have been quiet for `quiet`.
    struct Recorder {
        lines: Mutex<Vec<String>>,
        quiet: Option<Duration>,
    }

    impl Reporter for Recorder {
        fn step_started(&self, _: &str) {}
        fn step_finished(&self, _: &str, _: Duration) {}
        fn step_skipped(&self, _: &str, _: &str) {}
        fn info(&self, line: &str) {
            self.lines.lock().unwrap().push(line.to_owned());
        }
        fn quiet_for(&self) -> Option<Duration> {
            self.quiet
        }
    }

    #[tokio::test]
    async fn a_silent_step_gets_heartbeats_and_keeps_its_result() {
        let quiet = Recorder {
            lines: Mutex::new(Vec::new()),
            quiet: Some(Duration::from_secs(60)),
        };
        let work = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            7
        };
        let result = with_heartbeat(work, &quiet, "push", Duration::from_millis(50)).await;
        assert_eq!(result, 7);
        let lines = quiet.lines.lock().unwrap();
        assert!(lines.len() >= 3, "{lines:?}");
        assert!(lines.iter().all(|l| l.starts_with("push: still running (")));
    }

    #[tokio::test]
    async fn a_live_view_or_a_talkative_step_gets_none() {
        for quiet in [None, Some(Duration::ZERO)] {
            let reporter = Recorder {
                lines: Mutex::new(Vec::new()),
                quiet,
            };
            let work = tokio::time::sleep(Duration::from_millis(200));
            with_heartbeat(work, &reporter, "build", Duration::from_millis(50)).await;
            assert!(reporter.lines.lock().unwrap().is_empty());
        }
    }
}
