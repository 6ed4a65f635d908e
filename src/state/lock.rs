//! One deploy per environment: a lock object in S3 with a lease.
//!
//! The holder (CircleCI job URL, else `user@host`), its deploy and when it took the lock are in
//! `lock.json`, with the time its lease runs out. The holder renews the lease a third of the way
//! through; a holder killed outright loses the lock when its lease runs out, and the next deploy
//! takes it over. Releasing clears the holder. The same object keeps the journal of deploys
//! started on the environment, written in the same conditional write that takes the lock, so
//! "which deploy is the newest" never disagrees with who held the lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use super::{Put, Replaced, Store, now};
use crate::error::Error;
use crate::report::{Reporter, Watch};
use crate::settings::Settings;
use crate::text::short_duration;

/// The lock's key under the environment's prefix.
pub const KEY: &str = "lock.json";
/// Deploys the journal remembers.
const JOURNAL: usize = 100;

/// `lock.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// Bumped by every write (see the module docs of [`super`]).
    pub serial: u64,
    pub holder: Option<Holder>,
    /// Deploys started on this environment, oldest first.
    #[serde(default)]
    pub deploys: Vec<Started>,
}

/// Who holds the lock, for what, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// CircleCI's job URL, else `user@host`.
    pub who: String,
    /// This run of berth: two runs of the same deploy are told apart by it.
    pub run: String,
    /// `deploy` or `rollback`.
    pub command: String,
    pub deploy_id: String,
    pub commit: String,
    /// Unix seconds.
    pub since: u64,
    /// Unix seconds: the lease runs out then unless renewed.
    pub expires: u64,
}

/// One deploy started on the environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub deploy_id: String,
    pub commit: String,
    /// Unix seconds.
    pub at: u64,
    pub by: String,
}

/// What to do about the lock as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Take it: it is free, ours already (an earlier write whose answer was lost), or its
    /// holder's lease ran out (`from`).
    Take { from: Option<Holder> },
    /// Someone else holds it and their lease is running.
    Held(Holder),
    /// This deploy is older than the newest deploy started on the environment.
    Stale { newer: Started },
}

/// Who wants the lock.
#[derive(Debug, Clone)]
pub struct Want {
    pub who: String,
    pub run: String,
    pub command: &'static str,
    pub deploy_id: String,
    pub commit: String,
    /// Refuse when a newer deploy started since this one (not for rollbacks, which are new).
    pub check_stale: bool,
    /// Journal the deploy as started when the lock is taken; otherwise [`Lock::journal`] does,
    /// once the run knows it will change something.
    pub journal: bool,
    /// `--force`: take a stale deploy on anyway.
    pub force: bool,
}

/// Decides from the lock file as read, at `now`.
pub fn judge(file: &LockFile, want: &Want, now: u64) -> Verdict {
    match &file.holder {
        Some(holder) if holder.run != want.run && holder.expires > now => {
            return Verdict::Held(holder.clone());
        }
        _ => {}
    }
    if want.check_stale && !want.force {
        let started_before = file.deploys.iter().any(|d| d.deploy_id == want.deploy_id);
        if let Some(newest) = file.deploys.last()
            && started_before
            && newest.deploy_id != want.deploy_id
        {
            return Verdict::Stale {
                newer: newest.clone(),
            };
        }
    }
    Verdict::Take {
        from: file.holder.clone().filter(|holder| holder.run != want.run),
    }
}

impl LockFile {
    /// This file with `want` holding it until `now + lease`, the deploy in the journal.
    fn taken(&self, want: &Want, now: u64, lease: Duration) -> Self {
        let mut next = self.clone();
        next.serial += 1;
        let since = match &self.holder {
            Some(holder) if holder.run == want.run => holder.since,
            _ => now,
        };
        next.holder = Some(Holder {
            who: want.who.clone(),
            run: want.run.clone(),
            command: want.command.to_owned(),
            deploy_id: want.deploy_id.clone(),
            commit: want.commit.clone(),
            since,
            expires: now + lease.as_secs().max(1),
        });
        if want.journal {
            next.journal(want, now);
        }
        next
    }

    /// Adds the deploy to the journal unless it is the newest entry already.
    fn journal(&mut self, want: &Want, now: u64) {
        if self.deploys.last().map(|d| d.deploy_id.as_str()) != Some(want.deploy_id.as_str()) {
            self.deploys.push(Started {
                deploy_id: want.deploy_id.clone(),
                commit: want.commit.clone(),
                at: now,
                by: want.who.clone(),
            });
            let excess = self.deploys.len().saturating_sub(JOURNAL);
            self.deploys.drain(..excess);
        }
    }

