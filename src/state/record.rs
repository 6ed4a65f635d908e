//! The record of one deploy: what it did, written before each change in AWS and after its
//! outcome, so that a rerun (on any machine) knows what is done, what may be under way, and what
//! must not happen twice. The migration's attempts live here: an attempt is claimed in the record
//! before its `RunTask`, and its `clientToken` is the record's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Put, Replaced, Store, Stored, now};
use crate::error::Error;

/// Records live at `deploys/<deploy id>.json`.
pub const FOLDER: &str = "deploys";

/// Exit code of each container of a task; `None` when it has none.
pub type ExitCodes = BTreeMap<String, Option<i32>>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRecord {
    /// Bumped by every write.
    pub serial: u64,
    /// The run of berth that wrote it last (the lock's run id): a write of our own whose answer
    /// was lost is told apart from another run's by it.
    #[serde(default)]
    pub writer: String,
    pub deploy_id: String,
    pub kind: Kind,
    pub env: String,
    pub commit: String,
    /// Unix seconds.
    pub started_at: u64,
    pub updated_at: u64,
    /// Runs of this deploy so far (the first, then each rerun).
    pub runs: u32,
    pub state: RunState,
    /// How the latest run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<RecordedImage>,
    /// Family → the revision this deploy registered (or reused).
    #[serde(default)]
    pub revisions: BTreeMap<String, String>,
    /// Service → the revision it ran when this deploy first touched it: what a rollback goes
    /// back to.
    #[serde(default)]
    pub previous: BTreeMap<String, String>,
    /// Service → its rollout.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceRollout>,
    /// The migration's attempts, oldest first.
    #[serde(default)]
    pub migration: Vec<Attempt>,
    /// A rollback: the deploy whose revisions it went back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<String>,
    /// Scheduled targets this deploy points at its revisions, each with the one it ran before:
    /// written before the first is moved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<MovedTarget>,
    /// Revisions this deploy deregistered (`keep_revisions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deregistered: Vec<String>,
    /// The hooks that ran for this deploy, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRan>,
    /// Where the rollout's time went, per service, from the tasks' own timestamps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<ServiceTimeline>,
}

/// One service's rollout, from its tasks' timestamps (ECS's clock): this deployment's tasks
/// (`startedBy` its id) and the older tasks it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceTimeline {
    pub service: String,
    /// This deployment's tasks that started.
    pub tasks: usize,
    /// Image pull: `pullStartedAt` → `pullStoppedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<Spread>,
    /// From the pull's end to the task running: `pullStoppedAt` → `startedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Spread>,
    /// From the deployment's creation to its completion (`createdAt` → `updatedAt` once
    /// COMPLETED): the tasks started, healthy, and the old ones drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady: Option<f64>,
    /// Older tasks that stopped since the deployment began.
    pub drained: usize,
    /// Their draining: `stoppingAt` → `stoppedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Spread>,
}

// Spans are differences of timestamps, never NaN: equality is total.
impl Eq for ServiceTimeline {}
impl Eq for Spread {}

/// Seconds, over a service's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub slowest: f64,
}

