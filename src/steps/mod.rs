//! The deploy's steps, in the order they run: [`prepare`] (the checks and reads before the first
//! write, where `berth plan` stops), [`promote`] (whether the environment an image must pass
//! first ran it), [`image`] (context, build, cache, push), [`register`],
//! [`rollout`], [`migrate`], [`schedules`], [`cleanup`]. Each first looks in AWS for the result it
//! would produce, and reports "already done" instead of redoing it; each reports to the
//! [`Ledger`].

pub mod cleanup;
pub mod image;
pub mod migrate;
pub mod prepare;
pub mod promote;
pub mod register;
pub mod rollout;
pub mod schedules;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Error;
use crate::report::{Reporter, warn};

/// One step as the deploy's record lists it.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: &'static str,
    /// `done`, `skipped`, `failed` or `interrupted`.
    pub status: &'static str,
    pub seconds: f64,
    pub detail: String,
}

/// The steps, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The image of another environment copied here (`promote_from`).
    Promote,
    Build,
    Push,
    Register,
    Rollout,
    Migrate,
    Schedules,
    Cleanup,
    /// After a failure, `on_failure = "rollback"` putting the environment back as it was.
    Restore,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Build => "build",
            Self::Push => "push",
            Self::Register => "register",
            Self::Rollout => "rollout",
            Self::Migrate => "migrate",
            Self::Schedules => "schedules",
            Self::Cleanup => "cleanup",
            Self::Restore => "restore",
        }
    }
}

/// The ledger the steps report to: each step's start, end and detail, told to the reporter as
/// it happens and kept for the deploy's record.
pub struct Ledger<'a> {
    pub reporter: &'a dyn Reporter,
    /// What went wrong without failing the deploy, told as it happened.
    pub warnings: Vec<String>,
    records: Vec<StepRecord>,
    current: Option<(Step, Instant)>,
}

impl<'a> Ledger<'a> {
    pub fn new(reporter: &'a dyn Reporter) -> Self {
        Self {
            reporter,
            warnings: Vec::new(),
            records: Vec::new(),
            current: None,
        }
    }

    /// Tells a warning and keeps it for the record.
    pub fn warn(&mut self, warning: String) {
        warn(self.reporter, &mut self.warnings, warning);
    }

    /// The step under way when the run ended with `error` is recorded as interrupted or failed;
    /// then every step's record, in order, and the warnings.
    pub fn finish(mut self, error: Option<&Error>) -> (Vec<StepRecord>, Vec<String>) {
        if let (Some(error), Some((step, began))) = (error, self.current.take()) {
            let status = match error {
                Error::Interrupted => "interrupted",
                Error::Paused { .. } => "paused",
                _ => "failed",
            };
            self.record(step, status, began.elapsed(), error.to_string());
        }
        (self.records, self.warnings)
    }

    /// The started step failed: its verdict is told now and recorded with the step's own time,
    /// before anything that follows the failure (a restore) runs and is timed apart.
    pub fn fail(&mut self, error: &Error) {
        if let Some((step, began)) = self.current.take() {
            let elapsed = began.elapsed();
            let why = crate::text::with_causes(error);
            self.reporter.step_failed(step.name(), elapsed, &why);
            self.record(step, "failed", elapsed, error.to_string());
        }
    }

    pub fn start(&mut self, step: Step) {
        self.reporter.step_started(step.name());
        self.current = Some((step, Instant::now()));
    }

    pub fn done(&mut self, detail: impl Into<String>) {
        if let Some((step, began)) = self.current.take() {
            let elapsed = began.elapsed();
            self.reporter.step_finished(step.name(), elapsed);
            self.record(step, "done", elapsed, detail.into());
        }
    }

    /// The started step turned out to be done already (a rerun that only confirmed it).
    pub fn already_done(&mut self, why: impl Into<String>) {
        if let Some((step, began)) = self.current.take() {
            let why = why.into();
            self.reporter.step_skipped(step.name(), &why);
            self.record(step, "skipped", began.elapsed(), why);
        }
    }

    pub fn skip(&mut self, step: Step, why: impl Into<String>) {
        let why = why.into();
        self.reporter.step_skipped(step.name(), &why);
        self.record(step, "skipped", Duration::ZERO, why);
    }

    fn record(&mut self, step: Step, status: &'static str, elapsed: Duration, detail: String) {
        self.records.push(StepRecord {
            step: step.name(),
            status,
            seconds: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            detail,
        });
    }
}
