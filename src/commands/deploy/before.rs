//! What a deploy reads before its first write, in as few round trips as their order allows: the
//! first look at ECS and ECR (a service's ARN names the account, and so the state bucket); the
//! bucket, the lock file and this deploy's record at once, and beside them the revisions the
//! families are made from and the look for the image in ECR; then each family's revision is
//! found or planned. Then, with the checks passed, the lock is taken.

use std::collections::BTreeMap;

use aws_config::SdkConfig;

use super::{Clients, TestedIn};
use crate::aws::{self, ecr};
use crate::current::Current;
use crate::error::Error;
use crate::report::Reporter;
use crate::settings::{MigrateOrder, Settings};
use crate::state::lock::{self, Lock, LockFile};
use crate::state::{self, Store, Stored, record};
use crate::steps::Ledger;
use crate::steps::prepare::{self, Local, Prepared};
use crate::steps::promote::{self, Passed};
use crate::steps::register;
use crate::steps::rollout::step as rollout;
use crate::taskdef::DEFAULT_PLATFORM;

/// What the preparation read.
pub(super) struct Read {
    pub store: Store,
    /// The state bucket exists (else it is made once the checks passed).
    pub bucket: bool,
    /// The lock file with its ETag, as it was read beside the preparation.
    pub seen: Option<Stored<LockFile>>,
    pub current: Current,
    pub prepared: Prepared,
    /// What ECR held for the image tag, looked up beside the store's reads when the tag could be
    /// told before the revisions were read (`build.platform`, else the default platform): `None`
    /// when it was not, or the tag came out otherwise.
    pub in_ecr: Option<Result<Option<String>, Error>>,
}

impl Read {
    /// The lock file as read (an empty one when there was none).
    pub fn lock_file(&self) -> LockFile {
        self.seen
            .as_ref()
            .map(|stored| stored.value.clone())
            .unwrap_or_default()
    }
}

/// The preparation's reads: the services and the repository, then the store, the lock file and
/// the record beside the base revisions, then the families. Nothing is written.
pub(super) async fn read(
    config: &SdkConfig,
    clients: &Clients,
    settings: &Settings,
    local: &Local,
) -> Result<Read, Error> {
    let readers = clients.aws();
    let deploy_id = &local.release.deploy_id;
    // The services and the repository first: a service's ARN names the account, and with it the
    // state bucket (STS is asked only when none does).
    let current = prepare::current(readers.ecs, readers.ecr, settings, local).await?;
    let account = current.account();
    let stored = async {
        let store = Store::locate_in(config, state::Place::of(settings), account).await?;
        let (bucket, seen, earlier) = tokio::join!(
            store.exists(),
            lock::read_stored(&store),
            record::read_stored(&store, deploy_id)
        );
        // A bucket that is not there holds nothing yet.
        let (seen, earlier) = if bucket? {
            (Some(seen?), earlier?)
        } else {
            (None, None)
        };
        Ok::<_, Error>((store, seen, earlier))
    };
    // The bases the revisions are made from are described beside the store's reads, and the
    // image is looked for in ECR under the tag it most likely has: the platform comes from the
    // bases, and is nearly always the configured or the default one.
    let bases = register::describe_bases(readers.ecs, settings, &current, &local.files);
    let platform = settings.build.platform.as_deref();
    let guess = (local.release).image_tag(&settings.build, platform.unwrap_or(DEFAULT_PLATFORM));
    let looking = ecr::digest_of(readers.ecr, &current.repository, &guess);
    let (stored, bases, looked) = tokio::join!(stored, bases, looking);
    let (store, seen, earlier) =
        stored.map_err(|error| aws::blame_unknown_region(error, &settings.region))?;
    let journaled = seen
        .as_ref()
        .and_then(Option::as_ref)
        .is_some_and(|stored| stored.value.lists(deploy_id));
    let read = (&current, earlier, &bases);
    let prepared = prepare::with_record(&readers, settings, (local, journaled), read).await?;
    let in_ecr = (prepared.tag == guess).then_some(looked);
    Ok(Read {
        store,
        bucket: seen.is_some(),
        seen: seen.flatten(),
        current,
        prepared,
        in_ecr,
    })
}

