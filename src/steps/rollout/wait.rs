//! Waiting on the rollouts: a look at the services and their service deployments each poll,
//! the news told, until every rollout completed, one failed or paused, or the timeout passed.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{DesiredStatus, Service, ServiceDeployment};

use super::decide::{RolloutState, poll};
use super::explain::{failure, newest_failing, show_tasks};
use super::pace::Pace;
use super::{Cluster, History, Rolled, deployment};
use crate::aws::services;
use crate::error::Error;
use crate::report::{Reporter, Watch};
use crate::settings::pause_until;
use crate::text::{short_duration, with_causes};

/// Waits until every deployment completed, one failed, or the timeout passed: judged by each
/// service deployment where ECS lets berth read them, else by `DescribeServices` alone (a
/// warning in `warnings` says so).
pub async fn wait(
    ecs: &Client,
    cluster: Cluster<'_>,
    rolled: &mut [Rolled],
    seen_events: History,
    reporter: &dyn Reporter,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    let watch = Watch::new(cluster.timeouts.heartbeat);
    let mut reads = deployment::Reads::new(reporter, warnings);
    reads.attach(ecs, cluster, rolled).await;
    let looking = look_until_done(ecs, cluster, rolled, seen_events, &mut reads, &watch);
    watch
        .around(reporter, "waiting on the rollout", looking)
        .await
}

/// The rollout ran into `timeouts.rollout`: the tasks of the services not completed are shown,
/// and the newest failing one is the cause.
async fn timed_out(
    ecs: &Client,
    cluster: Cluster<'_>,
    rolled: &[Rolled],
    state: String,
    reporter: &dyn Reporter,
) -> Error {
    let mut seen_tasks = Vec::new();
    for rolled in rolled
        .iter()
        .filter(|r| r.rollout_state != RolloutState::Completed)
    {
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            seen_tasks.extend(show_tasks(ecs, cluster, rolled, status, reporter).await);
        }
    }
    Error::RolloutTimeout {
        timeout: short_duration(cluster.timeouts.rollout),
        state,
        cause: newest_failing(&seen_tasks),
    }
}

/// [`wait`]'s looks at the services, one per poll.
async fn look_until_done(
    ecs: &Client,
    cluster: Cluster<'_>,
    rolled: &mut [Rolled],
    mut seen_events: History,
    reads: &mut deployment::Reads<'_>,
    watch: &Watch,
) -> Result<(), Error> {
    let reporter = reads.reporter;
    let names: Vec<String> = rolled.iter().map(|r| r.service.clone()).collect();
    let mut shown: HashSet<String> = HashSet::new();
    let mut pace = Pace::new(cluster.timeouts.poll, tokio::time::Instant::now());
    if rolled.iter().all(|r| !r.already) {
        // Each service was just updated, and `UpdateService` answered with its deployment: nothing
        // has started yet, so the first look waits as a look while tasks start would.
        pause_until(pace.next(tokio::time::Instant::now(), false)).await;
    }
    loop {
        let looked = tokio::time::Instant::now();
        pace.look(looked);
        // A service gone in the middle of the rollout fails the rollout (exit 1), not the settings.
        let (services, deployments) = match look(ecs, cluster.name, &names, rolled, reads).await {
            Ok(seen) => seen,
            // Throttled or unanswered even after the SDK's retries: look again at the next poll.
            Err(error) if crate::aws::is_transient(&error) => {
                watch.beat(
                    reporter,
                    &format!(
                        "AWS did not answer ({}); looking again",
                        with_causes(&error)
                    ),
                );
                pause_until(pace.next(looked, false)).await;
                if watch.elapsed() < cluster.timeouts.rollout {
                    continue;
                }
                return Err(error);
            }
            Err(Error::Mismatch { problem, .. }) => {
                return Err(Error::RolloutFailed {
                    service: names.join(", "),
                    reason: problem,
                });
            }
            Err(other) => return Err(other),
        };
        tell_new_events(services.values(), &mut seen_events, reporter);
        let seen = poll(
            (&services, &deployments),
            rolled,
            &mut shown,
            watch.elapsed(),
        );
        for line in &seen.news {
            reporter.info(line);
        }
        if !seen.failed.is_empty() {
            return Err(failure(ecs, cluster, &services, rolled, seen.failed, reporter).await);
        }
        if seen.only_paused() {
            return Err(paused(cluster, rolled, &seen.states, reporter));
        }
        let (states, done) = (seen.states, seen.done);
        let state = states.join(", ");
        if done {
            reporter.info(&format!("rollout finished: {state}"));
            return Ok(());
        }
        if watch.elapsed() >= cluster.timeouts.rollout {
            return Err(timed_out(ecs, cluster, rolled, state, reporter).await);
        }
        watch.beat(reporter, &state);
        let near = all_running(&services, rolled) || failing(&services, rolled);
        pause_until(pace.next(looked, near)).await;
    }
}

