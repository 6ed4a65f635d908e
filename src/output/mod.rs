//! The terminal: progress on stderr through a [`Console`] (`reporters.rs`), results on stdout
//! (text or JSON), logs on stderr. The core calls a `Reporter` and a `Prompt`; only this module
//! knows where the words go.

mod config;
mod plan;
mod reporters;
mod status;

use std::io::{IsTerminal, Write};

use crate::Outcome;
use crate::env_vars;
use crate::error::Error;
use crate::flags::OutputFormat;
pub use reporters::{Console, PlainReporter, TerminalReporter, console};

/// Writes the result of a command to stdout: as lines of text, or as one JSON object.
pub fn write_result(format: OutputFormat, outcome: &Outcome) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    let written = match format {
        OutputFormat::Text => text(outcome)
            .iter()
            .try_for_each(|line| writeln!(stdout, "{line}")),
        OutputFormat::Json => write_record(&mut stdout, outcome),
    };
    written.or_else(ignore_broken_pipe).map_err(Error::Stdout)
}

/// The result for a person. A deploy and a rollback print nothing: the progress on stderr said
/// it all.
fn text(outcome: &Outcome) -> Vec<String> {
    match outcome {
        Outcome::Deploy { .. } | Outcome::Rollback { .. } => Vec::new(),
        Outcome::Status { status } => status::lines(status),
        Outcome::Config { settings } => config::lines(settings),
        Outcome::Plan { plan } => plan::lines(plan),
        Outcome::Unlock { env, released } => vec![match released {
            Some(holder) => format!(
                "released the lock of `{env}`, held by {}",
                holder.describe(crate::state::now())
            ),
            None => format!("`{env}` was not locked"),
        }],
        Outcome::Init { written } => vec![format!(
            "wrote `{}`: repository `{}`, containers {}; read it, then `berth deploy`",
            written.path.display(),
            written.repository,
            crate::text::code_list(&written.containers)
        )],
    }
}

/// The result for a program: the command's record as one JSON object, with how it failed
/// under `error`.
fn write_record(out: &mut impl Write, outcome: &Outcome) -> std::io::Result<()> {
    use serde_json::to_value;
    match outcome {
        Outcome::Deploy { report, failure } => {
            json(out, &with_error(to_value(report), failure.as_ref()))
        }
        Outcome::Rollback { report, failure } => {
            json(out, &with_error(to_value(report), failure.as_ref()))
        }
        Outcome::Status { status } => json(out, status),
        Outcome::Config { settings } => json(out, settings),
        Outcome::Plan { plan } => json(out, plan),
        Outcome::Init { written } => json(out, written),
        Outcome::Unlock { env, released } => {
            json(out, &serde_json::json!({"env": env, "released": released}))
        }
    }
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
