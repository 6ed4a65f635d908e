//! Images that come from another environment: the promotion guard (`requires`), which asks the
//! environment that must test an image first whether a deploy of it succeeded there
//! ([`decide`]), before anything is written.

pub mod decide;

use aws_config::SdkConfig;
use aws_types::region::Region;

use crate::error::Error;
use crate::settings::Upstream;
use crate::state::images::{self, Tested};
use crate::state::{self, Place, Store};
use crate::text::{short_duration, short_sha};
use decide::Verdict;
use std::time::Duration;

/// How the guard let the image through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passed {
    /// `upstream`'s deploy that succeeded with it.
    Tested(Tested),
    /// Untested, and `--force` deploys it anyway: the warning to give.
    Forced(String),
}

/// What the output says of an image `upstream` tested: "same image as `stg` deploy `…` (tested
/// 2h ago, commit 0123456)".
pub fn same_image(upstream: &str, tested: &Tested) -> String {
    let ago = Duration::from_secs(state::now().saturating_sub(tested.at));
    format!(
        "same image as `{upstream}` deploy `{}` (tested {} ago, commit {})",
        tested.deploy_id,
        short_duration(ago),
        short_sha(&tested.commit)
    )
}

/// `requires`: the deploy of image `tag` that succeeded in `upstream`, read from its store (in
/// its region; its default bucket named with `account`, this deploy's, when known). Without
/// one the deploy is refused unless `force`.
pub async fn guard(
    config: &SdkConfig,
    (env, upstream): (&str, &Upstream),
    account: Option<&str>,
    tag: &str,
    force: bool,
) -> Result<Passed, Error> {
    let config = config
        .to_builder()
        .region(Region::new(upstream.region.clone()))
        .build();
    let place = Place {
        state: &upstream.state,
        region: &upstream.region,
        env: &upstream.env,
    };
    let store = Store::find_in(&config, place, account).await?;
    let found = match &store {
        Some(store) => images::find(store, tag).await?,
        None => None,
    };
    match decide::judge(&upstream.env, tag, found) {
        Verdict::Tested(tested) => Ok(Passed::Tested(tested)),
        Verdict::Untested(missing) if force => Ok(Passed::Forced(format!(
            "{missing}: deploying it to `{env}` untested (`--force`)"
        ))),
        Verdict::Untested(missing) => Err(Error::Untested {
            env: env.to_owned(),
            requires: upstream.env.clone(),
            missing,
        }),
    }
}
