//! The progress on stderr: plain lines under CI or without a terminal, a live view at a terminal,
//! and the questions asked there.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use crate::env_vars;
use crate::report::{Prompt, Reporter};
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
        // Progress is best effort: a closed stderr must not fail the deploy.
        let _ = writeln!(std::io::stderr().lock(), "{} {text}", time_of_day());
    }
}

/// The UTC time of day, `12:04:05`, that starts every plain line.
pub(super) fn time_of_day() -> String {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    // `2024-05-01T12:04:05Z`: keep the time of day.
    now.get(11..19).unwrap_or(&now).to_owned()
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

impl Prompt for PlainReporter {
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

    fn step_failed(&self, step: &str, elapsed: Duration, why: &str) {
        self.bar.disable_steady_tick();
        self.bar
            .println(format!("✗ {step} ({}): {why}", short_duration(elapsed)));
        self.bar.set_prefix("");
        self.bar.set_message("");
    }

    fn info(&self, line: &str) {
        self.bar.println(line);
    }

    fn status(&self, line: &str) {
        self.bar.set_message(line.to_owned());
    }
}

impl Prompt for TerminalReporter {
    fn confirm(&self, question: &str) -> Option<bool> {
        self.bar.suspend(|| ask(question))
    }
}

impl Drop for TerminalReporter {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// What the core talks to a person through: the progress and the questions.
pub trait Console: Reporter + Prompt {}

impl<T: Reporter + Prompt> Console for T {}

/// The console of this process: a live view on a terminal, plain lines under CI (CircleCI runs
/// steps under a pseudo-terminal and sets `CI=true`) or when stderr is not a terminal.
pub fn console() -> Box<dyn Console> {
    if is_ci() || !std::io::stderr().is_terminal() {
        Box::new(PlainReporter::default())
    } else {
        Box::new(TerminalReporter::default())
    }
}
