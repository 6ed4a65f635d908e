//! `berth unlock`: free the lock of a deploy that is gone, after asking (or with `--yes`).

use crate::aws;
use crate::error::Error;
use crate::report::Prompt;
use crate::settings::Settings;
use crate::state::{self, lock::Holder};
use crate::text;

/// What `berth unlock` did: the holder it released, `None` when the lock was free.
#[derive(Debug)]
pub struct Unlocked {
    pub env: String,
    pub released: Option<Holder>,
}

/// Releases the environment's lock whoever holds it, after asking (or with `--yes`).
pub async fn unlock(
    settings: &Settings,
    yes: bool,
    prompt: &dyn Prompt,
) -> Result<Unlocked, Error> {
    let config = aws::sdk_config(settings).await?;
    let none = || Unlocked {
        env: settings.env.clone(),
        released: None,
    };
    let Some(store) = state::Store::find(&config, state::Place::of(settings)).await? else {
        return Ok(none());
    };
    let file = state::lock::read(&store).await?;
    let Some(holder) = file.holder else {
        return Ok(none());
    };
    let now = state::now();
    let question = format!(
        "`{}` is locked by {}; its lease {}. Release it? A deploy still running would go on without the lock",
        settings.env,
        holder.describe(now),
        if holder.expires > now {
            format!(
                "runs out in {}",
                text::short_duration(std::time::Duration::from_secs(holder.expires - now))
            )
        } else {
            "has run out".to_owned()
        }
    );
    if !yes {
        match prompt.confirm(&question) {
            Some(true) => {}
            Some(false) => {
                return Err(Error::Mismatch {
                    problem: format!("`{}` left locked", settings.env),
                    hint: "nothing was changed".to_owned(),
                });
            }
            None => {
                return Err(Error::Mismatch {
                    problem: format!(
                        "`{}` is locked by {}, and berth asks before releasing a lock",
                        settings.env,
                        holder.describe(now)
                    ),
                    hint: "pass `--yes` to release it without asking (stdin is not a terminal)"
                        .to_owned(),
                });
            }
        }
    }
    Ok(Unlocked {
        env: settings.env.clone(),
        released: state::lock::force_release(&store, &holder.run).await?,
    })
}