    fn renewed(&self, now: u64, lease: Duration) -> Self {
        let mut next = self.clone();
        next.serial += 1;
        if let Some(holder) = &mut next.holder {
            holder.expires = now + lease.as_secs().max(1);
        }
        next
    }

    fn released(&self) -> Self {
        let mut next = self.clone();
        next.serial += 1;
        next.holder = None;
        next
    }
}

impl Holder {
    /// `https://circleci.com/… (deploy stg-abc1234-…, commit abc1234, for 3m 2s)`.
    pub fn describe(&self, now: u64) -> String {
        format!(
            "{} ({} `{}` of commit {}, for {})",
            self.who,
            self.command,
            self.deploy_id,
            crate::text::short_sha(&self.commit),
            short_duration(Duration::from_secs(now.saturating_sub(self.since)))
        )
    }
}

/// CircleCI's job URL, else `user@host`.
pub fn who() -> String {
    if let Some(url) = crate::env_vars::var(crate::env_vars::CIRCLE_BUILD_URL) {
        return url;
    }
    let user = crate::env_vars::var(crate::env_vars::USER).unwrap_or_else(|| "someone".to_owned());
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{user}@{host}")
}

/// An id for this run of berth: the process, the host and the time, hashed.
pub fn run_id() -> String {
    use sha2::{Digest, Sha256};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let digest = Sha256::digest(format!(
        "{}/{}/{nanos}",
        std::process::id(),
        gethostname::gethostname().to_string_lossy()
    ));
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The lock, held: renewed in the background until released.
pub struct Lock {
    store: Store,
    held: Arc<Mutex<Held>>,
    /// When the lease runs out (Unix seconds), as last written: [`Lock::check`] reads it without
    /// waiting on a renewal in flight.
    expires: Arc<AtomicU64>,
    lost: watch::Receiver<Option<String>>,
    renewal: tokio::task::JoinHandle<()>,
    run: String,
    lease: Duration,
}

#[derive(Debug, Clone)]
struct Held {
    file: LockFile,
    etag: String,
}

/// Takes the environment's lock for `want`, waiting up to `wait` while someone else holds it.
pub async fn acquire(
    store: &Store,
    settings: &Settings,
    want: &Want,
    wait: Duration,
    reporter: &dyn Reporter,
) -> Result<Lock, Error> {
    let lease = settings.state.lease;
    let watch = Watch::new(settings.timeouts.heartbeat);
    let mut said_waiting = false;
    loop {
        let found = store.read::<LockFile>(KEY).await?;
        let (file, etag) = match found {
            Some(stored) => (stored.value, Some(stored.etag)),
            None => (LockFile::default(), None),
        };
        let now = now();
        match judge(&file, want, now) {
            Verdict::Take { from } => {
                let next = file.taken(want, now, lease);
                let put = match &etag {
                    None => store.create(KEY, &next).await?,
                    Some(etag) => store.replace(KEY, &next, etag).await?,
                };
                // Lost: another writer won, or our own write landed and its answer did not;
                // the next read tells which.
                if let Put::Written(etag) = put {
                    if let Some(from) = from {
                        reporter.info(&format!(
                            "took over the lock of `{}` from {}: its lease ran out {} ago",
                            settings.env,
                            from.describe(now),
                            short_duration(Duration::from_secs(now.saturating_sub(from.expires)))
                        ));
                    }
                    return Ok(Lock::hold(store.clone(), Held { file: next, etag }, lease));
                }
            }
            Verdict::Held(holder) => {
                if watch.elapsed() >= wait {
                    return Err(Error::Locked {
                        env: settings.env.clone(),
                        holder: holder.describe(now),
                        waited: (!wait.is_zero()).then(|| short_duration(wait)),
                        lease_left: short_duration(Duration::from_secs(
                            holder.expires.saturating_sub(now),
                        )),
                    });
                }
                if !said_waiting {
                    reporter.info(&format!(
                        "`{}` is locked by {}: waiting up to {} (`--lock-wait`)",
                        settings.env,
                        holder.describe(now),
                        short_duration(wait)
                    ));
                    said_waiting = true;
                }
                watch.beat(
                    reporter,
                    &format!("waiting for the lock of `{}`", settings.env),
                );
                settings.timeouts.pause(watch.elapsed()).await;
            }
            Verdict::Stale { newer } => {
                return Err(Error::StaleDeploy {
                    deploy_id: want.deploy_id.clone(),
                    newer: format!(
                        "`{}` of commit {} by {}, {} ago",
                        newer.deploy_id,
                        crate::text::short_sha(&newer.commit),
                        newer.by,
                        short_duration(Duration::from_secs(now.saturating_sub(newer.at)))
                    ),
                });
            }
        }
    }
}

impl Lock {
    fn hold(store: Store, held: Held, lease: Duration) -> Self {
        let run = held
            .file
            .holder
            .as_ref()
            .map(|h| h.run.clone())
            .unwrap_or_default();
        let expires = Arc::new(AtomicU64::new(expiry(&held.file)));
        let held = Arc::new(Mutex::new(held));
        let (lost_tx, lost) = watch::channel(None);
        let renewal = tokio::spawn(renew(Renewal {
            store: store.clone(),
            held: held.clone(),
            expires: expires.clone(),
            run: run.clone(),
            lease,
            lost: lost_tx,
        }));
        Self {
            store,
            held,
            expires,
            lost,
            renewal,
            run,
            lease,
        }
    }

    /// Resolves with the reason when the lock is lost: taken over after the lease ran out, or a
    /// lease that could not be renewed in time.
    pub async fn lost(&self) -> String {
        let mut lost = self.lost.clone();
        match lost.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            // The renewal ended without a verdict (it is only ever aborted by `release`).
            Err(_) => std::future::pending().await,
        }
    }

    /// The lock file as this run last wrote it: the journal of deploys, without reading S3 again.
    /// Where the lock and the deploy records live.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn file(&self) -> LockFile {
        self.held.lock().await.file.clone()
    }

    /// Journals `want`'s deploy as the newest started on the environment (see [`Want::journal`]).
    pub async fn journal(&self, want: &Want) -> Result<(), Error> {
        let mut held = self.held.lock().await;
        loop {
            let mut next = held.file.clone();
            next.serial += 1;
            next.journal(want, now());
            let run = &self.run;
            match self
                .store
                .replace_own(KEY, &next, &held.etag, |file| holds(file, run))
                .await?
            {
                Replaced::Written(etag) => {
                    *held = Held { file: next, etag };
                    return Ok(());
                }
                // Our own earlier write whose answer was lost moved the ETag: go on from it.
                Replaced::Ours(stored) => {
                    *held = Held {
                        file: stored.value,
                        etag: stored.etag,
                    };
                    if held.file.deploys.last().map(|d| d.deploy_id.as_str())
                        == Some(want.deploy_id.as_str())
                    {
                        return Ok(());
                    }
                }
                Replaced::Theirs(_) => {
                    return Err(Error::LockLost {
                        why: "the lock changed hands while this run held it".to_owned(),
                    });
                }
            }
        }
    }

    /// Fails when the lock was lost, or when its lease is about to run out unrenewed (another
    /// run may take it over any moment): call before a change in AWS.
    pub fn check(&self) -> Result<(), Error> {
        if let Some(why) = self.lost.borrow().clone() {
            return Err(Error::LockLost { why });
        }
        let expires = self.expires.load(Ordering::SeqCst);
        if now() + margin(self.lease) >= expires {
            return Err(Error::LockLost {
                why: format!(
                    "its lease runs out in {}s and could not be renewed (S3 did not answer)",
                    expires.saturating_sub(now())
                ),
            });
        }
        Ok(())
    }

    /// Releases the lock. `Ok(false)`: it was not ours any more.
    pub async fn release(mut self) -> Result<bool, Error> {
        self.renewal.abort();
        // Wait for it to stop, so that no renewal lands after the release.
        let _ = (&mut self.renewal).await;
        let mut held = self.held.lock().await.clone();
        loop {
            let next = held.file.released();
            let run = &self.run;
            match self
                .store
                .replace_own(KEY, &next, &held.etag, |file| holds(file, run))
                .await?
            {
                Replaced::Written(_) => return Ok(true),
                // A renewal that landed as it was stopped: release from there.
                Replaced::Ours(stored) => {
                    held = Held {
                        file: stored.value,
                        etag: stored.etag,
                    };
                }
                Replaced::Theirs(_) => return Ok(false),
            }
        }
    }
}

