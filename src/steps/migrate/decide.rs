//! What earlier runs of this deploy left, and what to do now. A pure function of the deploy
//! record's migration attempts, what ECS says of the latest attempt's task, the revision's tags
//! (a mirror the record wins over, read only when the record has no attempt) and
//! `--retry-migration`; the migrate step reads those from S3 and ECS and acts on the
//! [`Decision`].

use crate::aws::arn;
use crate::state::record::{Attempt, AttemptOutcome};
pub use crate::task::decide::{capacity, exit_codes, verdict};
use crate::taskdef::{Described, MIGRATION_RESULT_TAG, MIGRATION_TASK_TAG};

pub use crate::state::record::ExitCodes;

/// What to do about a migration of this deploy that failed.
const RETRY_HINT: &str = "fix the cause and pass `--retry-migration` to run it again; a migration never runs twice on its own";

/// How long ECS holds a `RunTask` `clientToken`: within it, the same token starts no second task.
pub const CLIENT_TOKEN_LIFETIME: u64 = 24 * 60 * 60;
/// Margin kept from the token's end: a resumed claim must reach ECS while the token still holds.
const TOKEN_MARGIN: u64 = 10 * 60;

/// The migration as the revision's tags mirror it: `berth:migration` (`started`, `succeeded`,
/// `failed`) and the task.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub task: Option<&'a str>,
    pub result: Option<&'a str>,
}

impl<'a> Claim<'a> {
    pub fn of(revision: &'a Described) -> Self {
        Self {
            task: revision.tags.get(MIGRATION_TASK_TAG).map(String::as_str),
            result: revision.tags.get(MIGRATION_RESULT_TAG).map(String::as_str),
        }
    }
}

/// What ECS says of the latest attempt's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not asked: the attempt has no task, or its outcome is recorded.
    NotAsked,
    /// Still going, in this status.
    Running(String),
    /// ECS no longer knows the task (stopped tasks are forgotten after about an hour).
    Forgotten,
}

/// Everything the decision is made from.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// The record's attempts, oldest first; a stopped task's outcome already written in.
    pub attempts: &'a [Attempt],
    /// ECS's view of the latest attempt's task.
    pub seen: Seen,
    /// The revision's tags, for deploys whose record has no attempt.
    pub tags: Claim<'a>,
    pub retry: bool,
    /// Unix seconds.
    pub now: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This deploy's migration succeeded.
    Succeeded {
        task_arn: String,
        exit_codes: ExitCodes,
    },
    /// This deploy's migration task is still going: follow it.
    Attach { task_arn: String, status: String },
    /// Call `RunTask` for attempt `number` with `token`. `claim`: a new attempt, to be claimed
    /// in the record first; otherwise a claimed attempt whose `RunTask` may not have happened,
    /// resumed with its own token (ECS hands back its task if it did). `replaces`: the failed
    /// task `--retry-migration` runs again.
    Start {
        number: u32,
        token: String,
        claim: bool,
        replaces: Option<String>,
    },
    /// Start nothing: the migration failed, or may have run, and only a person can say whether
    /// to run it again.
    Refuse { summary: String, hint: String },
}

/// The `RunTask` `clientToken` of attempt `number`: ECS allows 64 characters; a deploy id is at
/// most 36.
pub fn client_token(deploy_id: &str, number: u32) -> String {
    format!("{deploy_id}-migrate-{number}")
}

/// Decides what this run does about the migration of `deploy_id`.
pub fn decide(deploy_id: &str, situation: &Situation<'_>) -> Decision {
    let new_attempt = |number: u32, replaces: Option<String>| Decision::Start {
        number,
        token: client_token(deploy_id, number),
        claim: true,
        replaces,
    };
    let Some(latest) = situation.attempts.last() else {
        return from_tags(situation, new_attempt(0, None));
    };
    let next = latest.number + 1;
    let task = latest.task_arn.clone().unwrap_or_default();
    match latest.outcome {
        AttemptOutcome::Succeeded => Decision::Succeeded {
            task_arn: task,
            exit_codes: latest.exit_codes.clone().unwrap_or_default(),
        },
        AttemptOutcome::Failed if situation.retry => new_attempt(next, Some(task)),
        AttemptOutcome::Failed => Decision::Refuse {
            summary: format!(
                "this deploy's migration task `{}` {}",
                arn::short(&task),
                latest.summary.as_deref().unwrap_or("failed")
            ),
            hint: RETRY_HINT.to_owned(),
        },
        AttemptOutcome::Started => match &situation.seen {
            Seen::Running(status) => Decision::Attach {
                task_arn: task,
                status: status.clone(),
            },
            Seen::Forgotten | Seen::NotAsked if situation.retry => new_attempt(next, Some(task)),
            Seen::Forgotten | Seen::NotAsked => Decision::Refuse {
                summary: format!(
                    "this deploy's migration task `{}` may have run, but ECS no longer knows how it ended",
                    arn::short(&task)
                ),
                hint: MAY_HAVE_RUN_HINT.to_owned(),
            },
        },
        AttemptOutcome::Claimed => {
            let age = situation.now.saturating_sub(latest.claimed_at);
            if age + TOKEN_MARGIN < CLIENT_TOKEN_LIFETIME {
                Decision::Start {
                    number: latest.number,
                    token: latest.client_token.clone(),
                    claim: false,
                    replaces: None,
                }
            } else if situation.retry {
                new_attempt(next, None)
            } else {
                Decision::Refuse {
                    summary: "this deploy's migration may have run: it was being started when an earlier run ended, more than a day ago, and its `RunTask` token has expired".to_owned(),
                    hint: MAY_HAVE_RUN_HINT.to_owned(),
                }
            }
        }
    }
}

