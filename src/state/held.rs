//! What a run holds while it changes an environment: the lock and the deploy's record. Kept
//! outside the run, so that a run that fails or is interrupted still writes how it ended and
//! releases the lock.

use crate::error::Error;
use crate::report::{Reporter, warn};
use crate::state::images::{self, Tested};
use crate::state::record::RunState;
use crate::state::{Lock, Record};
use crate::text::with_causes;

/// The lock and the record a deploy or a rollback holds.
#[derive(Default)]
pub struct Held {
    pub lock: Option<Lock>,
    pub record: Option<Record>,
}

impl Held {
    /// Writes how the run ended into the record and releases the lock; what fails here is a
    /// warning, never the deploy's verdict.
    pub async fn finish(
        self,
        result: &Result<(), Error>,
        warnings: &mut Vec<String>,
        reporter: &dyn Reporter,
    ) {
        let mut warn = |warning: String| warn(reporter, warnings, warning);
        if let Some(mut record) = self.record {
            let lost = matches!(result, Err(Error::LockLost { .. }));
            let state = match result {
                Ok(()) if record.value.state == RunState::RolledBack => RunState::RolledBack,
                Ok(()) => RunState::Succeeded,
                Err(Error::Interrupted) => RunState::Interrupted,
                Err(Error::Paused { .. }) => RunState::Paused,
                Err(_) if record.value.state == RunState::RolledBack => RunState::RolledBack,
                Err(_) => RunState::Failed,
            };
            let state = if lost { RunState::Lost } else { state };
            // The write is conditional: a run that lost the lock says so in its record unless
            // another run of the deploy wrote the record since, which then is that run's.
            let written = record
                .update(|r| {
                    r.state = state;
                    r.error = result.as_ref().err().map(|e| with_causes(e));
                })
                .await;
            match written {
                Err(Error::LockLost { .. }) if lost => {}
                Err(error) => warn(format!(
                    "the deploy record was not updated: {}",
                    with_causes(&error)
                )),
                Ok(()) => {
                    // Once the record says so: the index is trusted only where it agrees.
                    if let Some(tested) = Tested::of(&record.value)
                        && let Err(error) = images::note(record.store(), &tested).await
                    {
                        warn(format!(
                            "the image index was not updated ({}): an environment that `requires` this one will not find image `{}` tested until a deploy of it here succeeds again (`--new`)",
                            with_causes(&error),
                            tested.tag
                        ));
                    }
                }
            }
        }
        if let Some(lock) = self.lock {
            match lock.release().await {
                Ok(true) => {}
                Ok(false) => warn("the lock was no longer this run's to release".to_owned()),
                Err(error) => warn(format!(
                    "the lock was not released: {}; it frees itself when its lease runs out",
                    with_causes(&error)
                )),
            }
        }
    }
}
