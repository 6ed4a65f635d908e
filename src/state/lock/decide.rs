//! The lock's rules, pure: what `lock.json` holds, whether a run may take it (free, its own, a
//! lease run out) or must wait or stop (held, stale), and the next file each write puts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::text::{short_duration, short_sha};

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
        let started_before = file.lists(&want.deploy_id);
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
    /// The deploy started on the environment last, if any.
    pub fn newest(&self) -> Option<&str> {
        self.deploys.last().map(|d| d.deploy_id.as_str())
    }

    /// The journal lists `deploy_id`: a run of it took the lock before.
    pub fn lists(&self, deploy_id: &str) -> bool {
        self.deploys.iter().any(|d| d.deploy_id == deploy_id)
    }

    /// This file with `want` holding it until `now + lease`. The journal is untouched: the holder
    /// journals its deploy once its checks passed ([`super::Lock::journal`]).
    pub(super) fn taken(&self, want: &Want, now: u64, lease: Duration) -> Self {
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
        next
    }

    /// Adds the deploy to the journal unless it is the newest entry already. A deploy journaled
    /// before (one forced on with `--force`) moves to the newest: it is listed once.
    pub(super) fn journal(&mut self, want: &Want, now: u64) {
        if self.newest() != Some(want.deploy_id.as_str()) {
            self.deploys.retain(|d| d.deploy_id != want.deploy_id);
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

    pub(super) fn renewed(&self, now: u64, lease: Duration) -> Self {
        let mut next = self.clone();
        next.serial += 1;
        if let Some(holder) = &mut next.holder {
            holder.expires = now + lease.as_secs().max(1);
        }
        next
    }

    pub(super) fn released(&self) -> Self {
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

/// Does `run` hold the lock in `file`?
pub(super) fn holds(file: &LockFile, run: &str) -> bool {
    file.holder.as_ref().is_some_and(|holder| holder.run == run)
}

/// When the lease of `file` runs out, Unix seconds; 0 without a holder.
pub(super) fn expiry(file: &LockFile) -> u64 {
    file.holder.as_ref().map_or(0, |holder| holder.expires)
}

/// How long before its lease runs out a holder stops trusting it: a quarter of the lease, at
/// least a second, so that a change it starts lands before another run could take over.
pub(super) fn margin(lease: Duration) -> u64 {
    (lease.as_secs() / 4).max(1)
}

/// `want`'s deploy is older than `newer`, started on the environment since.
pub(super) fn stale(want: &Want, newer: &Started, now: u64) -> Error {
    Error::StaleDeploy {
        deploy_id: want.deploy_id.clone(),
        newer: format!(
            "`{}` of commit {} by {}, {} ago",
            newer.deploy_id,
            short_sha(&newer.commit),
            newer.by,
            short_duration(Duration::from_secs(now.saturating_sub(newer.at)))
        ),
    }
}

/// What happened to a lock this run held, from the file as it is now: who took it over after
/// this run's lease ran out, or that it was freed since, and by what.
pub(super) fn taken_from_us(now_file: &LockFile, ours: &LockFile, now: u64) -> String {
    let ran_out = "this run's lease ran out (was it paused, or cut off from S3?)";
    let newer = now_file
        .deploys
        .last()
        .filter(|newest| ours.deploys.last() != Some(*newest));
    match (&now_file.holder, newer) {
        (Some(holder), _) => format!("{ran_out}, and {} holds it now", holder.describe(now)),
        (None, Some(newer)) => format!(
            "{ran_out}, and deploy `{}` of commit {} by {} took it over, ran, and released it",
            newer.deploy_id,
            crate::text::short_sha(&newer.commit),
            newer.by
        ),
        (None, None) => format!(
            "{ran_out}, or it was released with `berth unlock`; it is free now, and no other deploy started"
        ),
    }
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
    fn the_journal_takes_a_new_deploy_once_and_keeps_the_newest() {
        let mut file = LockFile::default();
        for i in 0..(JOURNAL + 5) {
            let want = want("r", &format!("d{i}"));
            file = file.taken(&want, 1000, Duration::from_secs(60));
            assert!(file.deploys.iter().all(|d| d.deploy_id != want.deploy_id));
            file.journal(&want, 1000);
        }
        assert_eq!(file.deploys.len(), JOURNAL);
        assert_eq!(
            file.deploys[JOURNAL - 1].deploy_id,
            format!("d{}", JOURNAL + 4)
        );
        let rerun = want("r", &format!("d{}", JOURNAL + 4));
        let mut again = file.taken(&rerun, 1001, Duration::from_secs(60));
        again.journal(&rerun, 1001);
        assert_eq!(again.deploys, file.deploys, "a rerun is not a new entry");
        assert_eq!(again.serial, file.serial + 1);
        assert_eq!(again.holder.map(|h| h.expires), Some(1061));
        let released = file.released();
        assert!(released.holder.is_none());
        assert_eq!(released.deploys, file.deploys);
    }

    #[test]
    fn a_forced_deploy_is_journaled_once_as_the_newest() {
        let mut file = LockFile::default();
        for id in ["d1", "d2", "d1"] {
            file.journal(&want("r", id), 1000);
        }
        let ids: Vec<&str> = file.deploys.iter().map(|d| d.deploy_id.as_str()).collect();
        assert_eq!(ids, ["d2", "d1"]);
    }

    /// A run paused past its lease finds the lock: held by another run, freed by another deploy
    /// that ran, or freed with no deploy since. Each is told as it happened.
    #[test]
    fn a_lost_lock_is_told_as_it_happened() {
        let ours = LockFile {
            serial: 3,
            holder: None,
            deploys: vec![started("mine")],
        };
        let holder = Holder {
            who: "ci-job-2".to_owned(),
            run: "r2".to_owned(),
            command: "deploy".to_owned(),
            deploy_id: "theirs".to_owned(),
            commit: "def5678abc".to_owned(),
            since: 1,
            expires: u64::MAX,
        };
        let held = LockFile {
            serial: 5,
            holder: Some(holder),
            deploys: vec![
                started("mine"),
                Started {
                    commit: "abc1234def".to_owned(),
                    ..started("theirs")
                },
            ],
        };
        assert!(taken_from_us(&held, &ours, 1000).contains("and ci-job-2 (deploy `theirs`"));
        let after_them = LockFile {
            holder: None,
            ..held
        };
        let told = taken_from_us(&after_them, &ours, 1000);
        assert!(
            told.contains(
                "deploy `theirs` of commit abc1234 by ci took it over, ran, and released it"
            ),
            "{told}"
        );
        assert!(!told.contains("unlock"), "{told}");
        let freed = taken_from_us(&ours, &ours, 1000);
        assert!(freed.contains("no other deploy started"), "{freed}");
    }
}
