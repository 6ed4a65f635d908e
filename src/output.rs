//! The terminal: progress on stderr through a [`Reporter`], results on stdout, logs on stderr.
//! The core calls a [`Reporter`]; only this module knows where the words go.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use crate::Outcome;
use crate::env_vars;
use crate::error::Error;
use crate::flags::OutputFormat;

/// Progress of a command, for people. Results go to stdout elsewhere; this is for stderr.
pub trait Reporter {
    fn step_started(&self, step: &str);
    fn step_finished(&self, step: &str, elapsed: Duration);
    fn info(&self, line: &str);
}

/// One plain line per event on stderr, prefixed with the UTC wall-clock time (`12:04:05`) so a CI
/// log lines up with AWS events.
#[derive(Debug, Default)]
pub struct PlainReporter;

impl PlainReporter {
    fn line(&self, text: &str) {
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
        let elapsed = Duration::from_secs(elapsed.as_secs());
        self.line(&format!(
            "{step}: done in {}",
            humantime::format_duration(elapsed)
        ));
    }

    fn info(&self, line: &str) {
        self.line(line);
    }
}

/// Writes the result of a command to stdout: nothing in text mode (the progress on stderr says it
/// all), one JSON object in JSON mode.
pub fn write_result(format: OutputFormat, outcome: &Outcome) -> Result<(), Error> {
    match (format, outcome) {
        (OutputFormat::Text, _) => Ok(()),
        (OutputFormat::Json, Outcome::Deploy { settings }) => {
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut stdout, settings)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(stdout))
                .or_else(ignore_broken_pipe)
                .map_err(Error::Stdout)
        }
    }
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
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_vars::BERTH_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = std::io::stderr().is_terminal() && env_vars::var(env_vars::NO_COLOR).is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

/// Writes an error, its causes and its hint to stderr.
pub fn write_error(error: &Error) {
    let _ = std::io::stderr()
        .lock()
        .write_all(crate::error::render(error).as_bytes());
}
