//! What is being deployed: the commit, the image tag and the deploy id.
//!
//! The deploy id names one deploy in AWS: the revision it registers is tagged with it, the
//! migration task is started by it. It is derived from the environment, the commit and every
//! setting that shapes the result, so a rerun of the same deploy (CircleCI "rerun from failed",
//! on a fresh machine) finds its own work, and a changed setting is a new deploy.
//!
//! The image tag names one build, not one deploy: what went into it. That is git's tree of the
//! build context at the commit (`tree-<tree>-<hash8>`), and a short hash of what else shapes the
//! build (where the context is in the repository, the Dockerfile, the target, the platform, the
//! build args, the names of the secret ones). Environments with the same build settings share the
//! image: a `prd` deploy of what `stg` deployed skips the build and the push, and so does a merge
//! commit whose context is the tree `stg` deployed. The commit names the image instead
//! (`<commit>-<hash8>`) when the Dockerfile reads it (`ARG BERTH_GIT_SHA`: the image holds the
//! commit), when the tree is dirty, and without git.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::env_vars;
use crate::error::Error;
use crate::flags::DeployOptions;
use crate::settings::{BuildSettings, Builder, Settings};
pub use worktree::OwnOutput;
use worktree::git;

mod worktree;

/// ECS allows 36 characters in `startedBy`; the deploy id must fit.
const MAX_DEPLOY_ID: usize = 36;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    /// Full commit sha.
    pub commit: String,
    /// When an allowed dirty tree was built: its image is tagged apart.
    pub dirty_at: Option<u64>,
    /// The build context's folder within the repository (`git rev-parse --show-prefix`), so that
    /// the image tag is the same on every machine.
    pub context_in_repo: String,
    /// What names the image: the context's tree, or the commit.
    pub content: Content,
    /// `<env>-<sha7>-<hash>`: names this deploy in AWS.
    pub deploy_id: String,
}

impl Release {
    /// The release for `settings` built from the work tree around the build context.
    /// `inputs` are further inputs that shape the result (task-definition files' contents).
    pub fn discover(
        settings: &Settings,
        options: DeployOptions,
        inputs: &str,
    ) -> Result<Self, Error> {
        let folder = &settings.build.context;
        let commit = match env_vars::var(env_vars::CIRCLE_SHA1) {
            // CircleCI's commit, unless the checkout says otherwise: the image would be tagged
            // with a commit it was not built from, and a later deploy of that commit would find
            // the tag and ship this code. Without git (a context copied out of its repository)
            // the variable is all there is.
            Some(sha) => match git(folder, &["rev-parse", "HEAD"]) {
                Ok(head) if !head.starts_with(&sha) => {
                    return Err(Error::Git {
                        problem: format!(
                            "`{}` is `{sha}`, but the checkout at `{}` is at `{head}`",
                            env_vars::CIRCLE_SHA1,
                            folder.display()
                        ),
                        hint: format!(
                            "check out `{sha}`, or unset `{}` (the orb's `commit`) to deploy the checkout",
                            env_vars::CIRCLE_SHA1
                        ),
                    });
                }
                _ => sha,
            },
            None => git(folder, &["rev-parse", "HEAD"])?,
        };
        if commit.len() < 7 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::Git {
                problem: format!("`{commit}` is not a commit sha"),
                hint: format!(
                    "set `{}` to a full commit sha, or run berth inside the git work tree",
                    env_vars::CIRCLE_SHA1
                ),
            });
        }
        let on = Branch::of(folder)?;
        if let Some(wanted) = &settings.branch {
            check_branch(&settings.env, wanted, on, options.any_branch)?;
        }
        let changed = worktree::changes(folder)?;
        let dirty = !changed.is_empty();
        let nonce = if dirty {
            if !options.allow_dirty {
                return Err(Error::Git {
                    problem: format!(
                        "the work tree at `{}` has uncommitted changes: {}",
                        folder.display(),
                        worktree::listed(&changed)
                    ),
                    hint: "commit them, or pass `--allow-dirty` to build them into an image tagged `<sha>-dirty-<time>`".to_owned(),
                });
            }
            Some(unix_time())
        } else if options.new {
            Some(unix_time())
        } else {
            None
        };
        let mut release = Self::new(settings, &commit, dirty, nonce, inputs);
        release.context_in_repo = git(folder, &["rev-parse", "--show-prefix"])?;
        release.content = Content::of(&settings.build, &commit, &release.context_in_repo, dirty);
        Ok(release)
    }

    /// The image tag for a build of this release with `build` for `platform`: `tree-<tree>-
    /// <hash8>` or `<commit>-<hash8>` (see [`Content`]), and `-dirty-<time>` after it for an
    /// allowed dirty tree.
    pub fn image_tag(&self, build: &BuildSettings, platform: &str) -> String {
        let mut shape = build_shape(build, Some(platform));
        shape.insert("context".to_owned(), self.context_in_repo.clone().into());
        if let Content::Tree {
            dockerfile: Some(outside),
            ..
        } = &self.content
        {
            shape.insert("dockerfile_content".to_owned(), outside.clone().into());
        }
        let hex = short_hex(&Sha256::digest(
            serde_json::Value::Object(shape).to_string(),
        ));
        match (&self.content, self.dirty_at) {
            (_, Some(time)) => format!("{}-{hex}-dirty-{time}", self.commit),
            (Content::Tree { tree, .. }, None) => format!("tree-{tree}-{hex}"),
            (Content::Commit { .. }, None) => format!("{}-{hex}", self.commit),
        }
    }

    /// The release of `commit`; `nonce` makes a new deploy of the same inputs.
    pub fn new(
        settings: &Settings,
        commit: &str,
        dirty: bool,
        nonce: Option<u64>,
        inputs: &str,
    ) -> Self {
        let short = &commit[..commit.len().min(7)];
        let dirty_at = nonce.filter(|_| dirty);
        let mut hash = Sha256::new();
        hash.update(settings.env.as_bytes());
        hash.update([0]);
        hash.update(commit.as_bytes());
        hash.update([0]);
        hash.update(shaping_settings(settings).as_bytes());
        hash.update([0]);
        hash.update(inputs.as_bytes());
        if let Some(nonce) = nonce {
            hash.update(nonce.to_be_bytes());
        }
        let hex = short_hex(&hash.finalize());
        let mut env: String = settings
            .env
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        env.truncate(MAX_DEPLOY_ID - 1 - short.len() - 1 - hex.len());
        Self {
            commit: commit.to_owned(),
            dirty_at,
            context_in_repo: String::new(),
            content: Content::Commit {
                why: CommitWhy::NoGit,
            },
            deploy_id: format!("{env}-{short}-{hex}"),
        }
    }
}

