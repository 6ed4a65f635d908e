//! `.dockerignore` with Docker's own rules, as its pattern matcher
//! (moby/patternmatcher) applies them:
//!
//! - one pattern a line; a line whose first character is `#` is a comment (`  # x`, with
//!   spaces before the `#`, is not: it is the pattern `# x`, as Docker's reader has it); blank
//!   lines are skipped; whitespace around a pattern is trimmed;
//! - patterns are cleaned like paths and are relative to the context root (`/foo` is `foo`);
//! - `*` matches within one path segment, `?` one character, `**` any number of segments
//!   (zero included), `[...]` a character class, `\` escapes;
//! - a pattern that matches a folder excludes everything beneath it;
//! - `!` re-includes, even inside an excluded folder and at any depth below it
//!   (`logs` then `!logs/**/keep.log` sends `logs/a/b/keep.log`), as BuildKit, Docker's default
//!   builder, does; berth sends the context itself, so the classic builder gets the same files;
//!   the last matching pattern wins;
//! - unlike `.gitignore`, a pattern without `/` does not match at every depth.

use regex::Regex;

/// Patterns of one ignore file, in order.
#[derive(Debug, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
}

#[derive(Debug)]
struct Pattern {
    regex: Regex,
    exclusion: bool,
}

/// A pattern that Docker would reject too.
#[derive(Debug, thiserror::Error)]
#[error("bad pattern `{pattern}` on line {line}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub line: usize,
    pub reason: String,
}

impl IgnoreRules {
    /// Parse the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let mut patterns = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            // As moby's `ignorefile.ReadAll`: a UTF-8 byte-order mark goes, a comment is a `#`
            // in the first column, then the line is trimmed.
            let raw = if index == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(body);
            if cleaned.is_empty() {
                continue;
            }
            let regex = compile(&cleaned).map_err(|reason| PatternError {
                pattern: line.to_owned(),
                line: index + 1,
                reason,
            })?;
            patterns.push(Pattern { regex, exclusion });
        }
        Ok(Self { patterns })
    }

    /// Whether any pattern re-includes files (then an excluded folder must still be walked).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out of the context.
    pub fn is_excluded(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that could flip the current verdict matters.
            if pattern.exclusion != excluded {
                continue;
            }
            let mut hit = pattern.regex.is_match(path);
            if !hit {
                // A pattern that matches a parent folder covers the path as well.
                hit = (1..parents.len()).any(|n| pattern.regex.is_match(&parents[..n].join("/")));
            }
            if hit {
                excluded = !pattern.exclusion;
            }
        }
        excluded
    }
}