impl Drop for Lock {
    /// A lock dropped unreleased (the process is ending) stops renewing: its lease runs out.
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// What the renewal task works with.
struct Renewal {
    store: Store,
    held: Arc<Mutex<Held>>,
    expires: Arc<AtomicU64>,
    run: String,
    lease: Duration,
    lost: watch::Sender<Option<String>>,
}

/// Renews the lease a third of the way through, until aborted or the lock is lost. A renewal
/// that gets no answer within a third of the lease counts as unanswered; once the lease is about
/// to run out unrenewed, the lock counts as lost.
async fn renew(renewal: Renewal) {
    let Renewal {
        store,
        held,
        expires,
        run,
        lease,
        lost,
    } = renewal;
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        // Held across the write: a journal entry and a renewal never race each other.
        let mut guard = held.lock().await;
        let current = guard.clone();
        let next = current.file.renewed(now(), lease);
        let written = tokio::time::timeout(
            every,
            store.replace_own(KEY, &next, &current.etag, |file| holds(file, &run)),
        )
        .await;
        let outcome = match written {
            Ok(Ok(Replaced::Written(etag))) => Ok(Some(Held { file: next, etag })),
            // Ours still: an earlier write of ours whose answer was lost moved the ETag.
            Ok(Ok(Replaced::Ours(stored))) => Ok(Some(Held {
                file: stored.value,
                etag: stored.etag,
            })),
            Ok(Ok(Replaced::Theirs(Some(file)))) => Err(match file.holder {
                Some(holder) => format!(
                    "{} took the lock over after this deploy's lease ran out",
                    holder.describe(now())
                ),
                None => "the lock was released by someone else (`berth unlock`)".to_owned(),
            }),
            Ok(Ok(Replaced::Theirs(None))) => Err("the lock object was deleted".to_owned()),
            Ok(Err(_)) | Err(_) => Ok(None),
        };
        match outcome {
            Ok(Some(renewed)) => {
                expires.store(expiry(&renewed.file), Ordering::SeqCst);
                *guard = renewed;
            }
            // S3 did not answer: try again, unless the lease is about to run out.
            Ok(None) => {
                if now() + margin(lease) >= expiry(&current.file) {
                    let _ = lost.send(Some(
                        "its lease ran out before it could be renewed (S3 did not answer)"
                            .to_owned(),
                    ));
                    return;
                }
            }
            Err(why) => {
                let _ = lost.send(Some(why));
                return;
            }
        }
    }
}

