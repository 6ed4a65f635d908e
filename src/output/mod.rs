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
        // A detached task's ARN, for a script to follow it with; a followed one's end was said
        // on stderr.
        Outcome::Run { ran, .. } if ran.detached => vec![ran.task_arn.clone()],
        Outcome::Run { .. } => Vec::new(),
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
        Outcome::Run { ran, failure } => json(out, &with_error(to_value(ran), failure.as_ref())),
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
                "exit_code": error.exit_status().code(),
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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    // Without `BERTH_LOG`, only warnings come through (from where no reporter reaches, such as
    // the credentials provider): they read like berth's own warning lines.
    if env_vars::var(env_vars::BERTH_LOG).is_none() {
        logs.event_format(WarningLines).init();
    } else {
        logs.init();
    }
}

/// `12:04:05 warning: …`, as the plain progress writes its warnings.
struct WarningLines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for WarningLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            _ => "note",
        };
        write!(writer, "{} {level}: ", reporters::time_of_day())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
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
mod warning_lines {
    use std::sync::{Arc, Mutex};

    /// A warning from where no reporter reaches (the credentials provider) reads like berth's
    /// own: `12:04:05 warning: …`, without tracing's level, target or fields.
    #[test]
    fn a_logged_warning_reads_like_berths_own() {
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(super::WarningLines)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("role `r` allows sessions of less than 90 minutes");
        });
        let line = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let (time, rest) = line.split_at(8);
        assert!(
            time.bytes().enumerate().all(|(i, b)| if i % 3 == 2 {
                b == b':'
            } else {
                b.is_ascii_digit()
            }),
            "{line:?}"
        );
        assert_eq!(
            rest,
            " warning: role `r` allows sessions of less than 90 minutes\n"
        );
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
