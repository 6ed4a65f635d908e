//! Embeds the git sha in `--version` as `BERTH_GIT_SHA` ("unknown" outside a git checkout).

use std::path::Path;
use std::process::Command;

fn main() {
    let sha = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|sha| sha.trim().to_owned())
        .filter(|sha| !sha.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BERTH_GIT_SHA={sha}");
    watch_git_head();
}

/// Rebuild when HEAD moves: a checkout changes `.git/HEAD`, a commit changes the branch's ref file
/// (or, for the first commit on a branch, creates it inside `.git/refs/heads`).
fn watch_git_head() {
    let git = Path::new(".git");
    let head = git.join("HEAD");
    if !head.is_file() {
        return;
    }
    println!("cargo:rerun-if-changed={}", head.display());
    // No error to report here (an unreadable HEAD only means no rebuild trigger), and build
    // scripts do not get fs-err.
    #[allow(clippy::disallowed_methods)]
    let Ok(contents) = std::fs::read_to_string(&head) else {
        return;
    };
    let Some(reference) = contents.trim().strip_prefix("ref: ") else {
        return;
    };
    let ref_file = git.join(reference);
    if ref_file.is_file() {
        println!("cargo:rerun-if-changed={}", ref_file.display());
    } else if let Some(folder) = ref_file.parent().filter(|folder| folder.is_dir()) {
        println!("cargo:rerun-if-changed={}", folder.display());
    }
    let packed = git.join("packed-refs");
    if packed.is_file() {
        println!("cargo:rerun-if-changed={}", packed.display());
    }
}
