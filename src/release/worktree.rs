//! The git work tree berth deploys from: git's answers, and what in the tree has changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env_vars;
use crate::error::Error;

/// How many changed paths an error names.
const NAMED: usize = 5;

pub(super) fn git(folder: &Path, args: &[&str]) -> Result<String, Error> {
    Ok(git_raw(folder, args)?.trim().to_owned())
}

fn git_raw(folder: &Path, args: &[&str]) -> Result<String, Error> {
    let output = Command::new("git")
        .arg("-C")
        .arg(folder)
        .args(args)
        .output()
        .map_err(|error| Error::Git {
            problem: format!("cannot run `git`: {error}"),
            hint: format!(
                "install git, or set `{}` to the commit being deployed",
                env_vars::CIRCLE_SHA1
            ),
        })?;
    if !output.status.success() {
        return Err(Error::Git {
            problem: format!(
                "`git {}` failed in `{}`: {}",
                args.join(" "),
                folder.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            hint: format!(
                "run berth inside the app's git work tree, or set `{}`",
                env_vars::CIRCLE_SHA1
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The paths under `folder` that differ from the commit (untracked ones included, ignored ones
/// not), relative to the repository's root; berth's own output file is not a change: the orb's
/// `record` sends berth's stdout to a file, which may be in the work tree (and is left out of
/// the build context too, see [`OwnOutput`]).
pub(super) fn changes(folder: &Path) -> Result<Vec<String>, Error> {
    let paths = porcelain_paths(&status(folder, "normal", ".")?);
    let Some(own) = OwnOutput::find().filter(|_| !paths.is_empty()) else {
        return Ok(paths);
    };
    let root = PathBuf::from(git(folder, &["rev-parse", "--show-toplevel"])?);
    let mut kept = Vec::new();
    for path in paths {
        // A new folder is listed alone (`out/`): when berth's output is in it, the rest of it
        // is what changed.
        if path.ends_with('/') {
            let inside = porcelain_paths(&status(&root, "all", &path)?);
            if inside.iter().any(|p| own.is(&root.join(p))) {
                kept.extend(inside.into_iter().filter(|p| !own.is(&root.join(p))));
            } else {
                kept.push(path);
            }
        } else if !own.is(&root.join(&path)) {
            kept.push(path);
        }
    }
    Ok(kept)
}

fn status(folder: &Path, untracked: &str, path: &str) -> Result<String, Error> {
    git_raw(
        folder,
        &[
            "status",
            "--porcelain",
            "-z",
            &format!("--untracked-files={untracked}"),
            "--",
            path,
        ],
    )
}

/// The paths of `git status --porcelain -z`: `XY path`, and for a rename or copy the old path
/// after it, which is not listed.
fn porcelain_paths(listing: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut entries = listing.split('\0');
    while let Some(entry) = entries.next() {
        let Some(path) = entry.get(3..).filter(|path| !path.is_empty()) else {
            continue;
        };
        // A rename or copy, staged (X) or in the work tree (Y), is followed by its old path.
        if entry.get(..2).is_some_and(|xy| xy.contains(['R', 'C'])) {
            entries.next();
        }
        paths.push(path.to_owned());
    }
    paths
}

/// Up to five paths in backticks, and how many more.
pub(super) fn listed(paths: &[String]) -> String {
    let mut text = crate::text::code_list(paths.iter().take(NAMED));
    if paths.len() > NAMED {
        text.push_str(&format!(" and {} more", paths.len() - NAMED));
    }
    text
}

/// The file berth's stdout goes to, when it is a regular file (the orb's `record`, a `>`
/// redirect): known by device and inode, so that neither the dirty-tree check nor the build
/// context counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnOutput {
    dev: u64,
    ino: u64,
}

impl OwnOutput {
    pub fn find() -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let fd = std::os::fd::AsFd::as_fd(&std::io::stdout())
            .try_clone_to_owned()
            .ok()?;
        let metadata = std::fs::File::from(fd).metadata().ok()?;
        metadata.is_file().then(|| Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
        })
    }

    /// Whether `metadata` (of a file, links not followed) is this file's.
    pub fn is_it(&self, metadata: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        metadata.is_file() && metadata.dev() == self.dev && metadata.ino() == self.ino
    }

    fn is(&self, path: &Path) -> bool {
        fs_err::symlink_metadata(path).is_ok_and(|m| self.is_it(&m))
    }
}

#[cfg(test)]
mod tests {
    use super::{listed, porcelain_paths};

    #[test]
    fn changed_paths_are_read_from_porcelain_status() {
        let listing =
            " M src/app.rb\0?? new file.txt\0R  to.rb\0from.rb\0A  lib/a.rb\0 R b.rb\0a.rb\0";
        assert_eq!(
            porcelain_paths(listing),
            ["src/app.rb", "new file.txt", "to.rb", "lib/a.rb", "b.rb"]
        );
        assert!(porcelain_paths("").is_empty());
    }

    #[test]
    fn an_error_names_five_paths_and_counts_the_rest() {
        let paths: Vec<String> = (1..=7).map(|n| format!("f{n}")).collect();
        assert_eq!(listed(&paths), "`f1`, `f2`, `f3`, `f4`, `f5` and 2 more");
        assert_eq!(listed(&paths[..1]), "`f1`");
    }
}
