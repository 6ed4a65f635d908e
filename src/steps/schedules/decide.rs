//! What to do about each scheduled target, pure: move it, leave it (not ours, on the family's
//! latest, already moved), and the record's list of moved targets after a survey.

use std::collections::BTreeMap;

use crate::aws::arn;
use crate::state::record::MovedTarget;
use crate::steps::schedules::Survey;

/// What to do about one target, given the deploy's revisions (family → revision ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It runs a family the deploy did not touch.
    NotOurs,
    /// It names the family without a revision: ECS runs the latest ACTIVE one, already ours.
    Latest,
    /// It runs the new revision already.
    Already,
    /// Point it at this revision.
    Move(String),
}

pub fn decide(task_definition: &str, revisions: &BTreeMap<String, String>) -> Decision {
    let family = arn::family(task_definition);
    let Some(new) = revisions.get(family) else {
        return Decision::NotOurs;
    };
    if !arn::short(task_definition).contains(':') {
        return Decision::Latest;
    }
    if arn::revision(task_definition) == arn::revision(new) {
        Decision::Already
    } else {
        Decision::Move(new.clone())
    }
}

/// The record's list of moved targets with this survey's added, each with the revision it ran
/// before: written before the first moves, so a run cut off mid-way still knows.
pub(super) fn planned(survey: &Survey, before: &[MovedTarget]) -> Vec<MovedTarget> {
    let mut moved = before.to_vec();
    for (scheduled, to) in &survey.to_move {
        match moved
            .iter_mut()
            .find(|m| m.name == scheduled.name && m.target == scheduled.target)
        {
            // Moved again (a rollback after a deploy): where it goes now.
            Some(entry) => entry.to.clone_from(to),
            None => moved.push(MovedTarget {
                name: scheduled.name.clone(),
                target: scheduled.target.clone(),
                from: scheduled.task_definition.clone(),
                to: to.clone(),
            }),
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Decision, decide};

    /// One row per situation a target can be in.
    #[test]
    fn a_target_moves_only_when_it_runs_an_older_revision_of_a_deployed_family() {
        let revisions = BTreeMap::from([(
            "app-stg-web".to_owned(),
            "arn:aws:ecs:us-east-1:1:task-definition/app-stg-web:8".to_owned(),
        )]);
        let new = "arn:aws:ecs:us-east-1:1:task-definition/app-stg-web:8";
        let rows = [
            (
                "arn:aws:ecs:us-east-1:1:task-definition/app-stg-web:7",
                Decision::Move(new.to_owned()),
            ),
            ("app-stg-web:3", Decision::Move(new.to_owned())),
            (
                "arn:aws:ecs:us-east-1:1:task-definition/app-stg-web:8",
                Decision::Already,
            ),
            (
                "arn:aws:ecs:us-east-1:1:task-definition/app-stg-web",
                Decision::Latest,
            ),
            ("app-stg-web", Decision::Latest),
            (
                "arn:aws:ecs:us-east-1:1:task-definition/app-stg-worker:7",
                Decision::NotOurs,
            ),
        ];
        for (task_definition, expected) in rows {
            assert_eq!(
                decide(task_definition, &revisions),
                expected,
                "{task_definition}"
            );
        }
    }
}
