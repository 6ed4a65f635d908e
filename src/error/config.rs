//! Errors in the settings: `berth.toml`, the flags and the `BERTH_*` variables, found before
//! anything ran (exit 2), and where in the file they are.

use std::fmt;

/// A problem with `berth.toml`, the flags or the `BERTH_*` variables, found before anything ran.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file `{path}` not found")]
    NotFound { path: String },

    #[error(transparent)]
    Read(std::io::Error),

    #[error("configuration file `{path}` is not UTF-8 text")]
    NotText { path: String },

    /// TOML syntax, unknown keys and wrong types, as reported by the TOML parser.
    #[error("{place}: {message}{snippet}")]
    Syntax {
        place: Place,
        message: String,
        /// The offending line, starting with a newline; empty when the position is unknown.
        snippet: String,
    },

    #[error("{file}: no environment chosen; defined: {}", list_or_none(.defined))]
    NoEnvironment { file: String, defined: Vec<String> },

    #[error("{file}: unknown environment `{name}`; defined: {}", list_or_none(.defined))]
    UnknownEnvironment {
        file: String,
        name: String,
        defined: Vec<String>,
    },

    #[error("{file}: `{key}` is not set")]
    Missing {
        file: String,
        key: String,
        hint: String,
    },

    /// A value that parsed but makes no sense, such as an empty `services` list.
    #[error("{place}: `{key}` {problem}")]
    Invalid {
        place: Place,
        key: String,
        problem: String,
        hint: String,
    },
}

impl ConfigError {
    pub fn hint(&self) -> String {
        match self {
            Self::NotFound { path } => format!(
                "create `{path}` (see docs/configuration.md), or point to the file with `--config PATH` or `{}`",
                crate::env_vars::BERTH_CONFIG
            ),
            Self::Read(_) => "check that the file is readable".to_owned(),
            Self::NotText { .. } => "TOML files are UTF-8: save the file as UTF-8".to_owned(),
            Self::Syntax { .. } => {
                "docs/configuration.md lists every key of berth.toml with its type".to_owned()
            }
            Self::NoEnvironment { .. } | Self::UnknownEnvironment { .. } => format!(
                "choose an environment with `--env NAME` or `{}`; each is an `[env.NAME]` table in berth.toml",
                crate::env_vars::BERTH_ENV
            ),
            Self::Missing { hint, .. } | Self::Invalid { hint, .. } => hint.clone(),
        }
    }
}

/// A file, and where in it when known: `berth.toml:4:11` or `berth.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        crate::text::code_list(names)
    }
}
