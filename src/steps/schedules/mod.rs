//! Scheduled tasks follow the deploy: the ECS targets of EventBridge rules and of EventBridge
//! Scheduler schedules that run one of the deployed families move to its new revision.
//!
//! Found by the cluster they run in (rules whose targets name it, schedules in every group whose
//! target names it), or as listed in `schedules`. Each target is read as AWS returns it (raw
//! JSON), its `TaskDefinitionArn` changed and nothing else, and written back whole: input, role,
//! network configuration, count, launch type, tags, dead-letter queue, retry policy, a schedule's
//! expression, time zone, window and state all stay as they were, including fields this build
//! of berth does not know.

mod decide;
pub mod step;

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::aws::arn;
use crate::aws::wire::{CaptureBody, ReplaceBody};
use crate::aws::{all_pages, failed};
use crate::error::Error;
use crate::report::{Reporter, warn};
use crate::settings::{Listed, Settings, parse_listed};
use crate::state::record::MovedTarget;
use crate::state::{Lock, Record};
use crate::text::with_causes;
use decide::planned;
pub use decide::{Decision, decide};

/// `GetSchedule` calls in flight at once while schedules are surveyed: well under the Scheduler
/// API's request rate, so a survey is not throttled.
const SCHEDULES_READ_AT_ONCE: usize = 8;

/// Where a scheduled task is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An EventBridge rule's target.
    Rule,
    /// An EventBridge Scheduler schedule's target.
    Schedule,
}

/// One ECS target of a rule or a schedule in the deploy's cluster.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub kind: Kind,
    /// `rule/NAME` (default event bus), `rule/BUS/NAME`, or `schedule/GROUP/NAME`.
    pub name: String,
    /// A rule's target id; a schedule has one target, `""`.
    pub target: String,
    /// What it runs now, as written (`TaskDefinitionArn`).
    pub task_definition: String,
    /// The rule's target, or the schedule as `UpdateSchedule` takes it.
    document: Map<String, Value>,
}

/// The targets found, and what to do about them.
#[derive(Debug, Default)]
pub struct Survey {
    /// Targets already on the revisions (or naming the family only).
    pub on_new: usize,
    /// Targets to point at a new revision.
    pub to_move: Vec<(Scheduled, String)>,
}

/// The survey a deploy, a rollback or a plan makes of the targets `settings` asks for, in the
/// cluster `services` run in; `None` when `schedules = []` turns scheduled tasks off.
pub async fn survey_settings<'a>(
    clients: &Clients,
    settings: &'a Settings,
    services: impl IntoIterator<Item = &'a aws_sdk_ecs::types::Service>,
    revisions: &BTreeMap<String, String>,
    reporter: &dyn Reporter,
    warnings: &mut Vec<String>,
) -> Result<Option<Survey>, Error> {
    if settings.schedules.as_ref().is_some_and(Vec::is_empty) {
        return Ok(None);
    }
    let cluster = cluster_arn(services, &settings.cluster);
    let listed = settings.schedules.as_deref();
    survey(clients, cluster, listed, revisions, reporter, warnings)
        .await
        .map(Some)
}

/// The cluster's ARN as its services name it (rules' targets name it so), else its name.
pub fn cluster_arn<'a>(
    services: impl IntoIterator<Item = &'a aws_sdk_ecs::types::Service>,
    name: &'a str,
) -> &'a str {
    services
        .into_iter()
        .find_map(|service| service.cluster_arn())
        .unwrap_or(name)
}

/// Finds the targets in `cluster_arn` (those `listed`, else every one) and decides each against
/// `revisions` (family → revision). Looking unasked, a role that may not look gets a warning and
/// an empty survey rather than a failure; named in `listed`, they must be found.
pub async fn survey(
    clients: &Clients,
    cluster_arn: &str,
    listed: Option<&[String]>,
    revisions: &BTreeMap<String, String>,
    reporter: &dyn Reporter,
    warnings: &mut Vec<String>,
) -> Result<Survey, Error> {
    let found = match find(clients, Some(cluster_arn), listed).await {
        Ok(found) => found,
        Err(error @ Error::AccessDenied { .. }) if listed.is_none() => {
            let warning = format!(
                "scheduled tasks were not looked for: {}; grant it, or set `schedules = []` in berth.toml",
                with_causes(&error)
            );
            warn(reporter, warnings, warning);
            return Ok(Survey::default());
        }
        Err(error) => return Err(error),
    };
    let mut survey = Survey::default();
    for scheduled in found {
        match decide(&scheduled.task_definition, revisions) {
            Decision::Move(to) => survey.to_move.push((scheduled, to)),
            Decision::Already | Decision::Latest => survey.on_new += 1,
            Decision::NotOurs => {}
        }
    }
    Ok(survey)
}

