//! What berth reads from a Dockerfile: its stages, what each is built `FROM`, and which stages
//! it copies files from. Enough to check `build.target` and to tell which stages the image's own
//! cache metadata leaves out.
//!
//! BuildKit's inline cache (the only cache export the Engine API offers) records the layers of
//! the image it writes: the target stage and the stages it is built `FROM`. A stage the target
//! only copies from (`COPY --from=assets …`) is not in it, so on an empty engine it rebuilds
//! whenever a step after that `COPY` changes. [`Stages::outside_image`] names those stages, so
//! berth can keep a cache image of each.

use std::path::Path;

use crate::error::Error;
use crate::text::code_list;

/// One `FROM` of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `AS name`, if given, as written.
    pub name: Option<String>,
    /// The earlier stage this one is built `FROM`, by index.
    pub parent: Option<usize>,
    /// Stages this one copies from (`COPY --from=`), by index.
    pub copies_from: Vec<usize>,
    /// The build args it declares (`ARG NAME`).
    pub args: Vec<String>,
}

/// The stages of a Dockerfile, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stages(pub Vec<Stage>);

impl Stages {
    pub fn parse(dockerfile: &str) -> Self {
        // First the stages and what they name, then the names resolved: a stage may copy from
        // one further down, as BuildKit allows.
        let mut stages: Vec<Stage> = Vec::new();
        let mut bases: Vec<Option<String>> = Vec::new();
        let mut copies: Vec<Vec<String>> = Vec::new();
        for line in instructions(dockerfile) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let words: Vec<&str> = words.collect();
            if keyword.eq_ignore_ascii_case("FROM") {
                let words: Vec<&str> = words
                    .into_iter()
                    .filter(|word| !word.starts_with("--"))
                    .collect();
                let name = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("AS") => Some((*name).to_owned()),
                    _ => None,
                };
                bases.push(words.first().map(|base| (*base).to_owned()));
                copies.push(Vec::new());
                stages.push(Stage {
                    name,
                    parent: None,
                    copies_from: Vec::new(),
                    args: Vec::new(),
                });
            } else if let Some(stage) = stages.last_mut() {
                if keyword.eq_ignore_ascii_case("COPY")
                    && let Some(source) = words.iter().find_map(|word| word.strip_prefix("--from="))
                    && let Some(copied) = copies.last_mut()
                {
                    copied.push(source.to_owned());
                } else if keyword.eq_ignore_ascii_case("ARG") {
                    stage.args.extend(
                        words
                            .iter()
                            .map(|word| word.split('=').next().unwrap_or_default().to_owned()),
                    );
                }
            }
        }
        // `FROM` names an earlier stage only; a later name is an image.
        let parents: Vec<Option<usize>> = bases
            .iter()
            .enumerate()
            .map(|(index, base)| {
                base.as_deref()
                    .and_then(|base| find(&stages[..index], base))
            })
            .collect();
        let copied: Vec<Vec<usize>> = copies
            .iter()
            .enumerate()
            .map(|(index, sources)| {
                let mut found: Vec<usize> = Vec::new();
                for source in sources {
                    if let Some(stage) = find(&stages, source).filter(|&stage| stage != index)
                        && !found.contains(&stage)
                    {
                        found.push(stage);
                    }
                }
                found
            })
            .collect();
        for ((stage, parent), copies_from) in stages.iter_mut().zip(parents).zip(copied) {
            stage.parent = parent;
            stage.copies_from = copies_from;
        }
        Self(stages)
    }

    /// The named stages, in order.
    pub fn names(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|stage| stage.name.clone())
            .collect()
    }

    /// The stage a build of `target` ends at: the named one, else the last.
    pub fn index_of(&self, target: Option<&str>) -> Option<usize> {
        match target {
            Some(target) => find(&self.0, target),
            None => self.0.len().checked_sub(1),
        }
    }

    /// `index` and the stages it is built `FROM`, nearest first.
    fn lineage(&self, index: usize) -> Vec<usize> {
        let mut lineage = vec![index];
        while let Some(parent) = lineage.last().and_then(|&last| self.0[last].parent) {
            lineage.push(parent);
        }
        lineage
    }

    /// Stages a build of `target` needs whose layers are not in the image it writes, leaving out
    /// any that another of them is built `FROM` (its layers are in that one's image). These are
    /// the stages an inline cache alone would rebuild.
    pub fn outside_image(&self, target: Option<&str>) -> Vec<usize> {
        let Some(target) = self.index_of(target) else {
            return Vec::new();
        };
        let in_image = self.lineage(target);
        // Every stage the build needs: the lineage of the target, then of what it copies from.
        let mut needed = Vec::new();
        let mut queue = vec![target];
        while let Some(index) = queue.pop() {
            for stage in self.lineage(index) {
                if !needed.contains(&stage) {
                    needed.push(stage);
                    queue.extend(&self.0[stage].copies_from);
                }
            }
        }
        let outside: Vec<usize> = needed
            .into_iter()
            .filter(|index| !in_image.contains(index))
            .collect();
        let mut leaves: Vec<usize> = outside
            .iter()
            .copied()
            .filter(|&index| {
                !outside
                    .iter()
                    .any(|&other| other != index && self.lineage(other).contains(&index))
            })
            .collect();
        leaves.sort_unstable();
        leaves
    }

    /// The stage at `index` and those it is built `FROM`, by name (`stage-N` when unnamed, as
    /// BuildKit names them in its output).
    pub fn lineage_names(&self, index: usize) -> Vec<String> {
        self.lineage(index)
            .into_iter()
            .map(|stage| self.label(stage))
            .collect()
    }

    /// BuildKit's name for a stage: its name in lower case, `stage-N` when it has none.
    pub fn label(&self, index: usize) -> String {
        self.0[index]
            .name
            .as_deref()
            .map_or_else(|| format!("stage-{index}"), str::to_ascii_lowercase)
    }

    /// The build args declared in the stage at `index` and in those it is built `FROM`.
    pub fn lineage_args(&self, index: usize) -> Vec<&str> {
        self.lineage(index)
            .into_iter()
            .flat_map(|stage| self.0[stage].args.iter().map(String::as_str))
            .collect()
    }
}

