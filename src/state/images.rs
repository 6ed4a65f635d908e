//! Which deploy of an environment last succeeded with each image: `images/<tag>.json`, written
//! once a deploy's record says it succeeded. It is an index into the records, not a record: a
//! reader (another environment's `requires`) trusts it only when the deploy's record agrees.

use serde::{Deserialize, Serialize};

use super::record::{self, DeployRecord, Kind, RunState};
use super::{Put, Store};
use crate::error::Error;

/// The index lives at `images/<tag>.json`.
pub const FOLDER: &str = "images";

/// A deploy that succeeded with an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tested {
    pub tag: String,
    pub digest: String,
    pub deploy_id: String,
    pub commit: String,
    /// Unix seconds: when the deploy succeeded.
    pub at: u64,
    /// Where that deploy's revisions pulled it from: `<registry>/<repository>@<digest>`, as
    /// ECR named the repository to it.
    #[serde(default)]
    pub uri: String,
}

impl Tested {
    /// The entry a succeeded deploy's record makes; `None` for a rollback, or without an image.
    pub fn of(record: &DeployRecord) -> Option<Self> {
        let image = record.image.as_ref()?;
        (record.kind == Kind::Deploy && record.state == RunState::Succeeded).then(|| Self {
            tag: image.tag.clone(),
            digest: image.digest.clone(),
            deploy_id: record.deploy_id.clone(),
            commit: record.commit.clone(),
            at: record.updated_at,
            uri: image.uri.clone(),
        })
    }
}

fn key(tag: &str) -> String {
    format!("{FOLDER}/{tag}.json")
}

/// Writes `tested` over whatever the index held for its tag: the newest success wins. Each
/// write is conditional, so two deploys that succeed at once each write a whole entry.
pub async fn note(store: &Store, tested: &Tested) -> Result<(), Error> {
    let key = key(&tested.tag);
    for _ in 0..WRITES {
        let put = match store.read::<Tested>(&key).await? {
            Some(stored) if stored.value == *tested => return Ok(()),
            Some(stored) => store.replace(&key, tested, &stored.etag).await?,
            None => store.create(&key, tested).await?,
        };
        if let Put::Written(_) = put {
            return Ok(());
        }
    }
    Err(Error::Mismatch {
        problem: format!(
            "`{}` changed under each of {WRITES} writes",
            store.url(&key)
        ),
        hint: "rerun the deploy: it writes the entry again".to_owned(),
    })
}

/// Writes of the entry before berth gives up: each one lost means another deploy wrote it.
const WRITES: usize = 5;

/// What the environment knows of `tag`: the index's entry, and the record it points to.
pub async fn find(
    store: &Store,
    tag: &str,
) -> Result<Option<(Tested, Option<DeployRecord>)>, Error> {
    let Some(tested) = store.read::<Tested>(&key(tag)).await? else {
        return Ok(None);
    };
    let record = record::read(store, &tested.value.deploy_id).await?;
    Ok(Some((tested.value, record)))
}