/// No attempt in the record: a deploy begun before records, or none started. The revision's
/// tags say which.
fn from_tags(situation: &Situation<'_>, start: Decision) -> Decision {
    let claim = situation.tags;
    match (claim.task, claim.result) {
        (Some(task), Some("succeeded")) => Decision::Succeeded {
            task_arn: task.to_owned(),
            exit_codes: ExitCodes::new(),
        },
        _ if situation.retry => start,
        (Some(task), Some("failed")) => Decision::Refuse {
            summary: format!(
                "this deploy's migration task `{}` failed",
                arn::short(task)
            ),
            hint: RETRY_HINT.to_owned(),
        },
        (_, Some("started")) | (Some(_), _) => Decision::Refuse {
            summary: "this deploy's migration may have run (the revision's tags say it was started), but its record has no attempt".to_owned(),
            hint: MAY_HAVE_RUN_HINT.to_owned(),
        },
        _ => start,
    }
}

const MAY_HAVE_RUN_HINT: &str = "check the task's logs or the database's migration state; pass `--retry-migration` to run the migration again";

#[cfg(test)]
mod tests {
    use super::{Claim, Decision, Seen, Situation, client_token, decide};
    use crate::state::record::{Attempt, AttemptOutcome};
    use crate::task::decide::tests::revision;
    use crate::taskdef::{MIGRATION_RESULT_TAG, MIGRATION_TASK_TAG};

    const TASK_1: &str = "arn:aws:ecs:us-east-1:1:task/berth-stg/1111";
    const TASK_2: &str = "arn:aws:ecs:us-east-1:1:task/berth-stg/2222";
    const DAY: u64 = 24 * 60 * 60;

    fn attempt(number: u32, task: Option<&str>, outcome: AttemptOutcome, at: u64) -> Attempt {
        Attempt {
            number,
            client_token: client_token("stg-abc", number),
            claimed_at: at,
            task_arn: task.map(str::to_owned),
            outcome,
            exit_codes: None,
            summary: (outcome == AttemptOutcome::Failed)
                .then(|| "failed: `app` exited 1".to_owned()),
        }
    }

