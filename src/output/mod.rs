//! The terminal: progress on stderr through a [`Reporter`], results on stdout, logs on stderr.
//! The core calls a [`Reporter`]; only this module knows where the words go.

mod config;
mod plan;
mod status;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use crate::Outcome;
use crate::env_vars;
use crate::error::Error;
use crate::flags::OutputFormat;
use crate::report::Reporter;
use crate::text::short_duration;

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

    fn confirm(&self, question: &str) -> Option<bool> {
        ask(question)
    }
}

/// Asks on stderr and reads the answer from stdin, when a person can answer: stdin is a terminal
/// and this is not CI.
fn ask(question: &str) -> Option<bool> {
    if is_ci() || !std::io::stdin().is_terminal() {
        return None;
    }
    let _ = write!(std::io::stderr().lock(), "{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).ok()?;
    Some(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

fn is_ci() -> bool {
    env_vars::var(env_vars::CI).is_some_and(|v| v != "false")
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

    fn confirm(&self, question: &str) -> Option<bool> {
        self.bar.suspend(|| ask(question))
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
    if is_ci() || !std::io::stderr().is_terminal() {
        Box::new(PlainReporter::default())
    } else {
        Box::new(TerminalReporter::default())
    }
}

/// Writes the result of a command to stdout: nothing in text mode (the progress on stderr says it
/// all), one JSON object in JSON mode.
pub fn write_result(format: OutputFormat, outcome: &Outcome) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    let written = match (format, outcome) {
        (OutputFormat::Text, Outcome::Deploy { .. } | Outcome::Rollback { .. }) => Ok(()),
        (OutputFormat::Text, Outcome::Status { status }) => status::lines(status)
            .iter()
            .try_for_each(|line| writeln!(stdout, "{line}")),
        (OutputFormat::Text, Outcome::Unlock { env, released }) => match released {
            Some(holder) => writeln!(
                stdout,
                "released the lock of `{env}`, held by {}",
                holder.describe(crate::state::now())
            ),
            None => writeln!(stdout, "`{env}` was not locked"),
        },
        (OutputFormat::Json, Outcome::Status { status }) => json(&mut stdout, status),
        (OutputFormat::Json, Outcome::Unlock { env, released }) => json(
            &mut stdout,
            &serde_json::json!({"env": env, "released": released}),
        ),
        (OutputFormat::Json, Outcome::Rollback { report, failure }) => json(
            &mut stdout,
            &with_error(serde_json::to_value(report), failure.as_ref()),
        ),
        (OutputFormat::Text, Outcome::Config { settings }) => config::lines(settings)
            .iter()
            .try_for_each(|line| writeln!(stdout, "{line}")),
        (OutputFormat::Json, Outcome::Deploy { report, failure }) => json(
            &mut stdout,
            &with_error(serde_json::to_value(report), failure.as_ref()),
        ),
        (OutputFormat::Json, Outcome::Config { settings }) => json(&mut stdout, settings),
        (OutputFormat::Text, Outcome::Plan { plan }) => plan::lines(plan)
            .iter()
            .try_for_each(|line| writeln!(stdout, "{line}")),
        (OutputFormat::Json, Outcome::Plan { plan }) => json(&mut stdout, plan),
        (OutputFormat::Text, Outcome::Init { written }) => writeln!(
            stdout,
            "wrote `{}`: repository `{}`, containers {}; read it, then `berth deploy`",
            written.path.display(),
            written.repository,
            crate::text::code_list(&written.containers)
        ),
        (OutputFormat::Json, Outcome::Init { written }) => json(&mut stdout, written),
    };
    written.or_else(ignore_broken_pipe).map_err(Error::Stdout)
}

/// A command's record with how it failed, if it did, under `error`.
fn with_error(
    record: serde_json::Result<serde_json::Value>,
    failure: Option<&Error>,
) -> serde_json::Value {
    let mut record = record.unwrap_or_default();
    if let (serde_json::Value::Object(map), Some(error)) = (&mut record, failure) {
        map.insert(
            "error".to_owned(),
            serde_json::json!({
                "message": error.to_string(),
                "exit_code": error.exit_status() as u8,
            }),
        );
    }
    record
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
    // By default the credentials chain's per-provider warnings stay quiet: when no provider has
    // credentials, berth says so in one line.
    let mut filter = tracing_subscriber::EnvFilter::try_from_env(env_vars::BERTH_LOG)
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,aws_config::meta::credentials=error")
        });
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
