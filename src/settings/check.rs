//! The checks every setting goes through, each failing with the key, the place in berth.toml
//! and a hint.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::names::{is_tag, parse_duration};
use super::{MigrateOrder, OnCancel, OnFailure, Promotion, Source};
use crate::error::ConfigError;

/// Checks the settings of environment `env`, read from `source`.
pub(super) struct Check<'a> {
    pub(super) source: &'a Source<'a>,
    pub(super) env: &'a str,
}

impl Check<'_> {
    pub(super) fn invalid(
        &self,
        key: &str,
        span: Option<Range<usize>>,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            place: self.source.place(span),
            key: key.to_owned(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }

    pub(super) fn required<T>(
        &self,
        value: Option<Spanned<T>>,
        key: &str,
        what: &str,
    ) -> Result<Spanned<T>, ConfigError> {
        value.ok_or_else(|| ConfigError::Missing {
            file: self.source.file.clone(),
            key: format!("env.{}.{key}", self.env),
            hint: format!(
                "set `{key}` ({what}) in `[env.{}]`, or at the top level of berth.toml to share it between environments",
                self.env
            ),
        })
    }

    pub(super) fn non_empty(
        &self,
        value: Spanned<String>,
        key: &str,
    ) -> Result<String, ConfigError> {
        if value.get_ref().trim().is_empty() {
            return Err(self.invalid(
                key,
                Some(value.span()),
                "is empty",
                format!("give `{key}` a value, or remove it"),
            ));
        }
        Ok(value.into_inner())
    }

    /// A non-empty list of distinct, non-empty names.
    pub(super) fn name_list(
        &self,
        list: Spanned<Vec<String>>,
        key: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let span = list.span();
        let names = list.into_inner();
        if names.is_empty() {
            return Err(self.invalid(
                key,
                Some(span),
                "is empty",
                format!("list at least one name in `{key}`, or remove the key"),
            ));
        }
        let mut seen = BTreeSet::new();
        for name in &names {
            if name.trim().is_empty() {
                return Err(self.invalid(
                    key,
                    Some(span),
                    "has an empty name",
                    format!("remove the empty entry from `{key}`"),
                ));
            }
            if !seen.insert(name) {
                return Err(self.invalid(
                    key,
                    Some(span),
                    format!("lists `{name}` twice"),
                    format!("list each name once in `{key}`"),
                ));
            }
        }
        Ok(names)
    }

    pub(super) fn migrate_order(
        &self,
        value: Spanned<String>,
    ) -> Result<MigrateOrder, ConfigError> {
        match value.get_ref().as_str() {
            "after" => Ok(MigrateOrder::After),
            "before" => Ok(MigrateOrder::Before),
            "skip" => Ok(MigrateOrder::Skip),
            other => Err(self.invalid(
                "migrate",
                Some(value.span()),
                format!("is `{other}`, expected `after`, `before` or `skip`"),
                "`after` migrates once the new revision is rolled out (the default), `before` migrates first, `skip` never migrates",
            )),
        }
    }

    pub(super) fn image_tag(&self, tag: Spanned<String>) -> Result<String, ConfigError> {
        if is_tag(tag.get_ref()) {
            Ok(tag.into_inner())
        } else {
            Err(self.invalid(
                "env_tag",
                Some(tag.span()),
                format!("is `{}`, which is not a Docker tag", tag.get_ref()),
                "use letters, digits, `_`, `.` and `-`, up to 128 characters, such as `stg-latest`",
            ))
        }
    }

    pub(super) fn duration(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(value) = value else {
            return Ok(default);
        };
        parse_duration(value.get_ref()).map_err(|problem| {
            self.invalid(
                key,
                Some(value.span()),
                format!("is `{}`: {problem}", value.get_ref()),
                "write a duration with units, such as `90s`, `20m` or `1h 30m`",
            )
        })
    }

    pub(super) fn on_cancel(&self, value: Spanned<String>) -> Result<OnCancel, ConfigError> {
        match value.get_ref().as_str() {
            "rollback" | "roll back" => Ok(OnCancel::Rollback),
            "leave" => Ok(OnCancel::Leave),
            other => Err(self.invalid(
                "on_cancel",
                Some(value.span()),
                format!("is `{other}`"),
                "use `leave` (a cancelled deploy's deployments go on in ECS) or `rollback` (ECS rolls back those still in flight)",
            )),
        }
    }

    /// `promotion`, `copy` unless set.
    pub(super) fn promotion(
        &self,
        value: Option<Spanned<String>>,
    ) -> Result<Promotion, ConfigError> {
        let Some(value) = value else {
            return Ok(Promotion::Copy);
        };
        match value.get_ref().as_str() {
            "copy" => Ok(Promotion::Copy),
            "reference" => Ok(Promotion::Reference),
            other => Err(self.invalid(
                "promotion",
                Some(value.span()),
                format!("is `{other}`"),
                "use `copy` (the image is copied by digest into this environment's repository) or `reference` (pinned to the source environment's repository)",
            )),
        }
    }

    pub(super) fn account(
        &self,
        value: Option<Spanned<String>>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let text = value.get_ref();
        if text.len() == 12 && text.chars().all(|c| c.is_ascii_digit()) {
            return Ok(Some(text.clone()));
        }
        Err(self.invalid(
            "account",
            Some(value.span()),
            format!("is `{text}`, not an AWS account id"),
            "use the account's 12 digits, as a string: `account = \"123456789012\"`",
        ))
    }

    /// The environment an image must pass first: `requires`, or `promote_from`, which implies
    /// it; both must name the same one.
    pub(super) fn one_upstream(
        &self,
        requires: Option<Spanned<String>>,
        promote_from: Option<&Spanned<String>>,
    ) -> Result<Option<Spanned<String>>, ConfigError> {
        match (requires, promote_from) {
            (Some(requires), Some(from)) if requires.get_ref() != from.get_ref() => Err(self.invalid(
                "requires",
                Some(requires.span()),
                format!(
                    "is `{}`, but `promote_from` is `{}`",
                    requires.get_ref(),
                    from.get_ref()
                ),
                "leave `requires` out: an image promoted from an environment must have succeeded there",
            )),
            (Some(requires), _) => Ok(Some(requires)),
            (None, from) => Ok(from.cloned()),
        }
    }

    pub(super) fn on_failure(&self, value: Spanned<String>) -> Result<OnFailure, ConfigError> {
        match value.get_ref().as_str() {
            "rollback" => Ok(OnFailure::Rollback),
            "leave" => Ok(OnFailure::Leave),
            other => Err(self.invalid(
                "on_failure",
                Some(value.span()),
                format!("is `{other}`"),
                "use `rollback` (services that moved go back when another fails) or `leave`",
            )),
        }
    }
}
