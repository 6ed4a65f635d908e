//! Giving the lock back as it was: for a run that stops before its first change, so that S3
//! holds what it held before the run.

use super::{KEY, Lock};
use crate::error::Error;
use crate::state::Put;

impl Lock {
    /// Puts the lock file back as it was before this run took it, byte for byte (its ETag
    /// too), or removes it when there was none: as if this run had never taken it. For a run
    /// that stops before its first change (a `before_deploy` hook that failed). `Ok(false)`: it
    /// could not be put back (the file changed since, or S3 refused), and it was released instead.
    pub async fn give_back(mut self) -> Result<bool, Error> {
        self.renewal.abort();
        let _ = (&mut self.renewal).await;
        let held = self.held.lock().await.clone();
        let before = self.before.take();
        let restored = match &before {
            Some(file) => (self.store.replace(KEY, file, &held.etag).await)
                .map(|put| matches!(put, Put::Written(_))),
            None => self.store.delete_if(KEY, &held.etag).await,
        };
        // Not put back (another write came between, or S3 refused): released instead, so that
        // the next deploy need not wait for the lease.
        match restored {
            Ok(true) => Ok(true),
            _ => self.release().await.map(|_| false),
        }
    }
}
