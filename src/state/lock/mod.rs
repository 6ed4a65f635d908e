//! One deploy per environment: a lock object in S3 with a lease.
//!
//! The holder (CircleCI job URL, else `user@host`), its deploy and when it took the lock are in
//! `lock.json`, with the time its lease runs out. The holder renews the lease a third of the way
//! through; a holder killed outright loses the lock when its lease runs out, and the next deploy
//! takes it over. Releasing clears the holder. The same object keeps the journal of deploys
//! started on the environment, written by the holder with a conditional write once its checks
//! passed, so "which deploy is the newest" never disagrees with who held the lock, and a refused
//! run is never in it.

mod decide;
mod give_back;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, watch};

use super::{Put, Replaced, Store, Stored, now};
use crate::error::Error;
use crate::report::{Reporter, Watch};
use crate::settings::Settings;
use crate::text::short_duration;
pub use decide::{Holder, LockFile, Started, Verdict, Want, judge};
use decide::{expiry, holds, margin, stale, taken_from_us};

/// The lock's key under the environment's prefix.
pub const KEY: &str = "lock.json";
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
    /// The lock file as it was before this run took it; `None`: there was none.
    before: Option<LockFile>,
}

#[derive(Debug, Clone)]
struct Held {
    file: LockFile,
    etag: String,
}

/// Takes the environment's lock for `want`, waiting up to `wait` while someone else holds it.
/// `first`: the lock file as the run read it already (`None` inside: there was none), tried
/// before any read; when it was free and is taken straight over, the deploy is journaled in the
/// same write (its checks ran on what that read saw: nothing can have changed since).
pub async fn acquire(
    store: &Store,
    settings: &Settings,
    want: &Want,
    wait: Duration,
    reporter: &dyn Reporter,
    first: Option<Option<Stored<LockFile>>>,
) -> Result<Lock, Error> {
    let watch = Watch::new(settings.timeouts.heartbeat);
    let taking = take(store, settings, want, (wait, first), reporter, &watch);
    watch.around(reporter, "waiting for the lock", taking).await
}

/// [`acquire`]'s tries, one per poll while the lock is held.
async fn take(
    store: &Store,
    settings: &Settings,
    want: &Want,
    (wait, mut first): (Duration, Option<Option<Stored<LockFile>>>),
    reporter: &dyn Reporter,
    watch: &Watch,
) -> Result<Lock, Error> {
    let lease = settings.state.lease;
    let mut said_waiting = false;
    loop {
        let looked = tokio::time::Instant::now();
        let (found, seen_before) = match first.take() {
            Some(found) => (found, true),
            None => (store.read::<LockFile>(KEY).await?, false),
        };
        let (file, etag) = match found {
            Some(stored) => (stored.value, Some(stored.etag)),
            None => (LockFile::default(), None),
        };
        let found_etag = etag.is_some();
        let now = now();
        match judge(&file, want, now) {
            Verdict::Take { from } => {
                let mut next = file.taken(want, now, lease);
                if seen_before && file.holder.is_none() {
                    next.journal(want, now);
                }
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
                    let held = Held { file: next, etag };
                    let before = found_etag.then_some(file);
                    return Ok(Lock::hold(store.clone(), held, lease, before));
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
                settings.timeouts.pause(looked).await;
            }
            Verdict::Stale { newer } => return Err(stale(want, &newer, now)),
        }
    }
}

impl Lock {
    fn hold(store: Store, held: Held, lease: Duration, before: Option<LockFile>) -> Self {
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
            before,
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

    /// Journals `want`'s deploy as the newest started on the environment: once its checks passed,
    /// so that a refused run is never the newest.
    pub async fn journal(&self, want: &Want) -> Result<(), Error> {
        let mut held = self.held.lock().await;
        // Journaled as the lock was taken: nothing to write.
        if held.file.newest() == Some(want.deploy_id.as_str()) {
            return Ok(());
        }
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
                    if held.file.newest() == Some(want.deploy_id.as_str()) {
                        return Ok(());
                    }
                }
                Replaced::Theirs(found) => {
                    return Err(Error::LockLost {
                        why: found.map_or_else(
                            || "the lock object was deleted".to_owned(),
                            |file| taken_from_us(&file, &held.file, now()),
                        ),
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
                    "its lease runs out in {}s and was not renewed in time (was this run paused, or S3 slow to answer?)",
                    expires.saturating_sub(now())
                ),
            });
        }
        Ok(())
    }

    /// Why this run lost the lock, told from the lock file as it is now (who holds it, which
    /// deploy ran since) when S3 answers and the lock is another's; else `why` as it is. A run
    /// resumed after a pause finds its lease run out before its renewal can look.
    pub async fn tell_loss(&self, why: String) -> String {
        let ours = self.held.lock().await.file.clone();
        match self.store.read::<LockFile>(KEY).await {
            Ok(Some(stored)) if !holds(&stored.value, &self.run) => {
                taken_from_us(&stored.value, &ours, now())
            }
            _ => why,
        }
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
                // Our own release, whose answer was lost: the file is as it wrote it.
                Replaced::Theirs(Some(file)) if file == next => return Ok(true),
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
            Ok(Ok(Replaced::Theirs(Some(file)))) => Err(taken_from_us(&file, &current.file, now())),
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

/// The lock file with its ETag, for a first try at taking the lock ([`acquire`]'s `first`).
pub async fn read_stored(store: &Store) -> Result<Option<Stored<LockFile>>, Error> {
    store.read::<LockFile>(KEY).await
}

/// The lock file as it is now (an empty one when there is none).
pub async fn read(store: &Store) -> Result<LockFile, Error> {
    Ok(store
        .read::<LockFile>(KEY)
        .await?
        .map(|stored| stored.value)
        .unwrap_or_default())
}
