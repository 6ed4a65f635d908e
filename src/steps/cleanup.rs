//! `keep_revisions`: after a successful deploy, the oldest ACTIVE revisions of each deployed
//! family beyond the newest N are deregistered, never one still in use: by any service of the
//! cluster (any of its deployments), by any scheduled target of the account, or by the records
//! of the newest N deploys (what a rollback would go back to); and only revisions this
//! environment's deploys registered.

use std::collections::BTreeSet;

use crate::aws::arn;
use crate::aws::failed;
use crate::error::Error;

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

/// One family's ACTIVE revisions, newest first.
pub async fn active(ecs: &aws_sdk_ecs::Client, family: &str) -> Result<Vec<String>, Error> {
    let mut revisions = Vec::new();
    let mut next = None;
    loop {
        let page = ecs
            .list_task_definitions()
            .family_prefix(family)
            .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
            .sort(aws_sdk_ecs::types::SortOrder::Desc)
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| failed(format!("listing the revisions of `{family}`"), e))?;
        // The prefix matches longer families too (`web` and `web-worker`).
        revisions.extend(
            page.task_definition_arns()
                .iter()
                .filter(|arn| arn::family(arn) == family)
                .cloned(),
        );
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            // Newest first, whatever order the pages came in.
            revisions.sort_by_key(|revision| std::cmp::Reverse(arn::revision(revision)));
            return Ok(revisions);
        }
    }
}

/// Every service of the cluster, by name.
pub async fn services_in(ecs: &aws_sdk_ecs::Client, cluster: &str) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let mut next = None;
    loop {
        let page = ecs
            .list_services()
            .cluster(cluster)
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| failed(format!("listing the services of `{cluster}`"), e))?;
        names.extend(
            page.service_arns()
                .iter()
                .map(|arn| arn::short(arn).to_owned()),
        );
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            return Ok(names);
        }
    }
}

pub async fn deregister(ecs: &aws_sdk_ecs::Client, revision: &str) -> Result<(), Error> {
    ecs.deregister_task_definition()
        .task_definition(revision)
        .send()
        .await
        .map_err(|e| failed(format!("deregistering `{}`", arn::short(revision)), e))?;
    Ok(())
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
