//! berth deploys a Dockerised Rails app to AWS ECS/Fargate.
//!
//! The rooms, top to bottom; dependencies point down this list (`tests/architecture.rs` checks
//! it):
//! - the binary and [`output`], the terminal: the only code that knows indicatif or stdout, and
//!   the one place that turns a result into text or JSON;
//! - [`cli`]: the only code that knows clap; it hands the rest plain [`Flags`];
//! - [`commands`]: one file per command (`deploy`, `plan`, `status`, `rollback`, `init`,
//!   `unlock`); `deploy` runs the steps in order and decides what to skip, and `plan` is the same
//!   preparation stopping before the first write;
//! - [`steps`]: the pipeline in order, [`steps::promote`] (the promotion guard),
//!   [`steps::image`] (context, build, cache, push),
//!   [`steps::register`], [`steps::rollout`], [`steps::migrate`], [`steps::schedules`],
//!   [`steps::cleanup`]; a step never imports a command, and keeps its decisions in pure
//!   functions;
//! - what the steps share: [`current`] (the AWS state a deploy starts from), [`taskdef`],
//!   [`task`] (one-off tasks: started, followed with their logs, judged), [`hooks`] (the commands
//!   of `[hooks]`, run around a deploy),
//!   [`release`] (the commit, the image tag, the deploy id), [`state`] (the lock and the deploy
//!   records in S3);
//! - the edges and the words: [`aws`] (the SDK's config, OIDC, errors; ECR, services, ARNs),
//!   [`docker`], [`settings`], [`flags`], [`env_vars`], [`error`], [`report`] (the
//!   [`report::Reporter`] the core narrates through), [`text`].

pub mod aws;
pub mod cli;
pub mod commands;
pub mod current;
pub mod docker;
pub mod env_vars;
pub mod error;
pub mod flags;
pub mod hooks;
pub mod output;
pub mod release;
pub mod report;
pub mod settings;
pub mod state;
pub mod steps;
pub mod task;
pub mod taskdef;
pub mod text;

pub use commands::{Outcome, run};
pub use error::{Error, ExitStatus};
pub use flags::{Command, Flags, OutputFormat};
