//! Builds one context with berth's build step alone, for `benches/context_memory.sh` to measure
//! (peak RSS, wall time) beside `docker build`.
//!
//! Usage: `context_bench CONTEXT [classic|buildkit|auto]`; the image is tagged
//! `berth-bench:context` and the Dockerfile is `CONTEXT/Dockerfile`.

use std::time::{Duration, Instant};

use berth::report::Reporter;
use berth::settings::Builder;
use berth::steps::image::build::{BuildRequest, build_image};

/// Build output on stderr, as it comes.
struct Stderr;

impl Reporter for Stderr {
    fn step_started(&self, _: &str) {}
    fn step_finished(&self, _: &str, _: Duration) {}
    fn step_skipped(&self, _: &str, _: &str) {}
    fn info(&self, line: &str) {
        eprintln!("{line}");
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(context) = args.next() else {
        eprintln!("usage: context_bench CONTEXT [classic|buildkit|auto]");
        return std::process::ExitCode::from(2);
    };
    let builder = match args.next().as_deref() {
        None | Some("classic") => Builder::Classic,
        Some("buildkit") => Builder::BuildKit,
        Some("auto") => Builder::Auto,
        Some(other) => {
            eprintln!("unknown builder `{other}`: use classic, buildkit or auto");
            return std::process::ExitCode::from(2);
        }
    };
    let context = match std::path::absolute(&context) {
        Ok(context) => context,
        Err(error) => {
            eprintln!("error: `{context}`: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let request = BuildRequest {
        context,
        dockerfile: "Dockerfile".into(),
        target: None,
        platform: "linux/amd64".to_owned(),
        args: Default::default(),
        secret_args: Default::default(),
        labels: Default::default(),
        tag: "berth-bench:context".to_owned(),
        builder,
        cache: None,
        credentials: Default::default(),
    };

    let started = Instant::now();
    let result = match berth::docker::connect().await {
        Ok(docker) => build_image(&docker, &request, &Stderr)
            .await
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match result {
        Ok(image) => {
            eprintln!(
                "context_bench: {} files, {} bytes sent, {:.1} s",
                image.context.files,
                image.context.bytes,
                started.elapsed().as_secs_f64()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
