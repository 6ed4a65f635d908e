//! What `berth run` decides before it calls ECS: which token the task is started with, whether a
//! deploy in flight forbids running the service's revision now, which revision and container run
//! the command, and what exit code the task's end makes. Pure functions; `run/mod.rs` asks AWS
//! and acts.

use sha2::{Digest, Sha256};

use crate::state::lock::Holder;
use crate::state::record::{DeployRecord, RolloutOutcome};
use crate::taskdef::Described;

/// ECS takes a `clientToken` of up to 64 ASCII characters.
const TOKEN_LIMIT: usize = 64;
/// `startedBy`: up to 36 letters, digits, hyphens, slashes and underscores.
const STARTED_BY_PREFIX: &str = "berth-run-";
const STARTED_BY_LIMIT: usize = 36;

/// The task's idempotency: the `clientToken` that makes ECS start one task for it, and the
/// `startedBy` by which `ListTasks` finds that task while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub client_token: String,
    pub started_by: String,
    /// Where the token came from: `--client-token`, `CIRCLE_WORKFLOW_JOB_ID`, or this run.
    pub from: TokenSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Flag,
    CircleJob,
    /// A token of this run alone: a rerun starts another task.
    ThisRun,
}

/// The token of a run: `--client-token` as given; else one derived from CircleCI's job id and
/// what runs (`what`: environment, service, container, command), so that two `berth run` steps
/// of one job get two tasks and a retry of one step gets its own back; else `fresh`, this run's.
pub fn token(
    explicit: Option<&str>,
    job: Option<&str>,
    what: &[&str],
    fresh: &str,
) -> Result<Token, String> {
    let (client_token, from) = match (explicit, job) {
        (Some(token), _) => {
            if token.is_empty()
                || token.len() > TOKEN_LIMIT
                || !token.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!(
                    "`--client-token` must be 1 to {TOKEN_LIMIT} printable ASCII characters without spaces (ECS's limit); got {} characters",
                    token.chars().count()
                ));
            }
            (token.to_owned(), TokenSource::Flag)
        }
        (None, Some(job)) => {
            let mut parts = vec![job];
            parts.extend_from_slice(what);
            (
                format!("berth-run-{}", &hex(&parts)[..40]),
                TokenSource::CircleJob,
            )
        }
        (None, None) => (format!("berth-run-{fresh}"), TokenSource::ThisRun),
    };
    let started_by = format!(
        "{STARTED_BY_PREFIX}{}",
        &hex(&[&client_token])[..STARTED_BY_LIMIT - STARTED_BY_PREFIX.len()]
    );
    Ok(Token {
        client_token,
        started_by,
        from,
    })
}