/// `requires`: the image must have succeeded in the environment named, unless `--force`; the
/// deploy there that did, if any. Nothing is written either way.
pub(super) async fn guard(
    config: &SdkConfig,
    settings: &Settings,
    (current, tag): (&Current, &str),
    force: bool,
    ledger: &mut Ledger<'_>,
) -> Result<Option<TestedIn>, Error> {
    let Some(upstream) = &settings.requires else {
        return Ok(None);
    };
    let env = (settings.env.as_str(), upstream);
    match promote::guard(config, env, current.account(), tag, force).await? {
        Passed::Tested(tested) => {
            ledger
                .reporter
                .info(&promote::same_image(&upstream.env, &tested));
            let (config, promotion) = ((config, upstream), settings.promotion);
            promote::ready(config, promotion, &tested, &settings.env).await?;
            let env = upstream.env.clone();
            Ok(Some(TestedIn { env, tested }))
        }
        Passed::Forced(warning) => {
            ledger.warn(warning);
            Ok(None)
        }
    }
}

/// Takes the lock, the bucket made first if it was missing, beside the look for the image's
/// tag in ECR unless the preparation looked already. `true`: the lock was free as read and is
/// taken straight over that file, so no other run held it since: what was read is what there
/// is, and the deploy's journal entry went with the same write. Otherwise (a holder, even one whose lease ran out, may have had a call in
/// flight) the preparation must read again ([`again`]).
pub(super) async fn lock(
    read: &mut Read,
    clients: &Clients,
    settings: &Settings,
    (want, wait): (&lock::Want, std::time::Duration),
    reporter: &dyn Reporter,
) -> Result<(Lock, bool), Error> {
    let place = state::Place::of(settings);
    read.store
        .make_unless(read.bucket, place, reporter)
        .await
        .map_err(|error| aws::blame_unknown_region(error, &settings.region))?;
    let seen = read.lock_file();
    let first = Some(read.seen.take());
    let taking = lock::acquire(&read.store, settings, want, wait, reporter, first);
    let tag = &read.prepared.tag;
    let looked = read.in_ecr.take();
    let looking = async {
        match looked {
            Some(looked) => looked,
            None => ecr::digest_of(&clients.ecr, &read.current.repository, tag).await,
        }
    };
    let (lock, in_ecr) = tokio::join!(taking, looking);
    let lock = lock?;
    let untouched = seen.holder.is_none() && lock.file().await.serial == seen.serial + 1;
    if untouched {
        // A failed look is looked at again after the lock.
        read.prepared.in_ecr = in_ecr.ok();
    }
    Ok((lock, untouched))
}

/// The preparation read again, under `lock`.
pub(super) async fn again(
    read: &mut Read,
    clients: &Clients,
    settings: &Settings,
    (local, lock): (&Local, &Lock),
) -> Result<(), Error> {
    let readers = clients.aws();
    let journaled = lock.file().await.lists(&local.release.deploy_id);
    (read.current, read.prepared) =
        prepare::in_aws(&readers, Some(&read.store), settings, (local, journaled)).await?;
    Ok(())
}

/// The rollout comes right after the registration (the migration after it, or none): the
/// record's opening write names each service's revision from before, and the revisions and the
/// rollout's start are written beside the `UpdateService` calls.
pub(super) fn rollout_next(settings: &Settings) -> bool {
    settings.migrate != MigrateOrder::Before
}

/// Each service's revision from before this deploy, for the record's opening write when the
/// rollout comes next; none otherwise (the rollout notes them itself, before its updates).
pub(super) fn previous(read: &Read, settings: &Settings) -> BTreeMap<String, String> {
    if !rollout_next(settings) {
        return BTreeMap::new();
    }
    let ours = prepare::registered(&read.current, &read.prepared);
    rollout::previous(&read.current, &ours)
}
