//! Finding the scheduled targets: the ECS targets of EventBridge rules (the rules that name the
//! cluster, on every event bus) and of EventBridge Scheduler schedules (every group's whose
//! target is the cluster, read a few at a time), each kept as AWS sent it.

use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;

use super::{Clients, Kind, Scheduled};
use crate::aws::wire::CaptureBody;
use crate::aws::{all_pages, failed};
use crate::error::Error;
use crate::settings::{Listed, parse_listed};
use crate::state::record::MovedTarget;

/// `GetSchedule` calls in flight at once while schedules are surveyed: well under the Scheduler
/// API's request rate, so a survey is not throttled.
const SCHEDULES_READ_AT_ONCE: usize = 8;

/// Fields of `GetSchedule`'s answer that `UpdateSchedule` does not take (the name goes in the
/// path).
const SCHEDULE_READ_ONLY: [&str; 4] = ["Arn", "CreationDate", "LastModificationDate", "Name"];

/// What finding the targets cost, in AWS reads and time: the `--output json` record's `survey`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Rules whose targets were read (`ListTargetsByRule`).
    pub rules_read: usize,
    /// Schedules `ListSchedules` named, in every group and cluster.
    pub schedules_listed: usize,
    /// Schedules read one by one (`GetSchedule`): those whose target is the cluster.
    pub schedules_read: usize,
    pub seconds: f64,
}

/// The ECS targets of the rules and schedules `listed` names, or else of every rule (on every
/// event bus) whose targets name `cluster` and every schedule (in every group) whose target is
/// `cluster`. `cluster` `None`: every rule's and every schedule's ECS targets, in any cluster
/// (what `keep_revisions` must not break). The schedules named in `known` (the record's, as
/// `schedule/GROUP/NAME`) are read first.
pub async fn find(
    clients: &Clients,
    cluster: Option<&str>,
    listed: Option<&[String]>,
    known: &[String],
) -> Result<(Vec<Scheduled>, Cost), Error> {
    let began = Instant::now();
    let mut cost = Cost::default();
    let (rules, mut schedules) = match listed {
        Some(entries) => {
            let mut rules = Vec::new();
            let mut schedules = Vec::new();
            for entry in entries {
                match parse_listed(entry) {
                    Some(Listed::Rule { bus, name }) => rules.push((bus, name)),
                    Some(Listed::Schedule { group, name }) => schedules.push((group, name)),
                    None => {} // refused when the settings were read
                }
            }
            (rules, schedules)
        }
        None => {
            let (rules, (schedules, listed)) = tokio::try_join!(
                rules_in(&clients.events, cluster),
                ecs_schedules(&clients.scheduler, cluster)
            )?;
            cost.schedules_listed = listed;
            (rules, schedules)
        }
    };
    let mut found = Vec::new();
    cost.rules_read = rules.len();
    for (bus, rule) in rules {
        found.extend(rule_targets(&clients.events, bus.as_deref(), &rule, cluster).await?);
    }
    // Only `GetSchedule` says what a schedule runs: those in the cluster are read, a few at a
    // time (one after another, many schedules would add seconds), the record's first.
    schedules.sort_by_key(|(group, name)| !known.contains(&format!("schedule/{group}/{name}")));
    cost.schedules_read = schedules.len();
    let read: Vec<Option<Scheduled>> = futures_util::stream::iter(schedules)
        .map(
            |(group, name)| async move { schedule_target(&clients.scheduler, &group, &name).await },
        )
        .buffered(SCHEDULES_READ_AT_ONCE)
        .try_collect()
        .await?;
    found.extend(read.into_iter().flatten());
    cost.seconds = began.elapsed().as_secs_f64();
    Ok((found, cost))
}

/// The target `scheduled` as it is now, read again (`None` when it is gone): what a survey made
/// while the rollout ran found is read afresh before it is moved, so a change made since is
/// kept, not written over.
pub async fn again(clients: &Clients, scheduled: &Scheduled) -> Result<Option<Scheduled>, Error> {
    read_one(clients, &scheduled.name, &scheduled.target).await
}