/// A stage by name (any case) or by index, as `FROM` and `COPY --from=` name them.
fn find(stages: &[Stage], reference: &str) -> Option<usize> {
    stages
        .iter()
        .position(|stage| {
            stage
                .name
                .as_deref()
                .is_some_and(|name| name.eq_ignore_ascii_case(reference))
        })
        .or_else(|| {
            reference
                .parse::<usize>()
                .ok()
                .filter(|&index| index < stages.len())
        })
}

/// The Dockerfile's instructions: comments dropped (also inside a continuation, as Docker drops
/// them), `\` continuations joined, heredoc bodies (`RUN <<EOF` … `EOF`) left out.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if let Some((word, strip)) = heredocs.first() {
            let body = if *strip {
                line.trim_start_matches('\t')
            } else {
                line
            };
            if body == word {
                heredocs.remove(0);
            }
            continue;
        }
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                heredocs = heredoc_words(&current);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        instructions.push(current);
    }
    instructions
}

/// The heredocs an instruction opens: `<<EOF`, `<<-EOF` (tabs stripped from the end line),
/// `<<"EOF"`, `<<'EOF'`; each with whether tabs are stripped.
fn heredoc_words(instruction: &str) -> Vec<(String, bool)> {
    instruction
        .split("<<")
        .skip(1)
        .filter_map(|rest| {
            let (strip, rest) = match rest.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, rest),
            };
            let word: String = rest
                .trim_start_matches(['"', '\''])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!word.is_empty()).then_some((word, strip))
        })
        .collect()
}

