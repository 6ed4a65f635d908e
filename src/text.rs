//! Words for people: lists of names and durations as berth's messages write them.

use std::time::Duration;

/// Names in backticks, comma-separated: `` `web`, `devops` ``.
pub fn code_list<S: std::fmt::Display>(names: impl IntoIterator<Item = S>) -> String {
    names
        .into_iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1m 5s`, whole seconds.
pub fn short_duration(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// An error and its causes on one line: `tagging the image failed: service error: AccessDenied`.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// The first 7 characters of a commit sha, as git shows it; the whole text when it is shorter or
/// not plain ASCII there (a tag anyone can edit).
pub fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// A command as a shell would take it back: words with spaces or quotes in single quotes
/// (`sh -c 'echo once; exit 0'`).
pub fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
            if plain {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces secret values (the secret build args') with `***` in what berth shows: build
/// output, hook output.
#[derive(Debug)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    pub secrets: Vec<String>,
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a String>) -> Self {
        let mut secrets: Vec<String> = values
            .into_iter()
            .filter(|value| !value.is_empty())
            .cloned()
            .collect();
        secrets.sort_by_key(|value| std::cmp::Reverse(value.len()));
        Self { secrets }
    }

    pub fn mask(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_command_reads_as_a_shell_would_take_it() {
        let words = ["sh", "-c", "echo once; exit 0", "it's", ""].map(str::to_owned);
        assert_eq!(
            super::shell_words(&words),
            r"sh -c 'echo once; exit 0' 'it'\''s' ''"
        );
        let plain = ["bin/rails", "db:migrate", "FOO=1"].map(str::to_owned);
        assert_eq!(super::shell_words(&plain), "bin/rails db:migrate FOO=1");
    }
}
