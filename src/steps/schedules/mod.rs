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
mod find;
pub mod step;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::aws::arn;
use crate::aws::failed;
use crate::aws::wire::ReplaceBody;
use crate::error::Error;
use crate::report::{Reporter, warn};
use crate::settings::Settings;
use crate::state::record::MovedTarget;
use crate::state::{Lock, Record};
use crate::text::with_causes;
use decide::planned;
pub use decide::{Decision, decide};
pub use find::{Cost, find, still_on};

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
    /// What finding them cost.
    pub cost: Cost,
    /// Why none were looked for: the role may not look (a warning, not a failure).
    pub unseen: Option<String>,
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
    let survey = survey(clients, cluster, listed, revisions, &[]).await?;
    if let Some(warning) = &survey.unseen {
        warn(reporter, warnings, warning.clone());
    }
    Ok(Some(survey))
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

/// Finds the targets in `cluster_arn` (those `listed`, else every one; the schedules `known`
/// names first) and decides each against `revisions` (family → revision). Looking unasked, a
/// role that may not look makes an empty survey with a warning (`unseen`) rather than a
/// failure; named in `listed`, they must be found.
pub async fn survey(
    clients: &Clients,
    cluster_arn: &str,
    listed: Option<&[String]>,
    revisions: &BTreeMap<String, String>,
    known: &[String],
) -> Result<Survey, Error> {
    let (found, cost) = match find(clients, Some(cluster_arn), listed, known).await {
        Ok(found) => found,
        Err(error @ Error::AccessDenied { .. }) if listed.is_none() => {
            let warning = format!(
                "scheduled tasks were not looked for: {}; grant it, or set `schedules = []` in berth.toml",
                with_causes(&error)
            );
            return Ok(Survey {
                unseen: Some(warning),
                ..Survey::default()
            });
        }
        Err(error) => return Err(error),
    };
    let mut survey = Survey {
        cost,
        ..Survey::default()
    };
    survey.add(found, revisions);
    Ok(survey)
}

impl Survey {
    /// Decides each target `found` against `revisions` (family → revision).
    fn add(&mut self, found: Vec<Scheduled>, revisions: &BTreeMap<String, String>) {
        for scheduled in found {
            match decide(&scheduled.task_definition, revisions) {
                Decision::Move(to) => self.to_move.push((scheduled, to)),
                Decision::Already | Decision::Latest => self.on_new += 1,
                Decision::NotOurs => {}
            }
        }
    }

    /// The survey with each target to move read again and decided afresh: one changed since
    /// the survey (by Terraform, say) is moved as it is now, or left if it needs no move.
    pub async fn again(
        mut self,
        clients: &Clients,
        revisions: &BTreeMap<String, String>,
    ) -> Result<Self, Error> {
        let to_move = std::mem::take(&mut self.to_move);
        let now = futures_util::future::try_join_all(
            to_move
                .iter()
                .map(|(scheduled, _)| find::again(clients, scheduled)),
        )
        .await?;
        self.add(now.into_iter().flatten().collect(), revisions);
        Ok(self)
    }
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
    // All at once: each is its own rule's or schedule's, and a failure leaves the others moved,
    // as the record lists them.
    lock.check()?;
    let pointed = survey.to_move.iter().map(|(scheduled, to)| async move {
        let pointed = point(clients, scheduled, to).await;
        if pointed.is_ok() {
            reporter.info(&format!(
                "{}: `{}` → `{}`",
                label(&scheduled.name, &scheduled.target),
                arn::short(&scheduled.task_definition),
                arn::short(to)
            ));
        }
        pointed
    });
    futures_util::future::join_all(pointed)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, Error>>()?;
    Ok(moved)
}

