//! What an earlier run of this deploy left, and what to do about it. A pure function of the
//! revision (the migration's claim in its tags, which containers are essential), the tasks ECS
//! still knows and `--retry-migration`; the migrate step reads those from AWS and acts on the
//! [`Decision`].

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{CapacityProviderStrategyItem, LaunchType, Service, Task};

use crate::arn;
use crate::settings::CapacityProvider;
use crate::taskdef::{Described, MIGRATION_RESULT_TAG, MIGRATION_TASK_TAG};

/// What to do about a migration of this deploy that failed.
const RETRY_HINT: &str = "fix the cause and pass `--retry-migration` to run it again; a migration never runs twice on its own";

/// Exit code of each container of a task; `None` when it has none.
pub type ExitCodes = BTreeMap<String, Option<i32>>;

/// The migration's record on the revision: written before `RunTask` (`started`), then the task
/// and how it ended. It outlives ECS's short memory of stopped tasks.
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

    /// The revision says the migration succeeded: nothing in ECS needs to be read.
    pub fn succeeded(&self) -> bool {
        self.result == Some("succeeded")
    }
}

#[derive(Debug, Clone)]
pub enum Decision {
    /// This deploy's migration succeeded. `record`: the revision does not say so yet.
    Succeeded {
        task_arn: String,
        exit_codes: ExitCodes,
        record: bool,
    },
    /// This deploy's migration task is still going: follow it.
    Attach { task_arn: String, status: String },
    /// Start a task. `attempt` counts the tasks this deploy started before; `replaces` is the
    /// failed task that `--retry-migration` runs again.
    Start {
        attempt: usize,
        replaces: Option<String>,
    },
    /// Start nothing: the migration failed, or may have run, and only a person can say whether
    /// to run it again.
    Refuse { summary: String, hint: String },
}

/// Decides from the revision, the container the migration runs in, and the tasks started by
/// this deploy that ECS still knows (described, any order).
pub fn decide(revision: &Described, container: &str, tasks: &[Task], retry: bool) -> Decision {
    let claim = Claim::of(revision);
    if claim.succeeded() {
        return Decision::Succeeded {
            task_arn: claim.task.unwrap_or_default().to_owned(),
            exit_codes: ExitCodes::new(),
            record: false,
        };
    }
    let Some(latest) = tasks
        .iter()
        .max_by_key(|t| t.created_at().map(|d| d.secs()))
    else {
        return forgotten(claim, retry);
    };
    let task_arn = latest.task_arn().unwrap_or_default().to_owned();
    if latest.last_status() != Some("STOPPED") {
        return Decision::Attach {
            status: latest.last_status().unwrap_or("starting").to_owned(),
            task_arn,
        };
    }
    match verdict(revision, container, latest) {
        Ok(exit_codes) => Decision::Succeeded {
            task_arn,
            exit_codes,
            record: true,
        },
        Err(_) if retry => Decision::Start {
            attempt: tasks.len(),
            replaces: Some(task_arn),
        },
        Err(summary) => Decision::Refuse {
            summary: format!(
                "this deploy's migration task `{}` {summary}",
                arn::short(&task_arn)
            ),
            hint: RETRY_HINT.to_owned(),
        },
    }
}

/// No task of this deploy in ECS: none was started, or ECS has forgotten it.
fn forgotten(claim: Claim<'_>, retry: bool) -> Decision {
    let start = Decision::Start {
        attempt: 0,
        replaces: None,
    };
    if retry {
        return start;
    }
    match (claim.task, claim.result) {
        (Some(task), Some("failed")) => Decision::Refuse {
            summary: format!(
                "this deploy's migration task `{}` failed",
                arn::short(task)
            ),
            hint: RETRY_HINT.to_owned(),
        },
        // Claimed (tag written before RunTask) or started, and no task to be found: it may have
        // run.
        (Some(task), _) => Decision::Refuse {
            summary: format!(
                "this deploy's migration task `{}` may have run, but ECS no longer knows how it ended",
                arn::short(task)
            ),
            hint: MAY_HAVE_RUN_HINT.to_owned(),
        },
        (None, Some("started")) => Decision::Refuse {
            summary: "this deploy's migration may have run (it was being started when an earlier run ended), but ECS knows no task of it".to_owned(),
            hint: MAY_HAVE_RUN_HINT.to_owned(),
        },
        _ => start,
    }
}