/// Does `run` hold the lock in `file`?
fn holds(file: &LockFile, run: &str) -> bool {
    file.holder.as_ref().is_some_and(|holder| holder.run == run)
}

/// When the lease of `file` runs out, Unix seconds; 0 without a holder.
fn expiry(file: &LockFile) -> u64 {
    file.holder.as_ref().map_or(0, |holder| holder.expires)
}

/// How long before its lease runs out a holder stops trusting it: a quarter of the lease, at
/// least a second, so that a change it starts lands before another run could take over.
fn margin(lease: Duration) -> u64 {
    (lease.as_secs() / 4).max(1)
}

/// `berth unlock`: clears the holder, if it is still the run `seen` (the one the user was shown);
/// `None` when the lock was free.
pub async fn force_release(store: &Store, seen: &str) -> Result<Option<Holder>, Error> {
    loop {
        let Some(stored) = store.read::<LockFile>(KEY).await? else {
            return Ok(None);
        };
        let Some(holder) = stored.value.holder.clone() else {
            return Ok(None);
        };
        if holder.run != seen {
            return Err(Error::Mismatch {
                problem: format!(
                    "the lock changed hands while you were asked: it is now held by {}",
                    holder.describe(now())
                ),
                hint: "nothing was released; run `berth unlock` again if this holder is gone too"
                    .to_owned(),
            });
        }
        if let Put::Written(_) = store
            .replace(KEY, &stored.value.released(), &stored.etag)
            .await?
        {
            return Ok(Some(holder));
        }
    }
}

