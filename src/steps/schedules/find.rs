//! Finding the scheduled targets: the ECS targets of EventBridge rules (the rules that name the
//! cluster, on every event bus) and of EventBridge Scheduler schedules (every group's, read a
//! few at a time), each kept as AWS sent it.

use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{Clients, Kind, Scheduled};
use crate::aws::wire::CaptureBody;
use crate::aws::{all_pages, failed};
use crate::error::Error;
use crate::settings::{Listed, parse_listed};

/// `GetSchedule` calls in flight at once while schedules are surveyed: well under the Scheduler
/// API's request rate, so a survey is not throttled.
const SCHEDULES_READ_AT_ONCE: usize = 8;

/// Fields of `GetSchedule`'s answer that `UpdateSchedule` does not take (the name goes in the
/// path).
const SCHEDULE_READ_ONLY: [&str; 4] = ["Arn", "CreationDate", "LastModificationDate", "Name"];

/// The ECS targets of the rules and schedules `listed` names, or else of every rule (on every
/// event bus) whose targets name `cluster` and every schedule (in every group) whose target is
/// an ECS task, in any cluster: a schedule is found by the family it runs. `cluster` `None`:
/// every rule's ECS targets too, in any cluster (what `keep_revisions` must not break).
pub async fn find(
    clients: &Clients,
    cluster: Option<&str>,
    listed: Option<&[String]>,
) -> Result<Vec<Scheduled>, Error> {
    let (rules, schedules) = match listed {
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
        None => tokio::try_join!(
            rules_in(&clients.events, cluster),
            ecs_schedules(&clients.scheduler)
        )?,
    };
    let mut found = Vec::new();
    for (bus, rule) in rules {
        found.extend(rule_targets(&clients.events, bus.as_deref(), &rule, cluster).await?);
    }
    // Every ECS schedule of the account is read (a schedule is found by the family it runs), a
    // few at a time: one after another, an account's many schedules would add seconds.
    let read: Vec<Option<Scheduled>> = futures_util::stream::iter(schedules)
        .map(
            |(group, name)| async move { schedule_target(&clients.scheduler, &group, &name).await },
        )
        .buffered(SCHEDULES_READ_AT_ONCE)
        .try_collect()
        .await?;
    found.extend(read.into_iter().flatten());
    Ok(found)
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

/// Schedules of every group whose target is an ECS task, in any cluster.
async fn ecs_schedules(
    scheduler: &aws_sdk_scheduler::Client,
) -> Result<Vec<(String, String)>, Error> {
    let mut pages = scheduler.list_schedules().into_paginator().send();
    let mut schedules = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed("listing the EventBridge Scheduler schedules", e))?;
        for summary in page.schedules() {
            let ecs = summary.target().is_some_and(|target| {
                target.arn().contains(":ecs:") && target.arn().contains(":cluster/")
            });
            if let (true, Some(name)) = (ecs, summary.name()) {
                let group = summary.group_name().unwrap_or("default").to_owned();
                schedules.push((group, name.to_owned()));
            }
        }
    }
    Ok(schedules)
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