const MAY_HAVE_RUN_HINT: &str = "check the task's logs or the database's migration state; pass `--retry-migration` to run the migration again";

/// Where the migration task runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Capacity {
    Strategy(Vec<CapacityProviderStrategyItem>),
    LaunchType(LaunchType),
    /// The cluster's default capacity-provider strategy.
    ClusterDefault,
}

/// The web service's capacity, but never Fargate Spot: ECS may stop a Spot task at two minutes'
/// notice, and a migration cut off half-way is worse than one that costs a little more. A
/// strategy in `[migration]` wins.
pub fn capacity(web: &Service, configured: Option<&[CapacityProvider]>) -> Capacity {
    if let Some(configured) = configured {
        return Capacity::Strategy(
            configured
                .iter()
                .map(|item| {
                    CapacityProviderStrategyItem::builder()
                        .capacity_provider(&item.capacity_provider)
                        .weight(item.weight)
                        .base(item.base)
                        .build()
                })
                .collect::<Result<_, _>>()
                .unwrap_or_default(),
        );
    }
    let strategy = web.capacity_provider_strategy();
    if strategy
        .iter()
        .any(|item| item.capacity_provider() == "FARGATE_SPOT")
    {
        return Capacity::LaunchType(LaunchType::Fargate);
    }
    if !strategy.is_empty() {
        return Capacity::Strategy(strategy.to_vec());
    }
    match web.launch_type() {
        Some(launch_type) => Capacity::LaunchType(launch_type.clone()),
        None => Capacity::ClusterDefault,
    }
}

/// Exit codes when the migration succeeded; otherwise what went wrong. As ECS judges a task:
/// the migration container's own exit code decides. Another essential container fails it only
/// when it exited by itself, non-zero; one that ECS stopped because the task was ending (143 after
/// SIGTERM, 137 after SIGKILL, once an essential container exited) is reported, not judged.
pub fn verdict(revision: &Described, container: &str, task: &Task) -> Result<ExitCodes, String> {
    let exit_codes: ExitCodes = task
        .containers()
        .iter()
        .map(|c| (c.name().unwrap_or("?").to_owned(), c.exit_code()))
        .collect();
    let stop_code = task.stop_code().map_or("none", |c| c.as_str());
    let reason = task.stopped_reason().unwrap_or("no reason given");
    if stop_code == "TaskFailedToStart" {
        return Err(format!("did not start (`TaskFailedToStart`): {reason}"));
    }
    let failed: Vec<String> = exit_codes
        .iter()
        .filter(|(name, code)| {
            if name.as_str() == container {
                **code != Some(0)
            } else {
                revision.essential(name)
                    && code.is_some_and(|code| code != 0)
                    && ended_by_ecs(task, **code).is_none()
            }
        })
        .map(|(name, code)| match code {
            Some(code) => format!("`{name}` exited {code}"),
            None => format!("`{name}` has no exit code"),
        })
        .collect();
    let ran = exit_codes.contains_key(container);
    if failed.is_empty() && ran {
        return Ok(exit_codes);
    }
    let all: Vec<String> = exit_codes
        .iter()
        .map(|(name, code)| match code {
            Some(code) => format!("{name}={code}"),
            None => format!("{name}=none"),
        })
        .collect();
    let failed = if ran {
        failed.join(", ")
    } else {
        format!("the task has no container `{container}`")
    };
    Err(format!(
        "failed: {failed} (exit codes {}; stopCode `{stop_code}`; stoppedReason: {reason})",
        all.join(", ")
    ))
}

