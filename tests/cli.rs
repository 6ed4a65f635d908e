#![allow(clippy::unwrap_used)]

mod common;

use common::{berth, stderr, stdout};

#[test]
fn version_names_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let output = berth(dir.path(), &["--version"], &[]);
    assert!(output.status.success());
    let version = stdout(&output);
    let sha = version
        .trim()
        .strip_prefix(concat!("berth ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected version line: {version}"));
    assert!(
        sha == "unknown" || (sha.len() >= 7 && sha.bytes().all(|b| b.is_ascii_hexdigit())),
        "not a git sha: {sha}"
    );
}

#[test]
fn help_lists_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let output = berth(dir.path(), &["--help"], &[]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("deploy"), "{}", stdout(&output));
}

#[test]
fn deploy_help_lists_its_flags_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    let output = berth(dir.path(), &["deploy", "--help"], &[]);
    assert!(output.status.success());
    let help = stdout(&output);
    for flag in [
        "--env",
        "--config",
        "--region",
        "--profile",
        "--output",
        "BERTH_ENV",
        "BERTH_CONFIG",
    ] {
        assert!(help.contains(flag), "`{flag}` missing from:\n{help}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["launch"][..],
        &["deploy", "--output", "yaml"],
        &["deploy", "--bogus"],
    ] {
        let output = berth(dir.path(), args, &[]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// `docs/cli.md` is the `--help` of every command. It is generated from the code and checked here
/// so it cannot drift: `BERTH_UPDATE_DOCS=1 cargo test --test cli` rewrites it.
#[test]
fn cli_reference_matches_the_help() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = String::from(
        "# Command-line reference\n\n\
         Generated from `berth --help` by `tests/cli.rs`; \
         `BERTH_UPDATE_DOCS=1 cargo test --test cli` rewrites it.\n",
    );
    // Every command `berth --help` lists, in its order: a new command cannot be left out.
    let top = berth(dir.path(), &["--help"], &[("COLUMNS", "100")]);
    let listed: Vec<String> = stdout(&top)
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(listed.len() >= 7, "{listed:?}");
    let commands: Vec<Vec<&str>> = std::iter::once(Vec::new())
        .chain(listed.iter().map(|name| vec![name.as_str()]))
        .collect();
    for command in &commands {
        let mut args = command.clone();
        args.push("--help");
        let output = berth(dir.path(), &args, &[("COLUMNS", "100")]);
        assert!(output.status.success(), "{}", stderr(&output));
        let title = if command.is_empty() {
            "berth".to_owned()
        } else {
            format!("berth {}", command.join(" "))
        };
        reference.push_str(&format!(
            "\n## `{title}`\n\n```text\n{}```\n",
            stdout(&output)
        ));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    if std::env::var_os("BERTH_UPDATE_DOCS").is_some() {
        fs_err::write(&path, &reference).unwrap();
    }
    let written = fs_err::read_to_string(&path).unwrap_or_default();
    assert!(
        written == reference,
        "docs/cli.md is out of date: run `BERTH_UPDATE_DOCS=1 cargo test --test cli`"
    );
}
