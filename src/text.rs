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
