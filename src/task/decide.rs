//! How a one-off task is judged, and where it runs: pure functions of what ECS says of the task
//! and the service it borrows its settings from. The migration and `berth run` share them.

use aws_sdk_ecs::types::{CapacityProviderStrategyItem, LaunchType, Service, Task};

use crate::settings::CapacityProvider;
use crate::state::record::ExitCodes;
use crate::taskdef::Described;

/// Where a one-off task runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Capacity {
    Strategy(Vec<CapacityProviderStrategyItem>),
    LaunchType(LaunchType),
    /// The cluster's default capacity-provider strategy.
    ClusterDefault,
}

/// The service's capacity, but never Fargate Spot: ECS may stop a Spot task at two minutes'
/// notice, and a migration or a backfill cut off half-way is worse than one that costs a little
/// more. A configured strategy (`[migration]`'s) wins.
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

/// Exit codes when the task succeeded; otherwise what went wrong. As ECS judges a task: the
/// container that ran the command (`container`) decides by its own exit code. Another essential container fails it only
/// when it exited by itself, non-zero; one that ECS stopped because the task was ending (143 after
/// SIGTERM, 137 after SIGKILL, once an essential container exited) is reported, not judged.
pub fn verdict(revision: &Described, container: &str, task: &Task) -> Result<ExitCodes, String> {
    let exit_codes = exit_codes(task);
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

/// Each container's exit code, by name.
pub fn exit_codes(task: &Task) -> ExitCodes {
    task.containers()
        .iter()
        .map(|c| (c.name().unwrap_or("?").to_owned(), c.exit_code()))
        .collect()
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

/// The containers, other than the command's, that ECS stopped because the task was ending: said
/// once the task succeeded, so that their exit codes do not look like a failure.
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
pub(crate) mod tests {
    use aws_sdk_ecs::types::{Container, Task, TaskStopCode};
    use serde_json::json;

    use super::{stopped_by_ecs, verdict};
    use crate::taskdef::Described;

    /// A revision with an essential `app` and a non-essential `datadog-agent`.
    pub(crate) fn revision() -> Described {
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
