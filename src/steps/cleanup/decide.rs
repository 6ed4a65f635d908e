//! Which revisions `keep_revisions` deregisters, pure: those beyond the newest N that nothing
//! uses.

use std::collections::BTreeSet;

use crate::aws::arn;

/// Which of `active` (one family's ACTIVE revisions, newest first) to deregister: those beyond
/// the newest `keep` that nothing in `in_use` names. `in_use` holds `(family, revision)` pairs,
/// so `family:7` and a full ARN name the same revision.
pub fn doomed(active: &[String], keep: usize, in_use: &BTreeSet<(String, u64)>) -> Vec<String> {
    active
        .iter()
        .skip(keep)
        .filter(|revision| !in_use.contains(&key(revision)))
        .cloned()
        .collect()
}

/// `(family, revision)` of a task-definition ARN or `family:N`.
pub fn key(revision: &str) -> (String, u64) {
    (arn::family(revision).to_owned(), arn::revision(revision))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{doomed, key};

    #[test]
    fn only_old_revisions_nothing_uses_go() {
        let arn = |n: u64| format!("arn:aws:ecs:us-east-1:1:task-definition/web:{n}");
        let active: Vec<String> = (1..=6).rev().map(arn).collect();
        let in_use: BTreeSet<(String, u64)> = [key("web:2"), key(&arn(5))].into();
        // Keep 6 and 5; 4, 3 and 1 go; 2 is in use (a scheduled target names it short).
        assert_eq!(doomed(&active, 2, &in_use), [arn(4), arn(3), arn(1)]);
        assert_eq!(doomed(&active, 10, &in_use), Vec::<String>::new());
        assert_eq!(doomed(&active, 1, &BTreeSet::new()).len(), 5);
    }
}
