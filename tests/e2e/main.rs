//! `berth deploy` end to end against the sandbox: the real binary, a real build and push, real
//! ECS tasks. Needs the sandbox (`scripts/test` starts it); `harness` has the example app's copy
//! each test deploys.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../harness/mod.rs"]
mod harness;

mod cache;
mod cleanup;
mod deploy;
mod deployments;
mod docker_tls;
mod hooks;
mod images;
mod init;
mod migration;
mod plan;
mod promotion;
mod refusals;
mod rollout;
mod run;
mod schedules;
mod signals;
mod strategies;