/// Build arg berth always passes: the commit being deployed.
pub const BUILD_ARG_GIT_SHA: &str = "BERTH_GIT_SHA";

/// Whether a stage of `dockerfile` declares `ARG BERTH_GIT_SHA` (`ARG A BERTH_GIT_SHA=x` too):
/// then the image holds the commit, and the commit must name it.
fn reads_commit(dockerfile: &str) -> bool {
    dockerfile
        .replace("\\\n", " ")
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let keyword = words.next()?;
            keyword.eq_ignore_ascii_case("ARG").then_some(words)
        })
        .flatten()
        .any(|word| word.split('=').next() == Some(BUILD_ARG_GIT_SHA))
}

/// What names the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "named_by")]
pub enum Content {
    /// The build context's tree at the commit (git's tree hash): a merge commit with the same
    /// tree names the same image.
    Tree {
        tree: String,
        /// The SHA-256 of the Dockerfile (and its `.dockerignore`) when it lies outside the
        /// context, where the tree does not hold it.
        #[serde(skip_serializing_if = "Option::is_none")]
        dockerfile: Option<String>,
    },
    /// The commit, and why not the tree.
    Commit { why: CommitWhy },
}

/// Why the commit names an image rather than the context's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitWhy {
    /// The Dockerfile declares `ARG BERTH_GIT_SHA`: the image holds the commit.
    DockerfileReadsCommit,
    /// The work tree has uncommitted changes, which the tree does not hold.
    Dirty,
    /// No git tree to name (a context copied out of its repository), or the Dockerfile
    /// cannot be read.
    NoGit,
}

