//! When to look at the services next. The budget is one `DescribeServices` per `timeouts.poll`
//! (one a second at the default), kept as a token bucket: a token comes every `poll`, each look
//! spends one, at most [`BANK`] are saved. While the new tasks are still starting nothing can
//! complete, so berth looks every 1.5 × `poll` and saves; once every service's new tasks all
//! run, or a service's new tasks have begun to fail, the deployment may end at any moment, and
//! berth looks every [`NEAR`] × `poll` out of what it saved, then every `poll` once that is
//! spent. However the wait goes, it never makes
//! more looks than one, plus one per `poll` waited.
//!
//! Why 0.7: a look every `NEAR` × `poll` finds the completion `NEAR` / 2 × `poll` late on
//! average (0.35 s at the default), and spends 0.43 saved looks a second. A rollout whose tasks
//! took 10 s to start saved about 4 looks, which last 9 s of that pace; a shorter interval
//! would spend them before most deployments complete.

use std::time::Duration;

use tokio::time::Instant;

/// The most looks saved up: 27 s of starting tasks at the default.
pub const BANK: f64 = 10.0;

/// The interval, in polls, between looks once every new task runs, while saved looks last.
pub const NEAR: f64 = 0.7;

/// The looks a wait has made, as a token bucket.
#[derive(Debug, Clone)]
pub struct Pace {
    poll: Duration,
    /// Looks that may be made now, as of `at`.
    tokens: f64,
    at: Instant,
}

impl Pace {
    /// A wait that begins at `now` with one look in hand.
    pub fn new(poll: Duration, now: Instant) -> Self {
        Self {
            poll,
            tokens: 1.0,
            at: now,
        }
    }

    /// A look starts at `now`: it spends a token.
    pub fn look(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }

    /// When the look after the one that started at `looked` may start: `near` says that every
    /// new task runs, so that the deployment may complete at any moment.
    pub fn next(&self, looked: Instant, near: bool) -> Instant {
        let wanted = if near {
            looked + self.poll.mul_f64(NEAR)
        } else {
            looked + self.poll.mul_f64(1.5)
        };
        let short = (1.0 - self.tokens).max(0.0);
        wanted.max(self.at + self.poll.mul_f64(short))
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() / self.poll.as_secs_f64();
        self.tokens = (self.tokens + earned).min(BANK);
        self.at = self.at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::Pace;

    /// Looks of a wait of `seconds` whose tasks all run from `near_from` on; the times of the
    /// looks, in seconds from the start.
    fn looks(seconds: f64, near_from: f64) -> Vec<f64> {
        let start = Instant::now();
        let mut pace = Pace::new(Duration::from_secs(1), start);
        let mut at = start;
        let mut times = Vec::new();
        while at.duration_since(start).as_secs_f64() < seconds {
            pace.look(at);
            let t = at.duration_since(start).as_secs_f64();
            times.push(t);
            at = pace.next(at, t >= near_from);
        }
        times
    }

    /// Never more looks than one, plus one a second waited, in any stretch from the start.
    #[test]
    fn a_wait_never_looks_more_than_once_a_second_plus_one() {
        for (seconds, near_from) in [(600.0, 0.0), (600.0, 60.0), (600.0, 600.0), (20.0, 4.0)] {
            let times = looks(seconds, near_from);
            for (n, t) in times.iter().enumerate() {
                assert!(
                    (n as f64) <= t + 1e-9,
                    "look {} at {t:.2}s of a wait near from {near_from}s",
                    n + 1
                );
            }
        }
    }

    /// While tasks start it looks every 1.5 s; once they all run, every 0.7 s out of what it
    /// saved, then every second.
    #[test]
    fn it_saves_while_tasks_start_and_spends_once_they_run() {
        let times = looks(40.0, 15.0);
        let gap = |at: f64| {
            let i = times.iter().position(|t| *t >= at).unwrap();
            times[i + 1] - times[i]
        };
        assert!((gap(3.0) - 1.5).abs() < 1e-6, "{times:?}");
        assert!((gap(15.5) - 0.7).abs() < 1e-6, "{times:?}");
        assert!((gap(38.0) - 1.0).abs() < 1e-6, "{times:?}");
        // Always near: one look a second, from the start.
        let near = looks(10.0, 0.0);
        assert!(
            near.windows(2)
                .all(|w| (w[1] - w[0] - 1.0).abs() < 1e-6 || w[1] - w[0] < 1.0)
        );
        assert!(near.len() <= 11, "{near:?}");
    }
}