/// Checks, before any AWS or Docker call, that the Dockerfile is there and has the `target`
/// stage: a typo in berth.toml is a settings error, found with nothing changed.
pub fn check_dockerfile(dockerfile: &Path, target: Option<&str>) -> Result<(), Error> {
    let text = fs_err::read_to_string(dockerfile).map_err(|error| Error::Mismatch {
        problem: match error.kind() {
            std::io::ErrorKind::NotFound => {
                format!("Dockerfile `{}` not found", dockerfile.display())
            }
            _ => error.to_string(),
        },
        hint: "set `build.dockerfile` (relative to `build.context`) in berth.toml".to_owned(),
    })?;
    let Some(target) = target else {
        return Ok(());
    };
    let stages = Stages::parse(&text).names();
    if stages
        .iter()
        .any(|stage| stage.eq_ignore_ascii_case(target))
    {
        return Ok(());
    }
    Err(Error::Mismatch {
        problem: format!(
            "`build.target` `{target}` is not a stage of `{}`; its stages: {}",
            dockerfile.display(),
            if stages.is_empty() {
                "none named".to_owned()
            } else {
                code_list(&stages)
            }
        ),
        hint: format!(
            "fix `build.target` in berth.toml, or name the stage in the Dockerfile (`FROM … AS {target}`)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAILS: &str = "\
FROM base:1 AS base
WORKDIR /app

FROM base AS gems
COPY Gemfile ./
RUN bundle install

# The assets need the gems.
FROM gems AS assets
COPY app/assets ./app/assets
RUN rails assets:precompile

FROM base AS release
COPY --from=gems /usr/local/bundle /usr/local/bundle
COPY . .
COPY --from=assets \\
     /app/public/assets ./public/assets
";

    #[test]
    fn stages_have_their_parent_and_what_they_copy_from() {
        let stages = Stages::parse(RAILS);
        assert_eq!(stages.names(), ["base", "gems", "assets", "release"]);
        assert_eq!(
            stages.0[3],
            Stage {
                name: Some("release".to_owned()),
                parent: Some(0),
                copies_from: vec![1, 2],
                args: vec![],
            }
        );
        assert_eq!(stages.0[2].parent, Some(1));
        assert_eq!(stages.0[0].parent, None);
    }

    #[test]
    fn the_stages_outside_the_image_are_the_copied_ones_not_built_from_by_another() {
        let rows: [(&str, &str, Option<&str>, Vec<&str>); 6] = [
            (
                "gems is inside assets' image",
                RAILS,
                Some("release"),
                vec!["assets"],
            ),
            ("the last stage by default", RAILS, None, vec!["assets"]),
            (
                "a target built from the copied stage needs no other",
                RAILS,
                Some("assets"),
                vec![],
            ),
            ("a single stage", "FROM base\nRUN make\n", None, vec![]),
            (
                "copied by index and from an image that is not a stage",
                "FROM base\nRUN make\nFROM base AS final\nCOPY --from=0 /out /out\nCOPY --from=busybox /bin/sh /bin/sh\n",
                None,
                vec!["stage-0"],
            ),
            (
                "two copied stages, each its own lineage",
                "FROM a AS one\nFROM a AS two\nFROM a\nCOPY --from=one / /\nCOPY --from=two / /\n",
                None,
                vec!["one", "two"],
            ),
        ];
        for (case, text, target, want) in rows {
            let stages = Stages::parse(text);
            let got: Vec<String> = stages
                .outside_image(target)
                .into_iter()
                .map(|index| stages.label(index))
                .collect();
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn heredocs_comments_in_continuations_and_later_stages_are_read_as_buildkit_reads_them() {
        let text = "\
FROM base AS Tools
ARG TOKEN
ARG A=1 B
RUN <<EOF
from app import x
FROM nothing AS fake
EOF
FROM base AS release
COPY --from=assets \\
# a comment inside the continuation
     /a /a
FROM base AS assets
";
        let stages = Stages::parse(text);
        assert_eq!(stages.names(), ["Tools", "release", "assets"]);
        assert_eq!(stages.0[1].copies_from, [2], "a stage further down");
        assert_eq!(stages.0[0].args, ["TOKEN", "A", "B"]);
        assert_eq!(stages.label(0), "tools", "BuildKit's labels are lower case");
        assert_eq!(stages.lineage_args(0), ["TOKEN", "A", "B"]);
    }

    #[test]
    fn lineage_names_run_from_the_stage_to_its_root() {
        let stages = Stages::parse(RAILS);
        assert_eq!(stages.lineage_names(2), ["assets", "gems", "base"]);
    }
}