/// `filepath.Clean` for `/`-separated patterns, minus the leading `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Translate a cleaned pattern to an anchored regular expression.
fn compile(pattern: &str) -> Result<Regex, String> {
    let mut out = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                // `**/` is `**`: any number of segments, zero included.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    out.push_str(".*");
                } else {
                    out.push_str("(.*/)?");
                }
                continue;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '\\' => {
                i += 1;
                let escaped = chars
                    .get(i)
                    .ok_or_else(|| "trailing `\\` escapes nothing".to_owned())?;
                out.push_str(&regex::escape(&escaped.to_string()));
            }
            '[' => {
                let end = chars[i..]
                    .iter()
                    .position(|&ch| ch == ']')
                    .ok_or_else(|| "unclosed `[`".to_owned())?;
                let class: String = chars[i + 1..i + end].iter().collect();
                if class.is_empty() {
                    return Err("empty character class `[]`".to_owned());
                }
                out.push('[');
                out.push_str(&class.replace('\\', "\\\\"));
                out.push(']');
                i += end + 1;
                continue;
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    out.push('$');
    Regex::new(&out).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::IgnoreRules;

    /// (patterns, path, excluded?) — cases from Docker's documentation of
    /// `.dockerignore` and from moby/patternmatcher's own tests.
    const CASES: &[(&str, &str, bool)] = &[
        // plain names are root-relative
        ("foo", "foo", true),
        ("foo", "a/foo", false),
        ("/foo", "foo", true),
        ("./foo", "foo", true),
        ("foo/", "foo/bar", true),
        // a matched folder excludes everything beneath it
        ("foo", "foo/bar/baz.txt", true),
        ("*/temp*", "somedir/temporary.txt", true),
        ("*/temp*", "somedir/temp", true),
        ("*/temp*", "temp.txt", false),
        ("*/*/temp*", "somedir/subdir/temporary.txt", true),
        ("*/*/temp*", "somedir/temporary.txt", false),
        ("temp?", "tempa", true),
        ("temp?", "tempab", false),
        // `*` stays within one segment
        ("*.md", "README.md", true),
        ("*.md", "docs/README.md", false),
        ("*", "anything/at/all", true),
        // `**` spans any number of segments, zero included
        ("**/*.go", "main.go", true),
        ("**/*.go", "a/b/c/main.go", true),
        ("**/*.go", "a/b/main.rs", false),
        ("**/node_modules", "node_modules/x", true),
        ("**/node_modules", "web/app/node_modules/pkg/index.js", true),
        ("tmp/**", "tmp/a/b", true),
        ("tmp/**", "tmpfile", false),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("**", "x/y/z", true),
        // character classes and escapes
        ("[a-c]at", "bat", true),
        ("[a-c]at", "rat", false),
        ("[^a-c]at", "rat", true),
        ("\\*literal", "*literal", true),
        ("\\*literal", "xliteral", false),
        // `!` re-includes, last match wins
        ("*.md\n!README.md", "README.md", false),
        ("*.md\n!README.md", "CHANGES.md", true),
        (
            "*.md\n!README*.md\nREADME-secret.md",
            "README-secret.md",
            true,
        ),
        (
            "*.md\n!README*.md\nREADME-secret.md",
            "README-public.md",
            false,
        ),
        // re-includes reach inside excluded folders
        ("tmp\n!tmp/.keep", "tmp/.keep", false),
        ("tmp\n!tmp/.keep", "tmp/cache.bin", true),
        ("vendor/**\n!vendor/keep/**", "vendor/keep/a/b.rb", false),
        ("log/*\n!log/.keep", "log/.keep", false),
        ("logs\n!logs/**/keep.log", "logs/a/b/keep.log", false),
        ("logs\n!logs/**/keep.log", "logs/keep.log", false),
        ("logs\n!logs/**/keep.log", "logs/a/other.log", true),
        // comments, blank lines, whitespace
        ("# foo\n\n  bar  ", "bar", true),
        ("# foo", "# foo", false),
        // a `#` after spaces does not start a comment: the pattern is `# foo`
        ("  # foo", "# foo", true),
        ("\u{feff}# foo\nbar", "bar", true),
        ("  ", "anything", false),
        // `..` is cleaned away like a path
        ("a/../b", "b", true),
    ];

    #[test]
    fn agrees_with_dockers_documented_rules() {
        let mut failures = Vec::new();
        for (patterns, path, expected) in CASES {
            let rules = IgnoreRules::parse(patterns).expect("valid patterns");
            if rules.is_excluded(path) != *expected {
                failures.push(format!(
                    "{patterns:?} on {path:?}: expected excluded={expected}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(CASES.len() >= 25);
    }

    #[test]
    fn bad_patterns_name_their_line() {
        let err = IgnoreRules::parse("ok\n[abc").expect_err("unclosed class");
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("unclosed `[`"), "{err}");
    }

    #[test]
    fn knows_when_excluded_folders_must_be_walked() {
        assert!(!IgnoreRules::parse("tmp").expect("valid").has_exclusions());
        assert!(
            IgnoreRules::parse("tmp\n!tmp/x")
                .expect("valid")
                .has_exclusions()
        );
    }
}