/// One run of a hook of berth.toml's `[hooks]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRan {
    /// `before_deploy`, `after_deploy`, …
    pub hook: String,
    pub outcome: HookOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub seconds: u64,
    /// Unix seconds, when it ended.
    pub at: u64,
    /// How it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl HookRan {
    /// `succeeded in 2s`, `exited 3 after 1s`.
    pub fn said(&self) -> String {
        match (&self.outcome, &self.summary) {
            (HookOutcome::Succeeded, _) => format!("succeeded in {}s", self.seconds),
            (_, Some(summary)) => format!("{summary} after {}s", self.seconds),
            (_, None) => format!("failed after {}s", self.seconds),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookOutcome {
    Succeeded,
    Failed,
    TimedOut,
}

/// One scheduled target that follows the deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedTarget {
    /// `rule/NAME`, `rule/BUS/NAME` or `schedule/GROUP/NAME`.
    pub name: String,
    /// A rule's target id; empty for a schedule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// The revision it ran before.
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Deploy,
    Rollback,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    #[default]
    Running,
    Succeeded,
    Failed,
    /// Failed, and the services that had moved went back (`on_failure = "rollback"`).
    RolledBack,
    Interrupted,
    /// A service deployment waits at a pause hook for a person (`berth continue`).
    Paused,
    /// This run lost the environment's lock (its lease ran out) and stopped; another run may
    /// have gone on since.
    Lost,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedImage {
    pub tag: String,
    pub digest: String,
    /// Where the revisions pull it from, pinned: `<registry>/<repository>@<digest>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRollout {
    pub revision: String,
    /// Set once `UpdateService` answered (or the service was found on the revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// The service deployment ECS keeps of the rollout (its ARN): a rerun waits on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_deployment: Option<String>,
    pub outcome: RolloutOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutOutcome {
    /// About to call `UpdateService`.
    Starting,
    InProgress,
    Completed,
    Failed,
    /// Its service deployment waits at a pause hook.
    Paused,
    /// Moved back to its previous revision after a failure.
    RolledBack,
}

/// One try of the migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 0 for the first.
    pub number: u32,
    /// The `RunTask` `clientToken`: any run that starts this attempt passes the same one, so ECS
    /// starts one task for it (within 24 hours).
    pub client_token: String,
    /// Unix seconds.
    pub claimed_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_arn: Option<String>,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_codes: Option<ExitCodes>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Claimed: `RunTask` may or may not have been called.
    Claimed,
    /// `RunTask` answered with the task.
    Started,
    Succeeded,
    Failed,
}

/// A deploy's record, as this run holds it: changed in memory, then saved with `If-Match`.
#[derive(Debug)]
pub struct Record {
    store: Store,
    key: String,
    etag: String,
    /// This run of berth.
    run: String,
    pub value: DeployRecord,
    /// `value` holds a change not written yet ([`Record::stage`]).
    staged: bool,
}

/// What the write that opens a record also says ([`Record::open`]).
pub type OpeningNote<'a> = &'a (dyn Fn(&mut DeployRecord) + Sync);

impl Record {
    /// The store the record lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This deploy's record: the one an earlier run wrote, or `fresh` written now. `run` is this
    /// run of berth (the lock's run id). `first`: the record as this run read it already (`None`
    /// inside: there was none), gone by before any read. `note`: what the opening write also
    /// says, whether it makes the record or resumes it. `bool`: an earlier run wrote it.
    pub async fn open(
        store: &Store,
        fresh: DeployRecord,
        (run, note): (&str, OpeningNote<'_>),
        mut first: Option<Option<Stored<DeployRecord>>>,
    ) -> Result<(Self, bool), Error> {
        let key = key(&fresh.deploy_id);
        loop {
            let found = match first.take() {
                Some(found) => found,
                None => store.read::<DeployRecord>(&key).await?,
            };
            if let Some(stored) = found {
                let mut record = Self {
                    store: store.clone(),
                    key,
                    etag: stored.etag,
                    run: run.to_owned(),
                    value: stored.value,
                    staged: false,
                };
                // Our own create, whose answer was lost.
                if record.value.writer == run {
                    return Ok((record, false));
                }
                record.value.runs += 1;
                record.value.state = RunState::Running;
                record.value.error = None;
                note(&mut record.value);
                record.save().await?;
                return Ok((record, true));
            }
            let mut value = fresh.clone();
            note(&mut value);
            value.runs = 1;
            value.serial = 1;
            value.writer = run.to_owned();
            value.started_at = now();
            value.updated_at = value.started_at;
            // Lost: an earlier write of ours whose answer was lost, or another run's; the next
            // read tells which.
            if let Put::Written(etag) = store.create(&key, &value).await? {
                return Ok((
                    Self {
                        store: store.clone(),
                        key,
                        etag,
                        run: run.to_owned(),
                        value,
                        staged: false,
                    },
                    false,
                ));
            }
        }
    }

    /// Changes the record and saves it; a change that changes nothing writes nothing (a rerun
    /// finds most of what it would note already noted).
    pub async fn update(&mut self, change: impl FnOnce(&mut DeployRecord)) -> Result<(), Error> {
        let before = self.value.clone();
        change(&mut self.value);
        if self.value == before && !self.staged {
            return Ok(());
        }
        self.save().await
    }

    /// Changes the record without writing it: the next write takes the change along (and the run's
    /// end always writes). For a note that no rerun depends on, such as how a rollout that
    /// completed ended, which a rerun reads from ECS.
    pub fn stage(&mut self, change: impl FnOnce(&mut DeployRecord)) {
        let before = self.value.clone();
        change(&mut self.value);
        self.staged |= self.value != before;
    }

    /// Writes the record if no other run wrote it since this run last did. A write of ours that
    /// landed without an answer (a lost connection, an interrupted run) moved the ETag: the write
    /// is made again over it.
    pub async fn save(&mut self) -> Result<(), Error> {
        loop {
            self.value.serial += 1;
            self.value.updated_at = now();
            self.value.writer.clone_from(&self.run);
            let run = &self.run;
            match self
                .store
                .replace_own(&self.key, &self.value, &self.etag, |stored| {
                    stored.writer == *run
                })
                .await?
            {
                Replaced::Written(etag) => {
                    self.etag = etag;
                    self.staged = false;
                    return Ok(());
                }
                Replaced::Ours(stored) => self.etag = stored.etag,
                Replaced::Theirs(_) => {
                    return Err(Error::LockLost {
                        why: format!(
                            "another run of deploy `{}` wrote its record `{}`",
                            self.value.deploy_id,
                            self.store.url(&self.key)
                        ),
                    });
                }
            }
        }
    }
}

/// The record of `deploy_id` with its ETag, if any: what [`Record::open`] may go by.
pub async fn read_stored(
    store: &Store,
    deploy_id: &str,
) -> Result<Option<Stored<DeployRecord>>, Error> {
    store.read::<DeployRecord>(&key(deploy_id)).await
}

/// The record of `deploy_id`, if any.
pub async fn read(store: &Store, deploy_id: &str) -> Result<Option<DeployRecord>, Error> {
    Ok(store
        .read::<DeployRecord>(&key(deploy_id))
        .await?
        .map(|stored| stored.value))
}

fn key(deploy_id: &str) -> String {
    format!("{FOLDER}/{deploy_id}.json")
}

/// The records of the newest `count` deploys of the journal, newest first.
pub async fn recent(
    store: &Store,
    file: &super::lock::LockFile,
    count: usize,
) -> Result<Vec<DeployRecord>, Error> {
    let ids: Vec<&str> = file
        .deploys
        .iter()
        .rev()
        .take(count)
        .map(|d| d.deploy_id.as_str())
        .collect();
    let records = futures_util::future::try_join_all(ids.iter().map(|id| read(store, id))).await?;
    Ok(records.into_iter().flatten().collect())
}
