//! The harness of the end-to-end tests: one test's copy of the example app against the sandbox,
//! the real `berth` binary, and what the sandbox counts. Each test deploys its own copy (own
//! repository, cluster, families, EFS folder) and reads only its own request counters
//! (`AWS_SDK_UA_APP_ID`), so tests run side by side.

#![allow(dead_code, clippy::unwrap_used, clippy::print_stdout)]

mod accounts;
mod app;
mod aws;
#[path = "../common/mod.rs"]
pub mod common;
mod runs;
mod sandbox;

// Each test binary uses a part of the harness; callers need only `use harness::*`.
#[allow(unused_imports)]
pub use {accounts::*, app::*, aws::*, runs::*, sandbox::*};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The value of a secret build arg; it must never be printed.
pub const SECRET: &str = "s3cr3t-bundle-token-value";
/// The calls that change a service: none of them may happen again in a rerun of a finished step.
pub const CHANGES: &[&str] = &[
    "ecs:RegisterTaskDefinition",
    "ecs:UpdateService",
    "ecs:RunTask",
];

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