/// SHA-256 of the parts, each ended by a NUL (so that `ab`,`c` and `a`,`bc` differ), in hex.
fn hex(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why running the service's revision now would run code the environment is leaving: a deploy
/// holds the lock (its lease not run out), has registered its revisions, and has not rolled
/// every service out. `None`: nothing forbids it.
pub fn in_flight(
    holder: Option<&Holder>,
    record: Option<&DeployRecord>,
    now: u64,
) -> Option<String> {
    let holder = holder.filter(|h| h.expires > now)?;
    let record = record.filter(|r| r.deploy_id == holder.deploy_id)?;
    if record.revisions.is_empty() {
        return None;
    }
    let rolled_out = !record.services.is_empty()
        && record
            .services
            .values()
            .all(|s| s.outcome == RolloutOutcome::Completed);
    if rolled_out {
        return None;
    }
    let registered: Vec<String> = record
        .revisions
        .values()
        .map(|arn| format!("`{}`", crate::aws::arn::short(arn)))
        .collect();
    Some(format!(
        "{} `{}` ({}) registered {} and has not rolled {} out yet",
        holder.command,
        holder.deploy_id,
        holder.who,
        registered.join(", "),
        if registered.len() == 1 { "it" } else { "them" }
    ))
}

/// The revision `--revision` names: `web:15` or an ARN as it is, a bare number in the
/// service's family.
pub fn revision_name(asked: &str, family: &str) -> String {
    if !asked.is_empty() && asked.bytes().all(|b| b.is_ascii_digit()) {
        format!("{family}:{asked}")
    } else {
        asked.to_owned()
    }
}

/// The container that runs the command: the one asked for, else `default`; it must be one of
/// the revision's. On error, the names the revision has.
pub fn container(
    revision: &Described,
    asked: Option<&str>,
    default: &str,
) -> Result<String, Vec<String>> {
    let name = asked.unwrap_or(default);
    if revision.container(name).is_some() {
        return Ok(name.to_owned());
    }
    Err(revision
        .containers()
        .iter()
        .filter_map(|c| c.get("name")?.as_str().map(str::to_owned))
        .collect())
}

/// Whether the task `RunTask` answered with (asked at `asked`) is one an earlier run started
/// with the same token: a task just started is still PROVISIONING or PENDING, and was created
/// after the request (give or take the clocks' skew, which SigV4 bounds at 5 minutes). The
/// running ones were found before by their `startedBy`; this tells a stopped one.
pub fn started_before(task: &aws_sdk_ecs::types::Task, asked: std::time::SystemTime) -> bool {
    const SKEW: u64 = 5 * 60;
    let fresh = matches!(task.last_status(), None | Some("PROVISIONING" | "PENDING"));
    let asked = asked
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let created_long_before = task
        .created_at()
        .and_then(|c| u64::try_from(c.secs()).ok())
        .is_some_and(|created| created + SKEW < asked);
    !fresh || created_long_before
}

/// The command the task's overrides give `container`, if they give it one.
pub fn command_of(task: &aws_sdk_ecs::types::Task, container: &str) -> Option<Vec<String>> {
    task.overrides()?
        .container_overrides()
        .iter()
        .find(|c| c.name() == Some(container))
        .map(|c| c.command().to_vec())
}

/// The container a task started by `berth run` ran its command in: the one whose command the
/// task's overrides replace.
pub fn overridden(task: &aws_sdk_ecs::types::Task) -> Option<String> {
    task.overrides()?
        .container_overrides()
        .iter()
        .find(|o| !o.command().is_empty())
        .and_then(|o| o.name())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::{TokenSource, container, in_flight, revision_name, token};
    use crate::state::lock::Holder;
    use crate::state::record::{DeployRecord, RolloutOutcome, ServiceRollout};
    use crate::taskdef::Described;

    #[test]
    fn a_token_comes_from_the_flag_the_circleci_job_or_this_run() {
        let what = ["stg", "web", "app", "bin/rails\u{0}runner"];
        let flag = token(Some("backfill-2026-12"), Some("job-1"), &what, "r1").unwrap();
        assert_eq!(flag.client_token, "backfill-2026-12");
        assert_eq!(flag.from, TokenSource::Flag);
        let job = token(None, Some("job-1"), &what, "r1").unwrap();
        assert_eq!(job.from, TokenSource::CircleJob);
        assert_eq!(
            job,
            token(None, Some("job-1"), &what, "r2").unwrap(),
            "a retry in the same job gets the same token"
        );
        let other_command = token(None, Some("job-1"), &["stg", "web", "app", "x"], "r1").unwrap();
        assert_ne!(
            job.client_token, other_command.client_token,
            "two steps, two tasks"
        );
        let other_job = token(None, Some("job-2"), &what, "r1").unwrap();
        assert_ne!(job.client_token, other_job.client_token);
        let fresh = token(None, None, &what, "0123abcd").unwrap();
        assert_eq!(
            (fresh.client_token.as_str(), fresh.from),
            ("berth-run-0123abcd", TokenSource::ThisRun)
        );
        for t in [&flag, &job, &fresh] {
            assert!(t.client_token.len() <= 64, "{t:?}");
            assert_eq!(t.started_by.len(), 36, "{t:?}");
            assert!(t.started_by.starts_with("berth-run-"), "{t:?}");
        }
        for bad in ["", "has space", &"x".repeat(65), "naïve"] {
            let error = token(Some(bad), None, &what, "r").unwrap_err();
            assert!(error.contains("`--client-token`"), "{bad:?}: {error}");
        }
    }

    fn holder(expires: u64) -> Holder {
        Holder {
            who: "ci/42".into(),
            run: "r".into(),
            command: "deploy".into(),
            deploy_id: "stg-abc".into(),
            commit: "abc".into(),
            since: 100,
            expires,
        }
    }

    fn record(revisions: &[&str], rolled: &[(&str, RolloutOutcome)]) -> DeployRecord {
        DeployRecord {
            deploy_id: "stg-abc".into(),
            revisions: revisions
                .iter()
                .map(|r| {
                    (
                        (*r).to_owned(),
                        format!("arn:aws:ecs:us-east-1:1:task-definition/{r}:15"),
                    )
                })
                .collect(),
            services: rolled
                .iter()
                .map(|(name, outcome)| {
                    let rollout = ServiceRollout {
                        revision: "web:15".into(),
                        deployment_id: None,
                        service_deployment: None,
                        outcome: *outcome,
                    };
                    ((*name).to_owned(), rollout)
                })
                .collect::<BTreeMap<_, _>>(),
            ..DeployRecord::default()
        }
    }

    #[test]
    fn a_deploy_between_register_and_rollout_forbids_running_the_services_revision() {
        use RolloutOutcome::{Completed, InProgress};
        let now = 200;
        let cases: [(&str, Option<Holder>, Option<DeployRecord>, bool); 7] = [
            ("no holder", None, Some(record(&["web"], &[])), false),
            (
                "lease run out",
                Some(holder(150)),
                Some(record(&["web"], &[])),
                false,
            ),
            (
                "nothing registered yet",
                Some(holder(300)),
                Some(record(&[], &[])),
                false,
            ),
            (
                "registered, no rollout",
                Some(holder(300)),
                Some(record(&["web"], &[])),
                true,
            ),
            (
                "one service rolling",
                Some(holder(300)),
                Some(record(
                    &["web"],
                    &[("web", Completed), ("devops", InProgress)],
                )),
                true,
            ),
            (
                "all rolled out (the migration after, or cleanup)",
                Some(holder(300)),
                Some(record(
                    &["web"],
                    &[("web", Completed), ("devops", Completed)],
                )),
                false,
            ),
            (
                "no record of the holder's deploy",
                Some(holder(300)),
                None,
                false,
            ),
        ];
        for (case, holder, record, refused) in cases {
            let why = in_flight(holder.as_ref(), record.as_ref(), now);
            assert_eq!(why.is_some(), refused, "{case}: {why:?}");
            if let Some(why) = why {
                assert!(
                    why.contains("`stg-abc`") && why.contains("`web:15`"),
                    "{case}: {why}"
                );
            }
        }
    }

    #[test]
    fn a_task_handed_back_for_an_old_token_is_told_from_a_new_one() {
        use aws_sdk_ecs::types::Task;
        use aws_smithy_types::DateTime;
        let asked = std::time::UNIX_EPOCH + std::time::Duration::from_secs(10_000);
        let task = |status: &str, created: i64| {
            Task::builder()
                .last_status(status)
                .created_at(DateTime::from_secs(created))
                .build()
        };
        let cases = [
            ("just started", task("PROVISIONING", 10_001), false),
            (
                "just started, the clock behind",
                task("PENDING", 9_900),
                false,
            ),
            ("stopped already", task("STOPPED", 9_990), true),
            ("running already", task("RUNNING", 9_990), true),
            ("created an hour before", task("PROVISIONING", 6_400), true),
        ];
        for (case, task, before) in cases {
            assert_eq!(super::started_before(&task, asked), before, "{case}");
        }
    }

    #[test]
    fn a_revision_and_a_container_are_named_or_taken_from_the_service() {
        assert_eq!(revision_name("15", "app-stg-web"), "app-stg-web:15");
        assert_eq!(revision_name("other:3", "app-stg-web"), "other:3");
        let arn = "arn:aws:ecs:us-east-1:1:task-definition/web:8";
        assert_eq!(revision_name(arn, "x"), arn);
        let revision = Described::from_json(
            arn,
            json!({"family": "web", "containerDefinitions": [{"name": "app"}, {"name": "datadog-agent"}]}),
        );
        assert_eq!(container(&revision, None, "app"), Ok("app".to_owned()));
        assert_eq!(
            container(&revision, Some("datadog-agent"), "app"),
            Ok("datadog-agent".to_owned())
        );
        assert_eq!(
            container(&revision, Some("worker"), "app"),
            Err(vec!["app".to_owned(), "datadog-agent".to_owned()])
        );
    }
}
