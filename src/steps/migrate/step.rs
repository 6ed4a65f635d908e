//! The migration as the deploy runs it: reported to the ledger, "already done" when this
//! deploy's migration task succeeded before.

use aws_sdk_ecs::Client as Ecs;

use crate::aws::arn;
use crate::error::Error;
use crate::state::Record;
use crate::steps::migrate::{self, Migrated, Setup};
use crate::steps::{Ledger, Step};

pub async fn run(
    ecs: &Ecs,
    logs: &aws_sdk_cloudwatchlogs::Client,
    setup: Setup<'_>,
    plan: &migrate::Plan<'_>,
    record: &mut Record,
    ledger: &mut Ledger<'_>,
) -> Result<Migrated, Error> {
    ledger.start(Step::Migrate);
    let migrated = migrate::run(ecs, logs, setup, plan, record, ledger.reporter).await?;
    if migrated.already {
        ledger.already_done(succeeded_before(&migrated.task_arn));
    } else {
        ledger.done(format!("task {} exited 0", arn::short(&migrated.task_arn)));
    }
    Ok(migrated)
}

/// Why the migration is skipped: this deploy's task succeeded before.
pub fn succeeded_before(task_arn: &str) -> String {
    format!(
        "migration task `{}` of this deploy succeeded",
        arn::short(task_arn)
    )
}