/// Exit code of a container stopped with SIGTERM (128 + 15).
const STOPPED_BY_SIGTERM: i32 = 143;
/// Exit code of a container killed after its `stopTimeout` (128 + 9).
const STOPPED_BY_SIGKILL: i32 = 137;

/// How ECS stopped a container of `task` that exited with `code`, when it did so because an
/// essential container had exited: SIGTERM, then SIGKILL after the `stopTimeout`.
fn ended_by_ecs(task: &Task, code: Option<i32>) -> Option<&'static str> {
    if task.stop_code().map(|c| c.as_str()) != Some("EssentialContainerExited") {
        return None;
    }
    match code? {
        STOPPED_BY_SIGTERM => Some("SIGTERM"),
        STOPPED_BY_SIGKILL => Some("SIGKILL after its `stopTimeout`"),
        _ => None,
    }
}

/// The containers, other than the migration's, that ECS stopped because the task was ending: said
/// once the migration succeeded, so that their exit codes do not look like a failure.
pub fn stopped_by_ecs(revision: &Described, container: &str, task: &Task) -> Vec<String> {
    task.containers()
        .iter()
        .filter(|c| c.name() != Some(container))
        .filter_map(|c| {
            let name = c.name()?;
            let how = ended_by_ecs(task, c.exit_code())?;
            let kind = if revision.essential(name) {
                "essential container"
            } else {
                "container"
            };
            Some(format!(
                "{kind} `{name}` was stopped by ECS when the task ended ({how}, exit {})",
                c.exit_code().unwrap_or_default()
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{Container, Task, TaskStopCode};
    use aws_smithy_types::DateTime;
    use serde_json::json;

    use super::{Decision, decide, stopped_by_ecs, verdict};
    use crate::taskdef::{Described, MIGRATION_RESULT_TAG, MIGRATION_TASK_TAG};

    fn revision() -> Described {
        Described::from_json(
            "arn:aws:ecs:us-east-1:1:task-definition/web:8",
            json!({
                "family": "web",
                "containerDefinitions": [
                    {"name": "app", "essential": true},
                    {"name": "datadog-agent", "essential": false}
                ]
            }),
        )
    }

    fn task(stop_code: TaskStopCode, codes: &[(&str, Option<i32>)]) -> Task {
        Task::builder()
            .stop_code(stop_code)
            .stopped_reason("Essential container in task exited")
            .set_containers(Some(
                codes
                    .iter()
                    .map(|(name, code)| {
                        Container::builder()
                            .name(*name)
                            .set_exit_code(*code)
                            .build()
                    })
                    .collect(),
            ))
            .build()
    }

    #[test]
    fn success_needs_every_essential_container_to_exit_0() {
        let ok = task(
            TaskStopCode::EssentialContainerExited,
            &[("app", Some(0)), ("datadog-agent", Some(137))],
        );
        assert_eq!(
            verdict(&revision(), "app", &ok).map(|codes| codes["app"]),
            Ok(Some(0)),
            "a non-essential sidecar killed at the end does not fail the migration"
        );
        let failed = task(
            TaskStopCode::EssentialContainerExited,
            &[("app", Some(1)), ("datadog-agent", Some(0))],
        );
        let summary = verdict(&revision(), "app", &failed).unwrap_err();
        assert!(summary.contains("`app` exited 1"), "{summary}");
        assert!(summary.contains("EssentialContainerExited"), "{summary}");
        let no_code = task(TaskStopCode::EssentialContainerExited, &[("app", None)]);
        assert!(
            verdict(&revision(), "app", &no_code)
                .unwrap_err()
                .contains("no exit code")
        );
    }

    #[test]
    fn a_task_that_failed_to_start_says_so() {
        let mut failed = task(TaskStopCode::TaskFailedToStart, &[("app", None)]);
        failed.stopped_reason = Some("CannotPullContainerError: pull access denied".into());
        let summary = verdict(&revision(), "app", &failed).unwrap_err();
        assert!(
            summary.starts_with("did not start (`TaskFailedToStart`)"),
            "{summary}"
        );
        assert!(summary.contains("CannotPullContainerError"), "{summary}");
    }

    const TASK_1: &str = "arn:aws:ecs:us-east-1:1:task/berth-stg/1111";
    const TASK_2: &str = "arn:aws:ecs:us-east-1:1:task/berth-stg/2222";

    /// A task of this deploy as `DescribeTasks` shows it: created at `created`, in `status`, and
    /// (once stopped) with `app`'s exit code.
    fn found(arn: &str, created: i64, status: &str, app: Option<i32>) -> Task {
        let mut task = task(TaskStopCode::EssentialContainerExited, &[("app", app)]);
        task.task_arn = Some(arn.to_owned());
        task.created_at = Some(DateTime::from_secs(created));
        task.last_status = Some(status.to_owned());
        task
    }

    /// What a row expects; summaries are matched by a part of their text.
    #[derive(Debug)]
    enum Want {
        Succeeded { task: &'static str, record: bool },
        Attach(&'static str),
        Start(usize, Option<&'static str>),
        Refuse(&'static str),
    }

    fn fits(decision: &Decision, want: &Want) -> bool {
        match (decision, want) {
            (
                Decision::Succeeded {
                    task_arn, record, ..
                },
                Want::Succeeded { task, record: want },
            ) => task_arn == task && record == want,
            (Decision::Attach { task_arn, .. }, Want::Attach(task)) => task_arn == task,
            (Decision::Start { attempt, replaces }, Want::Start(want, replaced)) => {
                attempt == want && replaces.as_deref() == *replaced
            }
            (Decision::Refuse { summary, hint }, Want::Refuse(part)) => {
                summary.contains(part) && hint.contains("--retry-migration")
            }
            _ => false,
        }
    }

    #[test]
    fn what_an_earlier_run_left_decides_what_this_one_does() {
        let running = found(TASK_1, 10, "RUNNING", None);
        let ok = found(TASK_1, 10, "STOPPED", Some(0));
        let failed = found(TASK_1, 10, "STOPPED", Some(1));
        let failed_again = found(TASK_2, 20, "STOPPED", Some(1));
        let retried = found(TASK_2, 20, "PENDING", None);
        /// Case, tags on the revision, tasks ECS knows, `--retry-migration`, expected.
        type Row = (
            &'static str,
            &'static [(&'static str, &'static str)],
            Vec<Task>,
            bool,
            Want,
        );
        let rows: Vec<Row> = vec![
            ("a first run", &[], vec![], false, Want::Start(0, None)),
            (
                "success recorded on the revision: done, tasks unread",
                &[
                    (MIGRATION_TASK_TAG, TASK_1),
                    (MIGRATION_RESULT_TAG, "succeeded"),
                ],
                vec![failed.clone()],
                false,
                Want::Succeeded {
                    task: TASK_1,
                    record: false,
                },
            ),
            (
                "a task still running: attach",
                &[
                    (MIGRATION_TASK_TAG, TASK_1),
                    (MIGRATION_RESULT_TAG, "started"),
                ],
                vec![running.clone()],
                false,
                Want::Attach(TASK_1),
            ),
            (
                "a task that exited 0 while no run watched: done, and recorded",
                &[(MIGRATION_RESULT_TAG, "started")],
                vec![ok.clone()],
                false,
                Want::Succeeded {
                    task: TASK_1,
                    record: true,
                },
            ),
            (
                "a failed task: refused",
                &[
                    (MIGRATION_TASK_TAG, TASK_1),
                    (MIGRATION_RESULT_TAG, "failed"),
                ],
                vec![failed.clone()],
                false,
                Want::Refuse("`1111` failed: `app` exited 1"),
            ),
            (
                "a failed task with --retry-migration: the next attempt",
                &[
                    (MIGRATION_TASK_TAG, TASK_1),
                    (MIGRATION_RESULT_TAG, "failed"),
                ],
                vec![failed.clone()],
                true,
                Want::Start(1, Some(TASK_1)),
            ),
            (
                "the newest of two tasks decides",
                &[
                    (MIGRATION_TASK_TAG, TASK_2),
                    (MIGRATION_RESULT_TAG, "started"),
                ],
                vec![retried.clone(), failed.clone()],
                false,
                Want::Attach(TASK_2),
            ),
            (
                "two failed attempts with --retry-migration: the third",
                &[
                    (MIGRATION_TASK_TAG, TASK_2),
                    (MIGRATION_RESULT_TAG, "failed"),
                ],
                vec![failed.clone(), failed_again.clone()],
                true,
                Want::Start(2, Some(TASK_2)),
            ),
            (
                "a failed task ECS forgot: refused from the record",
                &[
                    (MIGRATION_TASK_TAG, TASK_1),
                    (MIGRATION_RESULT_TAG, "failed"),
                ],
                vec![],
                false,
                Want::Refuse("`1111` failed"),
            ),
            (
                "a started task ECS forgot: it may have run",
                &[
                    (MIGRATION_TASK_TAG, TASK_1),
                    (MIGRATION_RESULT_TAG, "started"),
                ],
                vec![],
                false,
                Want::Refuse("`1111` may have run"),
            ),
            (
                "a claim with no task: it may have run",
                &[(MIGRATION_RESULT_TAG, "started")],
                vec![],
                false,
                Want::Refuse("it was being started when an earlier run ended"),
            ),
            (
                "a claim with no task, with --retry-migration: start again",
                &[(MIGRATION_RESULT_TAG, "started")],
                vec![],
                true,
                Want::Start(0, None),
            ),
            (
                "a forgotten failure with --retry-migration: start again",
                &[
                    (MIGRATION_TASK_TAG, TASK_1),
                    (MIGRATION_RESULT_TAG, "failed"),
                ],
                vec![],
                true,
                Want::Start(0, None),
            ),
            (
                "a task that never started: refused with ECS's reason",
                &[(MIGRATION_RESULT_TAG, "started")],
                vec![{
                    let mut task = found(TASK_1, 10, "STOPPED", None);
                    task.stop_code = Some(TaskStopCode::TaskFailedToStart);
                    task
                }],
                false,
                Want::Refuse("did not start (`TaskFailedToStart`)"),
            ),
        ];
        for (case, tags, tasks, retry, want) in rows {
            let mut revision = revision();
            revision.tags = tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let decision = decide(&revision, "app", &tasks, retry);
            assert!(
                fits(&decision, &want),
                "{case}: got {decision:?}, want {want:?}"
            );
        }
    }

    /// As ECS judges a task: the migration container decides; an essential sidecar fails it only
    /// when it exited by itself.
    #[test]
    fn the_migration_container_decides_and_containers_ecs_stopped_are_not_judged() {
        let revision = Described::from_json(
            "arn:aws:ecs:us-east-1:1:task-definition/web:8",
            json!({
                "family": "web",
                "containerDefinitions": [
                    {"name": "app", "essential": true},
                    {"name": "proxy", "essential": true},
                    {"name": "datadog-agent", "essential": false}
                ]
            }),
        );
        let exited = TaskStopCode::EssentialContainerExited;
        /// Case, stop code, exit codes of `app`, `proxy`, `datadog-agent`, and the verdict.
        type Row = (
            &'static str,
            TaskStopCode,
            [Option<i32>; 3],
            Result<(), &'static str>,
        );
        let rows: [Row; 8] = [
            (
                "all exited 0",
                exited.clone(),
                [Some(0), Some(0), Some(0)],
                Ok(()),
            ),
            (
                "an essential sidecar that ignored SIGTERM was killed",
                exited.clone(),
                [Some(0), Some(137), Some(0)],
                Ok(()),
            ),
            (
                "an essential sidecar stopped by SIGTERM",
                exited.clone(),
                [Some(0), Some(143), Some(143)],
                Ok(()),
            ),
            (
                "an essential sidecar that crashed by itself",
                exited.clone(),
                [Some(0), Some(2), Some(0)],
                Err("`proxy` exited 2"),
            ),
            (
                "a non-essential sidecar that crashed",
                exited.clone(),
                [Some(0), Some(0), Some(1)],
                Ok(()),
            ),
            (
                "the migration killed when a sidecar exited first",
                exited.clone(),
                [Some(143), Some(0), Some(0)],
                Err("`app` exited 143"),
            ),
            (
                "a task stopped by a person: 143 is not ECS ending the task",
                TaskStopCode::UserInitiated,
                [Some(0), Some(143), Some(0)],
                Err("`proxy` exited 143"),
            ),
            (
                "a sidecar that never ran",
                exited,
                [Some(0), None, Some(0)],
                Ok(()),
            ),
        ];
        for (case, stop_code, [app, proxy, agent], want) in rows {
            let task = task(
                stop_code,
                &[("app", app), ("proxy", proxy), ("datadog-agent", agent)],
            );
            let got = verdict(&revision, "app", &task).map(|_| ());
            match want {
                Ok(()) => assert_eq!(got, Ok(()), "{case}"),
                Err(part) => {
                    let summary = got.expect_err(case);
                    assert!(summary.contains(part), "{case}: {summary}");
                }
            }
        }
        let killed = task(
            TaskStopCode::EssentialContainerExited,
            &[
                ("app", Some(0)),
                ("proxy", Some(137)),
                ("datadog-agent", Some(143)),
            ],
        );
        assert_eq!(
            stopped_by_ecs(&revision, "app", &killed),
            [
                "essential container `proxy` was stopped by ECS when the task ended (SIGKILL after its `stopTimeout`, exit 137)",
                "container `datadog-agent` was stopped by ECS when the task ended (SIGTERM, exit 143)",
            ]
        );
        let gone = task(
            TaskStopCode::EssentialContainerExited,
            &[("proxy", Some(0))],
        );
        assert!(
            verdict(&revision, "app", &gone)
                .unwrap_err()
                .contains("no container `app`")
        );
    }

    #[test]
    fn the_migration_runs_on_demand_even_when_web_runs_on_spot() {
        use aws_sdk_ecs::types::{CapacityProviderStrategyItem, LaunchType, Service};

        use super::{Capacity, capacity};
        use crate::settings::CapacityProvider;

        let item = |name: &str, weight: i32| {
            CapacityProviderStrategyItem::builder()
                .capacity_provider(name)
                .weight(weight)
                .build()
                .unwrap()
        };
        let spot = Service::builder()
            .capacity_provider_strategy(item("FARGATE", 1))
            .capacity_provider_strategy(item("FARGATE_SPOT", 4))
            .build();
        let on_demand = Service::builder()
            .capacity_provider_strategy(item("FARGATE", 1))
            .build();
        let launch_type = Service::builder().launch_type(LaunchType::Fargate).build();
        let configured = [CapacityProvider {
            capacity_provider: "FARGATE_SPOT".into(),
            weight: 1,
            base: 0,
        }];
        let rows = [
            (
                "web on Spot: on-demand Fargate",
                &spot,
                None,
                Capacity::LaunchType(LaunchType::Fargate),
            ),
            (
                "web on demand: the same strategy",
                &on_demand,
                None,
                Capacity::Strategy(vec![item("FARGATE", 1)]),
            ),
            (
                "a launch type",
                &launch_type,
                None,
                Capacity::LaunchType(LaunchType::Fargate),
            ),
            (
                "nothing: the cluster's default",
                &Service::builder().build(),
                None,
                Capacity::ClusterDefault,
            ),
            (
                "the setting wins, Spot included",
                &spot,
                Some(&configured[..]),
                Capacity::Strategy(vec![
                    CapacityProviderStrategyItem::builder()
                        .capacity_provider("FARGATE_SPOT")
                        .weight(1)
                        .base(0)
                        .build()
                        .unwrap(),
                ]),
            ),
        ];
        for (case, web, configured, want) in rows {
            assert_eq!(capacity(web, configured), want, "{case}");
        }
    }
}