/// Moves the survey's targets under the lock: the record lists each with the revision it ran
/// before, written before the first moves; then each is pointed at its revision. The record's
/// list comes back.
pub async fn follow(
    clients: &Clients,
    survey: &Survey,
    record: &mut Record,
    lock: &Lock,
    reporter: &dyn Reporter,
) -> Result<Vec<MovedTarget>, Error> {
    let moved = planned(survey, &record.value.schedules);
    if record.value.schedules != moved {
        let listed = moved.clone();
        record.update(|r| r.schedules = listed).await?;
    }
    for (scheduled, to) in &survey.to_move {
        lock.check()?;
        point(clients, scheduled, to).await?;
        reporter.info(&format!(
            "{}: `{}` → `{}`",
            label(&scheduled.name, &scheduled.target),
            arn::short(&scheduled.task_definition),
            arn::short(to)
        ));
    }
    Ok(moved)
}

/// `` `rule/nightly` target `cleanup` ``, or `` `schedule/default/hourly` `` (one target).
pub fn label(name: &str, target: &str) -> String {
    if target.is_empty() {
        format!("`{name}`")
    } else {
        format!("`{name}` target `{target}`")
    }
}

/// The AWS clients the scheduled targets live behind.
pub struct Clients {
    pub events: aws_sdk_eventbridge::Client,
    pub scheduler: aws_sdk_scheduler::Client,
}

impl Clients {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            events: aws_sdk_eventbridge::Client::new(config),
            scheduler: aws_sdk_scheduler::Client::new(config),
        }
    }
}

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

/// Fields of `GetSchedule`'s answer that `UpdateSchedule` does not take (the name goes in the
/// path).
const SCHEDULE_READ_ONLY: [&str; 4] = ["Arn", "CreationDate", "LastModificationDate", "Name"];

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

/// Points one target at `revision`, every other field as it was read.
pub async fn point(clients: &Clients, scheduled: &Scheduled, revision: &str) -> Result<(), Error> {
    let mut document = scheduled.document.clone();
    let private = |document: &mut Map<String, Value>, key: &str| {
        document
            .remove(key)
            .and_then(|value| value.as_str().map(str::to_owned))
    };
    match scheduled.kind {
        Kind::Rule => {
            let bus = private(&mut document, "berth:bus");
            let rule = private(&mut document, "berth:rule").unwrap_or_default();
            document["EcsParameters"]["TaskDefinitionArn"] = Value::String(revision.to_owned());
            let mut body = Map::new();
            body.insert("Rule".into(), Value::String(rule.clone()));
            if let Some(bus) = &bus {
                body.insert("EventBusName".into(), Value::String(bus.clone()));
            }
            body.insert(
                "Targets".into(),
                Value::Array(vec![Value::Object(document)]),
            );
            // The typed request only has to pass the SDK's checks; the body replaces it.
            let placeholder = aws_sdk_eventbridge::types::Target::builder()
                .id(&scheduled.target)
                .arn("placeholder")
                .build()
                .map_err(|e| Error::Mismatch {
                    problem: format!("cannot build the request for `{}`: {e}", scheduled.name),
                    hint: "this is a bug".to_owned(),
                })?;
            let answer = clients
                .events
                .put_targets()
                .rule(&rule)
                .targets(placeholder)
                .customize()
                .interceptor(ReplaceBody::json(&Value::Object(body)))
                .send()
                .await
                .map_err(|e| failed(format!("updating the target of `{}`", scheduled.name), e))?;
            if let Some(entry) = answer.failed_entries().first() {
                return Err(Error::Aws {
                    action: format!(
                        "updating target `{}` of `{}`",
                        scheduled.target, scheduled.name
                    ),
                    environment: false,
                    transient: false,
                    source: format!(
                        "{}: {}",
                        entry.error_code().unwrap_or("error"),
                        entry.error_message().unwrap_or("no message")
                    )
                    .into(),
                });
            }
        }
        Kind::Schedule => {
            let name = private(&mut document, "berth:name").unwrap_or_default();
            document["Target"]["EcsParameters"]["TaskDefinitionArn"] =
                Value::String(revision.to_owned());
            let placeholder = aws_sdk_scheduler::types::Target::builder()
                .arn("placeholder")
                .role_arn("placeholder")
                .build()
                .map_err(|e| Error::Mismatch {
                    problem: format!("cannot build the request for `{}`: {e}", scheduled.name),
                    hint: "this is a bug".to_owned(),
                })?;
            let window = aws_sdk_scheduler::types::FlexibleTimeWindow::builder()
                .mode(aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
                .build()
                .map_err(|e| Error::Mismatch {
                    problem: format!("cannot build the request for `{}`: {e}", scheduled.name),
                    hint: "this is a bug".to_owned(),
                })?;
            clients
                .scheduler
                .update_schedule()
                .name(&name)
                .schedule_expression("placeholder")
                .target(placeholder)
                .flexible_time_window(window)
                .customize()
                .interceptor(ReplaceBody::json(&Value::Object(document)))
                .send()
                .await
                .map_err(|e| failed(format!("updating `{}`", scheduled.name), e))?;
        }
    }
    Ok(())
}