impl Content {
    /// What names the image of `commit` built with `build` from the context at `prefix`.
    fn of(build: &BuildSettings, commit: &str, prefix: &str, dirty: bool) -> Self {
        if dirty {
            return Self::Commit {
                why: CommitWhy::Dirty,
            };
        }
        let Ok(dockerfile) = fs_err::read_to_string(&build.dockerfile) else {
            return Self::Commit {
                why: CommitWhy::NoGit,
            };
        };
        if reads_commit(&dockerfile) {
            return Self::Commit {
                why: CommitWhy::DockerfileReadsCommit,
            };
        }
        let Ok(tree) = git(
            &build.context,
            &["rev-parse", &format!("{commit}:{prefix}")],
        ) else {
            return Self::Commit {
                why: CommitWhy::NoGit,
            };
        };
        let dockerfile = build.dockerfile_in_context().is_none().then(|| {
            let mut hash = Sha256::new();
            hash.update(dockerfile.as_bytes());
            let ignore = build.dockerfile.with_file_name(format!(
                "{}.dockerignore",
                build
                    .dockerfile
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            ));
            if let Ok(ignore) = fs_err::read(ignore) {
                hash.update([0]);
                hash.update(ignore);
            }
            format!("{:x}", hash.finalize())
        });
        Self::Tree { tree, dockerfile }
    }

    /// How the output names it: the tree, or the commit and why.
    pub fn describe(&self) -> String {
        match self {
            Self::Tree { tree, .. } => {
                format!("the build context's tree `{}`", &tree[..tree.len().min(12)])
            }
            Self::Commit {
                why: CommitWhy::DockerfileReadsCommit,
            } => {
                format!("the commit (the Dockerfile declares `ARG {BUILD_ARG_GIT_SHA}`)")
            }
            Self::Commit {
                why: CommitWhy::Dirty,
            } => "the commit (the work tree has changes)".to_owned(),
            Self::Commit {
                why: CommitWhy::NoGit,
            } => "the commit (no git tree to name)".to_owned(),
        }
    }
}

/// The branch a deploy is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub name: String,
    /// Where the name came from: `CIRCLE_BRANCH` or the checkout.
    pub source: &'static str,
}

impl Branch {
    /// `CIRCLE_BRANCH` when set (CircleCI's checkout is detached), else the checkout's branch;
    /// `None` for a detached checkout.
    fn of(folder: &Path) -> Result<Option<Self>, Error> {
        if let Some(name) = env_vars::var(env_vars::CIRCLE_BRANCH) {
            return Ok(Some(Self {
                name,
                source: "`CIRCLE_BRANCH`",
            }));
        }
        let name = git(folder, &["rev-parse", "--abbrev-ref", "HEAD"])?;
        Ok((name != "HEAD").then_some(Self {
            name,
            source: "the checkout's branch",
        }))
    }
}

/// An environment with a `branch` takes deploys from that branch only, unless `--any-branch`.
pub fn check_branch(
    env: &str,
    wanted: &str,
    on: Option<Branch>,
    any_branch: bool,
) -> Result<(), Error> {
    if any_branch || on.as_ref().is_some_and(|branch| branch.name == wanted) {
        return Ok(());
    }
    Err(Error::WrongBranch {
        env: env.to_owned(),
        wanted: wanted.to_owned(),
        found: match on {
            Some(branch) => format!("not from `{}` ({})", branch.name, branch.source),
            None => {
                "and the checkout is on no branch (detached, and no `CIRCLE_BRANCH`)".to_owned()
            }
        },
    })
}