/// The rules of every event bus with a target in `cluster` (every rule for `None`); the default
/// bus's as `None`.
async fn rules_in(
    events: &aws_sdk_eventbridge::Client,
    cluster: Option<&str>,
) -> Result<Vec<(Option<String>, String)>, Error> {
    let buses = all_pages(|next| async move {
        let page = events
            .list_event_buses()
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| failed("listing the EventBridge event buses", e))?;
        let names = page.event_buses().iter().filter_map(|bus| bus.name());
        Ok((
            names.map(str::to_owned).collect(),
            page.next_token().map(str::to_owned),
        ))
    })
    .await?;
    let mut rules = Vec::new();
    for bus in buses {
        let named = (bus != "default").then(|| bus.clone());
        let bus = bus.as_str();
        let names = all_pages(|next| async move {
            match cluster {
                Some(cluster) => {
                    let page = events
                        .list_rule_names_by_target()
                        .target_arn(cluster)
                        .event_bus_name(bus)
                        .set_next_token(next)
                        .send()
                        .await
                        .map_err(|e| {
                            failed("listing the EventBridge rules that target the cluster", e)
                        })?;
                    Ok((
                        page.rule_names().to_vec(),
                        page.next_token().map(str::to_owned),
                    ))
                }
                None => {
                    let page = events
                        .list_rules()
                        .event_bus_name(bus)
                        .set_next_token(next)
                        .send()
                        .await
                        .map_err(|e| failed("listing the EventBridge rules", e))?;
                    let names = page.rules().iter().filter_map(|r| r.name());
                    Ok((
                        names.map(str::to_owned).collect(),
                        page.next_token().map(str::to_owned),
                    ))
                }
            }
        })
        .await?;
        rules.extend(names.into_iter().map(|name| (named.clone(), name)));
    }
    Ok(rules)
}

/// Whether the target a deploy moved (as its record names it) still runs the revision it was
/// moved to: read again, by name, with no survey.
pub async fn still_on(clients: &Clients, moved: &MovedTarget) -> Result<bool, Error> {
    let now = read_one(clients, &moved.name, &moved.target).await?;
    Ok(now.is_some_and(|now| now.task_definition == moved.to))
}

/// One target as it is now, by its name (`rule/NAME`, `rule/BUS/NAME` or
/// `schedule/GROUP/NAME`) and, for a rule, its target id; `None` when it is gone.
async fn read_one(clients: &Clients, name: &str, target: &str) -> Result<Option<Scheduled>, Error> {
    match parse_listed(name) {
        Some(Listed::Schedule { group, name }) => {
            schedule_target(&clients.scheduler, &group, &name).await
        }
        Some(Listed::Rule { bus, name }) => {
            let targets = rule_targets(&clients.events, bus.as_deref(), &name, None).await?;
            Ok(targets.into_iter().find(|t| t.target == target))
        }
        None => Ok(None),
    }
}

/// Schedules of every group whose target is `cluster` (an ECS task in any cluster for `None`),
/// and how many schedules were listed in all.
async fn ecs_schedules(
    scheduler: &aws_sdk_scheduler::Client,
    cluster: Option<&str>,
) -> Result<(Vec<(String, String)>, usize), Error> {
    let mut pages = scheduler.list_schedules().into_paginator().send();
    let mut schedules = Vec::new();
    let mut listed = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed("listing the EventBridge Scheduler schedules", e))?;
        listed += page.schedules().len();
        for summary in page.schedules() {
            let ecs = summary
                .target()
                .is_some_and(|target| runs_in(target.arn(), cluster));
            if let (true, Some(name)) = (ecs, summary.name()) {
                let group = summary.group_name().unwrap_or("default").to_owned();
                schedules.push((group, name.to_owned()));
            }
        }
    }
    Ok((schedules, listed))
}

