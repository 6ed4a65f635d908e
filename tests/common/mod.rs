//! Runs the real `berth` binary in a scratch folder with a clean environment.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// `berth ARGS` in `dir`, with every `BERTH_*` and `AWS_*` variable removed except `vars`.
pub fn berth(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("BERTH_") || name.starts_with("AWS_") || name == "CIRCLE_SHA1" {
            command.env_remove(&*name);
        }
    }
    command.env("NO_COLOR", "1").envs(vars.iter().copied());
    command.output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