/// The first 4 bytes of a digest, in hex: 8 characters.
fn short_hex(digest: &[u8]) -> String {
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// What shapes a build, as JSON: the Dockerfile, target, platform and args (secret ones by name
/// only: their values never leave the environment).
fn build_shape(
    build: &BuildSettings,
    platform: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut shape = serde_json::Map::from_iter([
        (
            "dockerfile".to_owned(),
            json!(build.dockerfile_in_context()),
        ),
        ("target".to_owned(), json!(build.target)),
        ("platform".to_owned(), json!(platform)),
        ("args".to_owned(), json!(build.args)),
        ("secret_args".to_owned(), json!(build.secret_args)),
    ]);
    // The two builders put different files in the image (BuildKit reads
    // `Dockerfile.dockerignore`, the classic builder does not): a builder chosen by name is part
    // of the image's identity. `auto` is left out, so the tags of the default stay as they were.
    if build.builder != Builder::Auto {
        shape.insert("builder".to_owned(), json!(build.builder));
    }
    shape
}

/// The settings that change what a deploy produces, as canonical JSON. Timeouts and the profile
/// change how berth works, not the result, and are left out.
fn shaping_settings(settings: &Settings) -> String {
    let shaping = serde_json::json!({
        "cluster": settings.cluster,
        "services": settings.services,
        "repository": settings.repository,
        "containers": settings.containers,
        "migrate": settings.migrate,
        "build": build_shape(&settings.build, settings.build.platform.as_deref()),
        "migration": settings.migration,
        "environment": settings.environment,
        "remove_environment": settings.remove_environment,
        "secrets": settings.secrets,
        "env_tag": settings.env_tag,
    });
    shaping.to_string()
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Branch, Content, Release, check_branch};
    use crate::error::{Error, ExitStatus};
    use crate::flags::Flags;
    use crate::settings;

    /// The branch guard, one row per situation: (branch found, `--any-branch`, what happens).
    #[test]
    fn an_environment_takes_deploys_from_its_branch_only() {
        let on = |name: &str, source| {
            Some(Branch {
                name: name.to_owned(),
                source,
            })
        };
        let rows = [
            (on("develop", "`CIRCLE_BRANCH`"), false, None),
            (on("develop", "the checkout's branch"), false, None),
            (
                on("feature/x", "`CIRCLE_BRANCH`"),
                false,
                Some("`stg` deploys from branch `develop`, not from `feature/x` (`CIRCLE_BRANCH`)"),
            ),
            (
                on("main", "the checkout's branch"),
                false,
                Some(
                    "`stg` deploys from branch `develop`, not from `main` (the checkout's branch)",
                ),
            ),
            (
                None,
                false,
                Some(
                    "`stg` deploys from branch `develop`, and the checkout is on no branch (detached, and no `CIRCLE_BRANCH`)",
                ),
            ),
            (on("main", "the checkout's branch"), true, None),
            (None, true, None),
        ];
        for (branch, any_branch, refused) in rows {
            let result = check_branch("stg", "develop", branch.clone(), any_branch);
            match (result, refused) {
                (Ok(()), None) => {}
                (Err(error @ Error::WrongBranch { .. }), Some(message)) => {
                    assert_eq!(error.to_string(), message);
                    assert_eq!(error.exit_status(), ExitStatus::Usage);
                    assert!(error.hint().contains("--any-branch"));
                }
                (other, _) => panic!("{branch:?}, any_branch {any_branch}: {other:?}"),
            }
        }
    }

    fn settings(extra: &str) -> settings::Settings {
        let text = format!(
            "repository = \"app\"\n{extra}\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n"
        );
        let flags = Flags {
            env: Some("stg".into()),
            ..Flags::default()
        };
        settings::resolve(&text, Path::new("berth.toml"), &flags).expect("valid")
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn same_inputs_same_deploy_id() {
        let a = Release::new(&settings(""), SHA, false, None, "");
        let b = Release::new(&settings(""), SHA, false, None, "");
        assert_eq!(a, b);
        assert!(a.deploy_id.starts_with("stg-0123456-"), "{}", a.deploy_id);
        assert!(a.deploy_id.len() <= 36);
    }

    #[test]
    fn result_shaping_settings_make_a_new_deploy() {
        let base = Release::new(&settings(""), SHA, false, None, "").deploy_id;
        let env = Release::new(
            &settings("environment = { A = \"1\" }"),
            SHA,
            false,
            None,
            "",
        );
        let command = Release::new(
            &settings("[migration]\ncommand = [\"rake\", \"db:migrate\"]"),
            SHA,
            false,
            None,
            "",
        );
        assert_ne!(base, env.deploy_id);
        assert_ne!(base, command.deploy_id);
        assert_ne!(
            base,
            Release::new(&settings(""), SHA, false, Some(1), "").deploy_id
        );
    }

    #[test]
    fn timeouts_do_not_make_a_new_deploy() {
        let base = Release::new(&settings(""), SHA, false, None, "").deploy_id;
        let slower = Release::new(
            &settings("[timeouts]\nrollout = \"2h\""),
            SHA,
            false,
            None,
            "",
        );
        assert_eq!(base, slower.deploy_id);
    }

    #[test]
    fn the_context_tree_names_the_image_whatever_the_commit() {
        let settings = settings("");
        let tree = "3be22be77da4887e869c981806d8452f034dd014";
        let named = |commit: &str, dirty: Option<u64>| {
            let mut release = Release::new(&settings, commit, dirty.is_some(), dirty, "");
            release.content = Content::Tree {
                tree: tree.to_owned(),
                dockerfile: None,
            };
            release.image_tag(&settings.build, "linux/amd64")
        };
        let merge = "fedcba9876543210fedcba9876543210fedcba98";
        let tag = named(SHA, None);
        assert!(tag.starts_with(&format!("tree-{tree}-")), "{tag}");
        assert_eq!(tag, named(merge, None), "a merge commit with the same tree");
        assert!(
            named(SHA, Some(1)).starts_with(SHA),
            "a dirty tree is not the tree"
        );
        let mut outside = Release::new(&settings, SHA, false, None, "");
        outside.content = Content::Tree {
            tree: tree.to_owned(),
            dockerfile: Some("ab".repeat(32)),
        };
        assert_ne!(
            outside.image_tag(&settings.build, "linux/amd64"),
            tag,
            "a Dockerfile outside the context names the image by its content"
        );
    }

    /// A Dockerfile that declares `ARG BERTH_GIT_SHA` puts the commit in the image.
    #[test]
    fn a_dockerfile_that_reads_the_commit_is_named_by_it() {
        let rows = [
            (
                "FROM base\nARG BERTH_GIT_SHA\nRUN echo $BERTH_GIT_SHA",
                true,
            ),
            ("FROM base\narg RAILS_ENV BERTH_GIT_SHA=unknown", true),
            ("ARG BASE=x\nFROM $BASE\nARG BASE \\\n  BERTH_GIT_SHA", true),
            (
                "FROM base\nARG BERTH_GIT_SHA_OLD\nENV BERTH_GIT_SHA=1",
                false,
            ),
            (
                "FROM base\n# ARG is not BERTH_GIT_SHA here\nRUN true",
                false,
            ),
        ];
        for (dockerfile, reads) in rows {
            assert_eq!(super::reads_commit(dockerfile), reads, "{dockerfile}");
        }
    }

    #[test]
    fn dirty_builds_get_their_own_tag() {
        let settings = settings("");
        let release = Release::new(&settings, SHA, true, Some(1_700_000_000), "");
        let tag = release.image_tag(&settings.build, "linux/amd64");
        assert!(tag.starts_with(&format!("{SHA}-")), "{tag}");
        assert!(tag.ends_with("-dirty-1700000000"), "{tag}");
    }

    /// The image tag names a build: environments share it unless their build settings differ.
    #[test]
    fn the_image_tag_follows_the_build_settings_only() {
        let tag = |extra: &str, env_extra: &str, platform: &str| {
            let text = format!(
                "repository = \"app\"\n{extra}\n[env.stg]\nregion = \"us-east-1\"\ncluster = \"c\"\nservices = [\"web\"]\n{env_extra}\n"
            );
            let flags = Flags {
                env: Some("stg".into()),
                ..Flags::default()
            };
            let settings = settings::resolve(&text, Path::new("berth.toml"), &flags).unwrap();
            Release::new(&settings, SHA, false, None, "").image_tag(&settings.build, platform)
        };
        let base = tag("", "", "linux/amd64");
        assert!(
            base.starts_with(&format!("{SHA}-")) && base.len() == SHA.len() + 9,
            "{base}"
        );
        let rows = [
            (
                "an env tag, environment and migration",
                tag(
                    "environment = { A = \"1\" }\n[migration]\ncommand = [\"rake\"]",
                    "env_tag = \"stg-latest\"",
                    "linux/amd64",
                ),
                true,
            ),
            (
                "timeouts",
                tag("[timeouts]\nrollout = \"2h\"", "", "linux/amd64"),
                true,
            ),
            (
                "a build arg",
                tag(
                    "[build]\nargs = { RAILS_ENV = \"staging\" }",
                    "",
                    "linux/amd64",
                ),
                false,
            ),
            (
                "a secret build arg's name",
                tag("[build]\nsecret_args = [\"TOKEN\"]", "", "linux/amd64"),
                false,
            ),
            (
                "the builder by name",
                tag("[build]\nbuilder = \"classic\"", "", "linux/amd64"),
                false,
            ),
            (
                "the builder left to the engine (`auto`)",
                tag("[build]\nbuilder = \"auto\"", "", "linux/amd64"),
                true,
            ),
            (
                "the target",
                tag("[build]\ntarget = \"release\"", "", "linux/amd64"),
                false,
            ),
            ("the platform", tag("", "", "linux/arm64"), false),
        ];
        for (case, other, same) in rows {
            assert_eq!(other == base, same, "{case}: {other} vs {base}");
        }
    }
}