/// Whether a schedule's target `arn` is an ECS cluster: `cluster` (its ARN, or its name when
/// no service named the ARN), or any for `None`.
fn runs_in(arn: &str, cluster: Option<&str>) -> bool {
    let ecs = arn.contains(":ecs:") && arn.contains(":cluster/");
    match cluster {
        None => ecs,
        Some(cluster) => {
            arn == cluster
                || (ecs
                    && arn
                        .rsplit_once(":cluster/")
                        .is_some_and(|(_, name)| name == cluster))
        }
    }
}

/// The ECS targets of one rule (those in `cluster`, when given), as AWS returns them.
async fn rule_targets(
    events: &aws_sdk_eventbridge::Client,
    bus: Option<&str>,
    rule: &str,
    cluster: Option<&str>,
) -> Result<Vec<Scheduled>, Error> {
    let name = match bus {
        Some(bus) => format!("rule/{bus}/{rule}"),
        None => format!("rule/{rule}"),
    };
    let name = name.as_str();
    all_pages(|next| async move {
        let captured = CaptureBody::default();
        events
            .list_targets_by_rule()
            .rule(rule)
            .set_event_bus_name(bus.map(str::to_owned))
            .set_next_token(next)
            .customize()
            .interceptor(captured.clone())
            .send()
            .await
            .map_err(|e| failed(format!("reading the targets of `{name}`"), e))?;
        let page = captured.json(&format!("the targets of `{name}`"))?;
        let mut found = Vec::new();
        for target in page["Targets"].as_array().into_iter().flatten() {
            let (Some(document), Some(task_definition)) = (
                target.as_object(),
                target["EcsParameters"]["TaskDefinitionArn"].as_str(),
            ) else {
                continue;
            };
            if cluster.is_some_and(|cluster| target["Arn"] != cluster) {
                continue;
            }
            let mut document = document.clone();
            if let Some(bus) = bus {
                document.insert("berth:bus".into(), Value::String(bus.to_owned()));
            }
            document.insert("berth:rule".into(), Value::String(rule.to_owned()));
            found.push(Scheduled {
                kind: Kind::Rule,
                name: name.to_owned(),
                target: target["Id"].as_str().unwrap_or_default().to_owned(),
                task_definition: task_definition.to_owned(),
                document,
            });
        }
        Ok((found, page["NextToken"].as_str().map(str::to_owned)))
    })
    .await
}

/// One schedule, when its target is an ECS task in the cluster.
async fn schedule_target(
    scheduler: &aws_sdk_scheduler::Client,
    group: &str,
    schedule: &str,
) -> Result<Option<Scheduled>, Error> {
    let name = format!("schedule/{group}/{schedule}");
    let captured = CaptureBody::default();
    let read = scheduler
        .get_schedule()
        .name(schedule)
        .group_name(group)
        .customize()
        .interceptor(captured.clone())
        .send()
        .await;
    match read {
        Ok(_) => {}
        // Deleted since it was listed: nothing to move.
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(failed(format!("reading `{name}`"), error)),
    }
    let Value::Object(mut document) = captured.json(&format!("`{name}`"))? else {
        return Ok(None);
    };
    let task_definition = document
        .get("Target")
        .and_then(|target| target["EcsParameters"]["TaskDefinitionArn"].as_str())
        .map(str::to_owned);
    let Some(task_definition) = task_definition else {
        return Ok(None);
    };
    for field in SCHEDULE_READ_ONLY {
        document.remove(field);
    }
    // UpdateSchedule refuses a start date more than five minutes past, and a schedule that has
    // started needs none: it runs on as it did.
    let started = document
        .get("StartDate")
        .and_then(Value::as_f64)
        .is_some_and(|start| start < crate::state::now() as f64);
    if started {
        document.remove("StartDate");
    }
    // A field AWS leaves out is one it does not have; `null` says the same.
    document.retain(|_, value| !value.is_null());
    document.insert("GroupName".into(), Value::String(group.to_owned()));
    document.insert("berth:name".into(), Value::String(schedule.to_owned()));
    Ok(Some(Scheduled {
        kind: Kind::Schedule,
        name,
        target: String::new(),
        task_definition,
        document,
    }))
}
