//! How the core tells people what it is doing: the [`Reporter`] trait, the [`Prompt`] it asks
//! through, and the narration of waits
//! and silent steps (the heartbeat that keeps CI from killing a quiet job). Nothing here knows
//! a terminal: the output module implements the trait for plain lines and for a live view.

use std::time::{Duration, Instant};

use crate::text::short_duration;

/// A warning: told now, and kept for the command's record (`warnings`).
pub fn warn(reporter: &dyn Reporter, warnings: &mut Vec<String>, warning: String) {
    reporter.info(&format!("warning: {warning}"));
    warnings.push(warning);
}

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

/// Questions for the person at the terminal, apart from the progress: only `berth unlock` asks.
pub trait Prompt: Sync {
    /// Asks a yes/no question; `None` when nobody can answer (not a terminal, CI).
    fn confirm(&self, question: &str) -> Option<bool>;
}

/// Nobody to ask: every question goes unanswered.
#[derive(Debug, Default)]
pub struct NoPrompt;

impl Prompt for NoPrompt {
    fn confirm(&self, _question: &str) -> Option<bool> {
        None
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