/// Every rollout completed or waits at a pause hook: a person decides how it goes on.
fn paused(
    cluster: Cluster<'_>,
    rolled: &[Rolled],
    states: &[String],
    reporter: &dyn Reporter,
) -> Error {
    reporter.info(&format!("rollout paused: {}", states.join(", ")));
    let waiting: Vec<String> = rolled
        .iter()
        .filter_map(|r| {
            let at = r.paused.as_ref()?;
            Some(format!(
                "`{}` waits at {} for pause hook `{}`",
                r.service, at.stage, at.hook_id
            ))
        })
        .collect();
    Error::Paused {
        what: format!("the rollout is paused: {}", waiting.join("; ")),
        env: cluster.env.to_owned(),
    }
}

/// One look: the services and, where they can be read, their service deployments, at once.
async fn look(
    ecs: &Client,
    cluster: &str,
    names: &[String],
    rolled: &[Rolled],
    reads: &mut deployment::Reads<'_>,
) -> Result<
    (
        BTreeMap<String, Service>,
        BTreeMap<String, ServiceDeployment>,
    ),
    Error,
> {
    let (services, deployments) = tokio::join!(
        services::describe(ecs, cluster, names),
        reads.look(ecs, rolled)
    );
    Ok((services?, deployments?))
}

/// Every service's deployment of our revision runs all the tasks it wants: the deployment may
/// complete at any moment.
fn all_running(services: &BTreeMap<String, Service>, rolled: &[Rolled]) -> bool {
    rolled.iter().all(|r| {
        services.get(&r.service).is_some_and(|service| {
            service
                .deployments()
                .iter()
                .find(|d| d.id() == Some(r.deployment_id.as_str()))
                .is_some_and(|d| d.running_count() >= d.desired_count())
        })
    })
}

/// A service's deployment of our revision has tasks that failed: the circuit breaker (or berth's
/// own threshold without one) may end the rollout at any moment.
fn failing(services: &BTreeMap<String, Service>, rolled: &[Rolled]) -> bool {
    rolled.iter().any(|r| {
        services.get(&r.service).is_some_and(|service| {
            service
                .deployments()
                .iter()
                .any(|d| d.id() == Some(r.deployment_id.as_str()) && d.failed_tasks() > 0)
        })
    })
}

/// The services' events not told yet, oldest first.
fn tell_new_events<'a>(
    services: impl Iterator<Item = &'a Service>,
    seen_events: &mut History,
    reporter: &dyn Reporter,
) {
    for service in services {
        let mut fresh: Vec<_> = service
            .events()
            .iter()
            .filter(|e| e.id().is_some_and(|id| seen_events.insert(id.to_owned())))
            .collect();
        fresh.reverse(); // ECS lists events newest first
        for event in fresh {
            reporter.info(&format!("event: {}", event.message().unwrap_or_default()));
        }
    }
}