    /// What a row expects; summaries are matched by a part of their text.
    #[derive(Debug)]
    enum Want {
        Succeeded(&'static str),
        Attach(&'static str),
        /// Attempt, whether it is claimed anew, the task it replaces.
        Start(u32, bool, Option<&'static str>),
        Refuse(&'static str),
    }

    fn fits(decision: &Decision, want: &Want) -> bool {
        match (decision, want) {
            (Decision::Succeeded { task_arn, .. }, Want::Succeeded(task)) => task_arn == task,
            (Decision::Attach { task_arn, .. }, Want::Attach(task)) => task_arn == task,
            (
                Decision::Start {
                    number,
                    token,
                    claim,
                    replaces,
                },
                Want::Start(want, claimed, replaced),
            ) => {
                number == want
                    && claim == claimed
                    && *token == client_token("stg-abc", *number)
                    && replaces.as_deref() == *replaced
            }
            (Decision::Refuse { summary, hint }, Want::Refuse(part)) => {
                summary.contains(part) && hint.contains("--retry-migration")
            }
            _ => false,
        }
    }

    /// One row per situation an earlier run can leave; now is a day and a bit after t = 0.
    #[test]
    fn what_an_earlier_run_left_decides_what_this_one_does() {
        use AttemptOutcome::{Claimed, Failed, Started, Succeeded};
        let now = DAY + 1000;
        let recent = now - 60;
        let running = || Seen::Running("RUNNING".to_owned());
        /// Case, attempts in the record, what ECS says of the latest, tags on the revision,
        /// `--retry-migration`, expected.
        type Row = (
            &'static str,
            Vec<Attempt>,
            Seen,
            &'static [(&'static str, &'static str)],
            bool,
            Want,
        );
        let rows: Vec<Row> = vec![
            (
                "a first run",
                vec![],
                Seen::NotAsked,
                &[],
                false,
                Want::Start(0, true, None),
            ),
            (
                "claimed and never started (crash before RunTask): resumed with its own token",
                vec![attempt(0, None, Claimed, recent)],
                Seen::NotAsked,
                &[],
                false,
                Want::Start(0, false, None),
            ),
            (
                "claimed more than a day ago: the token expired, it may have run",
                vec![attempt(0, None, Claimed, 0)],
                Seen::NotAsked,
                &[],
                false,
                Want::Refuse("may have run"),
            ),
            (
                "claimed long ago, retry asked: a new attempt",
                vec![attempt(0, None, Claimed, 0)],
                Seen::NotAsked,
                &[],
                true,
                Want::Start(1, true, None),
            ),
            (
                "started and running: attach",
                vec![attempt(0, Some(TASK_1), Started, recent)],
                running(),
                &[],
                false,
                Want::Attach(TASK_1),
            ),
            (
                "running, retry asked: still attach, never a second task",
                vec![attempt(0, Some(TASK_1), Started, recent)],
                running(),
                &[],
                true,
                Want::Attach(TASK_1),
            ),
            (
                "stopped 0 (recorded): done, ECS not asked",
                vec![attempt(0, Some(TASK_1), Succeeded, recent)],
                Seen::NotAsked,
                &[],
                false,
                Want::Succeeded(TASK_1),
            ),
            (
                "succeeded, retry asked: done all the same",
                vec![attempt(0, Some(TASK_1), Succeeded, recent)],
                Seen::NotAsked,
                &[],
                true,
                Want::Succeeded(TASK_1),
            ),
            (
                "stopped non-zero: refused",
                vec![attempt(0, Some(TASK_1), Failed, recent)],
                Seen::NotAsked,
                &[],
                false,
                Want::Refuse("exited 1"),
            ),
            (
                "stopped non-zero, retry asked: attempt 1 replaces it",
                vec![attempt(0, Some(TASK_1), Failed, recent)],
                Seen::NotAsked,
                &[],
                true,
                Want::Start(1, true, Some(TASK_1)),
            ),
            (
                "the retry failed too, retry asked again: attempt 2",
                vec![
                    attempt(0, Some(TASK_1), Failed, recent),
                    attempt(1, Some(TASK_2), Failed, recent),
                ],
                Seen::NotAsked,
                &[],
                true,
                Want::Start(2, true, Some(TASK_2)),
            ),
            (
                "a retry claimed and never started: resumed, not a third attempt",
                vec![
                    attempt(0, Some(TASK_1), Failed, recent),
                    attempt(1, None, Claimed, recent),
                ],
                Seen::NotAsked,
                &[],
                true,
                Want::Start(1, false, None),
            ),
            (
                "started, then forgotten by ECS before its end was recorded: may have run",
                vec![attempt(0, Some(TASK_1), Started, recent)],
                Seen::Forgotten,
                &[],
                false,
                Want::Refuse("may have run"),
            ),
            (
                "forgotten, retry asked: a new attempt",
                vec![attempt(0, Some(TASK_1), Started, recent)],
                Seen::Forgotten,
                &[],
                true,
                Want::Start(1, true, Some(TASK_1)),
            ),
            (
                "no attempt, but the revision's tags say it succeeded (an older berth)",
                vec![],
                Seen::NotAsked,
                &[
                    (MIGRATION_TASK_TAG, TASK_1),
                    (MIGRATION_RESULT_TAG, "succeeded"),
                ],
                false,
                Want::Succeeded(TASK_1),
            ),
            (
                "no attempt, tags say started: may have run",
                vec![],
                Seen::NotAsked,
                &[(MIGRATION_RESULT_TAG, "started")],
                false,
                Want::Refuse("may have run"),
            ),
            (
                "no attempt, tags say failed, retry asked: attempt 0",
                vec![],
                Seen::NotAsked,
                &[
                    (MIGRATION_TASK_TAG, TASK_1),
                    (MIGRATION_RESULT_TAG, "failed"),
                ],
                true,
                Want::Start(0, true, None),
            ),
            (
                "the record wins over the tags",
                vec![attempt(0, Some(TASK_2), Succeeded, recent)],
                Seen::NotAsked,
                &[
                    (MIGRATION_TASK_TAG, TASK_1),
                    (MIGRATION_RESULT_TAG, "failed"),
                ],
                false,
                Want::Succeeded(TASK_2),
            ),
        ];
        for (case, attempts, seen, tags, retry, want) in rows {
            let mut revision = revision();
            revision.tags = tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let situation = Situation {
                attempts: &attempts,
                seen,
                tags: Claim::of(&revision),
                retry,
                now,
            };
            let decision = decide("stg-abc", &situation);
            assert!(
                fits(&decision, &want),
                "{case}: got {decision:?}, want {want:?}"
            );
        }
    }
}