/// The lock file as it is now, if any.
pub async fn read(store: &Store) -> Result<LockFile, Error> {
    Ok(store
        .read::<LockFile>(KEY)
        .await?
        .map(|stored| stored.value)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(run: &str, deploy_id: &str) -> Want {
        Want {
            who: "ci".to_owned(),
            run: run.to_owned(),
            command: "deploy",
            deploy_id: deploy_id.to_owned(),
            commit: "abc1234def".to_owned(),
            check_stale: true,
            journal: true,
            force: false,
        }
    }

    fn holder(run: &str, deploy_id: &str, expires: u64) -> Holder {
        Holder {
            who: "https://circleci.com/gh/o/r/7".to_owned(),
            run: run.to_owned(),
            command: "deploy".to_owned(),
            deploy_id: deploy_id.to_owned(),
            commit: "0123456789".to_owned(),
            since: 900,
            expires,
        }
    }

    fn started(deploy_id: &str) -> Started {
        Started {
            deploy_id: deploy_id.to_owned(),
            commit: "0123456789".to_owned(),
            at: 900,
            by: "ci".to_owned(),
        }
    }

    /// One row per situation the lock can be found in, at t = 1000.
    #[test]
    fn judge_decides_from_the_lock_file() {
        let free = LockFile::default();
        let held_by_other = LockFile {
            holder: Some(holder("r2", "stg-b", 1010)),
            ..LockFile::default()
        };
        let lease_ran_out = LockFile {
            holder: Some(holder("r2", "stg-b", 999)),
            ..LockFile::default()
        };
        let same_deploy_other_run = LockFile {
            holder: Some(holder("r2", "stg-a", 1010)),
            ..LockFile::default()
        };
        let ours = LockFile {
            holder: Some(holder("r1", "stg-a", 1010)),
            ..LockFile::default()
        };
        let newer_started = LockFile {
            deploys: vec![started("stg-a"), started("stg-b")],
            ..LockFile::default()
        };
        let we_are_newest = LockFile {
            deploys: vec![started("stg-b"), started("stg-a")],
            ..LockFile::default()
        };
        let forced = Want {
            force: true,
            ..want("r1", "stg-a")
        };
        let rows: &[(&str, &LockFile, &Want, Verdict)] = &[
            (
                "free",
                &free,
                &want("r1", "stg-a"),
                Verdict::Take { from: None },
            ),
            (
                "held by another deploy",
                &held_by_other,
                &want("r1", "stg-a"),
                Verdict::Held(holder("r2", "stg-b", 1010)),
            ),
            (
                "held by another run of the same deploy (a double-triggered pipeline)",
                &same_deploy_other_run,
                &want("r1", "stg-a"),
                Verdict::Held(holder("r2", "stg-a", 1010)),
            ),
            (
                "holder's lease ran out (killed): taken over",
                &lease_ran_out,
                &want("r1", "stg-a"),
                Verdict::Take {
                    from: Some(holder("r2", "stg-b", 999)),
                },
            ),
            (
                "ours already: a write whose answer was lost",
                &ours,
                &want("r1", "stg-a"),
                Verdict::Take { from: None },
            ),
            (
                "a newer deploy started since: stale",
                &newer_started,
                &want("r1", "stg-a"),
                Verdict::Stale {
                    newer: started("stg-b"),
                },
            ),
            (
                "stale, with --force",
                &newer_started,
                &forced,
                Verdict::Take { from: None },
            ),
            (
                "this deploy is the newest: a rerun",
                &we_are_newest,
                &want("r1", "stg-a"),
                Verdict::Take { from: None },
            ),
            (
                "a deploy never started here is new",
                &newer_started,
                &want("r1", "stg-c"),
                Verdict::Take { from: None },
            ),
        ];
        for (case, file, want, expected) in rows {
            assert_eq!(&judge(file, want, 1000), expected, "{case}");
        }
    }

    #[test]
    fn taking_journals_a_new_deploy_once_and_keeps_the_newest() {
        let mut file = LockFile::default();
        for i in 0..(JOURNAL + 5) {
            file = file.taken(&want("r", &format!("d{i}")), 1000, Duration::from_secs(60));
        }
        assert_eq!(file.deploys.len(), JOURNAL);
        assert_eq!(
            file.deploys[JOURNAL - 1].deploy_id,
            format!("d{}", JOURNAL + 4)
        );
        let again = file.taken(
            &want("r", &format!("d{}", JOURNAL + 4)),
            1001,
            Duration::from_secs(60),
        );
        assert_eq!(again.deploys, file.deploys, "a rerun is not a new entry");
        assert_eq!(again.serial, file.serial + 1);
        assert_eq!(again.holder.map(|h| h.expires), Some(1061));
        let released = file.released();
        assert!(released.holder.is_none());
        assert_eq!(released.deploys, file.deploys);
    }
}
