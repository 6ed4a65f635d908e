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
    /// The step failed: told at once, before whatever follows the failure (a restore) runs.
    fn step_failed(&self, step: &str, elapsed: Duration, why: &str) {
        self.info(&format!(
            "{step}: failed after {}: {why}",
            crate::text::short_duration(elapsed)
        ));
    }
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

/// Narrates a wait: the state on every look, and a heartbeat line with the elapsed time whenever
/// the reporter has been quiet for `every`, so CI never sees a silence longer than that. The
/// heartbeat comes from [`Watch::around`], which runs the whole wait: a pause between looks, or a
/// look at AWS slowed by retries, cannot delay it.
#[derive(Debug)]
pub struct Watch {
    started: Instant,
    every: Duration,
    /// The state as last looked at: what a heartbeat says.
    state: std::sync::Mutex<String>,
}

impl Watch {
    pub fn new(every: Duration) -> Self {
        Self {
            started: Instant::now(),
            every,
            state: std::sync::Mutex::new(String::new()),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The state after a look: shown in place, and said by the heartbeats until the next look.
    pub fn beat(&self, reporter: &dyn Reporter, state: &str) {
        reporter.status(state);
        if let Ok(mut last) = self.state.lock() {
            state.clone_into(&mut last);
        }
    }

    /// Runs the wait `work`, with a heartbeat line (the last state and the time elapsed) each
    /// time the reporter has been quiet for `every`.
    pub async fn around<F: std::future::Future>(
        &self,
        reporter: &dyn Reporter,
        what: &str,
        work: F,
    ) -> F::Output {
        let line = || {
            let state = self.state.lock().map(|s| s.clone()).unwrap_or_default();
            let state = if state.is_empty() { what } else { &state };
            format!("{state} ({} elapsed)", short_duration(self.elapsed()))
        };
        beating(work, reporter, self.every, line).await
    }
}

/// The time left until the reporter has been quiet for `every`; `None`: it never needs a
/// heartbeat (a live view shows time passing itself).
fn due_in(reporter: &dyn Reporter, every: Duration) -> Option<Duration> {
    reporter
        .quiet_for()
        .map(|quiet| every.saturating_sub(quiet + SLACK))
}

/// A heartbeat comes this much early, so that timer and scheduling delays never make a silence
/// longer than `every`.
const SLACK: Duration = Duration::from_millis(100);

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
    let line = || {
        format!(
            "{what}: still running ({} elapsed)",
            short_duration(started.elapsed())
        )
    };
    beating(work, reporter, every, line).await
}

/// Runs `work`; sleeps until the reporter will have been quiet for `every`, and then, if it
/// still has, prints `line()`.
async fn beating<F: std::future::Future>(
    work: F,
    reporter: &dyn Reporter,
    every: Duration,
    line: impl Fn() -> String,
) -> F::Output {
    tokio::pin!(work);
    loop {
        let Some(due) = due_in(reporter, every) else {
            return work.await;
        };
        tokio::select! {
            output = &mut work => return output,
            () = tokio::time::sleep(due) => {
                if due_in(reporter, every) == Some(Duration::ZERO) {
                    reporter.info(&line());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{Reporter, Watch, with_heartbeat};

    /// Records lines and when each came; quiet since its last line, as plain output under CI
    /// counts it, unless `live`.
    struct Recorder {
        lines: Mutex<Vec<(Instant, String)>>,
        began: Instant,
        live: bool,
    }

    impl Recorder {
        fn new(live: bool) -> Self {
            Self {
                lines: Mutex::new(Vec::new()),
                began: Instant::now(),
                live,
            }
        }

        /// The longest silence: from the start to the first line, between lines, and from the
        /// last line to `end`.
        fn longest_silence(&self, end: Instant) -> Duration {
            let lines = self.lines.lock().unwrap();
            let mut times: Vec<Instant> = vec![self.began];
            times.extend(lines.iter().map(|(at, _)| *at));
            times.push(end);
            times.windows(2).map(|w| w[1] - w[0]).max().unwrap()
        }
    }

    impl Reporter for Recorder {
        fn step_started(&self, _: &str) {}
        fn step_finished(&self, _: &str, _: Duration) {}
        fn step_skipped(&self, _: &str, _: &str) {}
        fn info(&self, line: &str) {
            self.lines
                .lock()
                .unwrap()
                .push((Instant::now(), line.to_owned()));
        }
        fn quiet_for(&self) -> Option<Duration> {
            let lines = self.lines.lock().unwrap();
            let last = lines.last().map_or(self.began, |(at, _)| *at);
            (!self.live).then(|| last.elapsed())
        }
    }

    /// `heartbeat = "20s"` is the longest silence, with a step silent for 65 s: three heartbeats,
    /// none late, and the step's result kept.
    #[tokio::test(start_paused = true)]
    async fn a_silent_step_gets_heartbeats_never_later_than_every() {
        let quiet = Recorder::new(false);
        let work = async {
            tokio::time::sleep(Duration::from_secs(65)).await;
            7
        };
        let result = with_heartbeat(work, &quiet, "push", Duration::from_secs(20)).await;
        assert_eq!(result, 7);
        assert!(quiet.longest_silence(Instant::now()) <= Duration::from_secs(20));
        let lines = quiet.lines.lock().unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines
                .iter()
                .all(|(_, l)| l.starts_with("push: still running ("))
        );
    }

    /// A wait whose looks at AWS are slow (a 7 s pause, then a 9 s call retried): the heartbeat
    /// says the last state it looked at, and comes on time between looks.
    #[tokio::test(start_paused = true)]
    async fn a_wait_gets_heartbeats_between_its_looks() {
        let quiet = Recorder::new(false);
        let watch = Watch::new(Duration::from_secs(20));
        let wait = async {
            for look in 0..6 {
                watch.beat(&quiet, &format!("web: IN_PROGRESS, look {look}"));
                tokio::time::sleep(Duration::from_secs(7)).await;
                tokio::time::sleep(Duration::from_secs(9)).await;
            }
        };
        watch.around(&quiet, "waiting", wait).await;
        assert!(quiet.longest_silence(Instant::now()) <= Duration::from_secs(20));
        let lines = quiet.lines.lock().unwrap();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[0].1.starts_with("web: IN_PROGRESS, look 1 ("),
            "{lines:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_view_or_a_talkative_step_gets_none() {
        let live = Recorder::new(true);
        with_heartbeat(
            tokio::time::sleep(Duration::from_secs(60)),
            &live,
            "build",
            Duration::from_secs(20),
        )
        .await;
        assert!(live.lines.lock().unwrap().is_empty());
        let talkative = Recorder::new(false);
        let talk = async {
            for _ in 0..12 {
                tokio::time::sleep(Duration::from_secs(5)).await;
                talkative.info("step output");
            }
        };
        with_heartbeat(talk, &talkative, "build", Duration::from_secs(20)).await;
        let lines = talkative.lines.lock().unwrap();
        assert!(lines.iter().all(|(_, l)| l == "step output"), "{lines:?}");
    }
}