/// Points each target the deploy moved (`moved`, as its record lists them) back at the revision
/// it ran before, if it still runs the deploy's: `on_failure` after another target could not be
/// moved. The targets moved back, `from` the deploy's revision `to` the earlier one.
pub async fn move_back(
    clients: &Clients,
    cluster_arn: &str,
    listed: Option<&[String]>,
    moved: &[MovedTarget],
    lock: &Lock,
    reporter: &dyn Reporter,
) -> Result<Vec<MovedTarget>, Error> {
    let mut back = Vec::new();
    if moved.is_empty() {
        return Ok(back);
    }
    for scheduled in find(clients, Some(cluster_arn), listed, &[]).await?.0 {
        let Some(entry) = moved.iter().find(|m| {
            m.name == scheduled.name
                && m.target == scheduled.target
                && m.to == scheduled.task_definition
        }) else {
            continue;
        };
        lock.check()?;
        point(clients, &scheduled, &entry.from).await?;
        reporter.info(&format!(
            "{}: back to `{}`",
            label(&scheduled.name, &scheduled.target),
            arn::short(&entry.from)
        ));
        back.push(MovedTarget {
            name: entry.name.clone(),
            target: entry.target.clone(),
            from: entry.to.clone(),
            to: entry.from.clone(),
        });
    }
    Ok(back)
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
#[derive(Clone)]
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

/// Points one target at `revision`, every other field as it was read.
pub async fn point(clients: &Clients, scheduled: &Scheduled, revision: &str) -> Result<(), Error> {
    let mut document = scheduled.document.clone();
    match scheduled.kind {
        Kind::Rule => {
            let bus = private(&mut document, "berth:bus");
            let rule = private(&mut document, "berth:rule").unwrap_or_default();
            document["EcsParameters"]["TaskDefinitionArn"] = Value::String(revision.to_owned());
            point_rule(clients, scheduled, bus.as_deref(), &rule, document).await
        }
        Kind::Schedule => {
            let name = private(&mut document, "berth:name").unwrap_or_default();
            document["Target"]["EcsParameters"]["TaskDefinitionArn"] =
                Value::String(revision.to_owned());
            point_schedule(clients, scheduled, &name, document).await
        }
    }
}

/// Takes berth's own note `key` out of a target's document.
fn private(document: &mut Map<String, Value>, key: &str) -> Option<String> {
    document
        .remove(key)
        .and_then(|value| value.as_str().map(str::to_owned))
}

/// `PutTargets` of the rule's one target, its document as read with the revision changed.
async fn point_rule(
    clients: &Clients,
    scheduled: &Scheduled,
    bus: Option<&str>,
    rule: &str,
    target: Map<String, Value>,
) -> Result<(), Error> {
    let mut body = Map::new();
    body.insert("Rule".into(), Value::String(rule.to_owned()));
    if let Some(bus) = bus {
        body.insert("EventBusName".into(), Value::String(bus.to_owned()));
    }
    body.insert("Targets".into(), Value::Array(vec![Value::Object(target)]));
    // The typed request only has to pass the SDK's checks; the body replaces it.
    let placeholder = aws_sdk_eventbridge::types::Target::builder()
        .id(&scheduled.target)
        .arn("placeholder")
        .build()
        .map_err(|e| unbuildable(scheduled, &e))?;
    let answer = clients
        .events
        .put_targets()
        .rule(rule)
        .targets(placeholder)
        .customize()
        .interceptor(ReplaceBody::json(&Value::Object(body)))
        .send()
        .await
        .map_err(|e| failed(format!("updating the target of `{}`", scheduled.name), e))?;
    match answer.failed_entries().first() {
        Some(entry) => Err(Error::Aws {
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
        }),
        None => Ok(()),
    }
}

/// `UpdateSchedule` with the schedule's document as read, the revision changed.
async fn point_schedule(
    clients: &Clients,
    scheduled: &Scheduled,
    name: &str,
    document: Map<String, Value>,
) -> Result<(), Error> {
    // The typed request only has to pass the SDK's checks; the body replaces it.
    let placeholder = aws_sdk_scheduler::types::Target::builder()
        .arn("placeholder")
        .role_arn("placeholder")
        .build()
        .map_err(|e| unbuildable(scheduled, &e))?;
    let window = aws_sdk_scheduler::types::FlexibleTimeWindow::builder()
        .mode(aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
        .build()
        .map_err(|e| unbuildable(scheduled, &e))?;
    clients
        .scheduler
        .update_schedule()
        .name(name)
        .schedule_expression("placeholder")
        .target(placeholder)
        .flexible_time_window(window)
        .customize()
        .interceptor(ReplaceBody::json(&Value::Object(document)))
        .send()
        .await
        .map_err(|e| failed(format!("updating `{}`", scheduled.name), e))?;
    Ok(())
}

/// The SDK would not build the placeholder of a typed request: a bug of berth's.
fn unbuildable(scheduled: &Scheduled, error: &dyn std::fmt::Display) -> Error {
    Error::Mismatch {
        problem: format!("cannot build the request for `{}`: {error}", scheduled.name),
        hint: "this is a bug".to_owned(),
    }
}
