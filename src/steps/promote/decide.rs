//! The promotion guard (`requires = "stg"`): whether the environment an image must pass first
//! holds a successful deploy of it. Its index names a deploy for the image's tag; the deploy's
//! record must agree.

use crate::state::images::Tested;
use crate::state::record::{DeployRecord, RunState};

/// What the guard found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The deploy that succeeded with the image.
    Tested(Tested),
    /// What is missing, in words.
    Untested(String),
}

/// The guard's verdict on image `tag` from what `upstream`'s store holds for it: its index
/// entry, and the record that entry names.
pub fn judge(upstream: &str, tag: &str, found: Option<(Tested, Option<DeployRecord>)>) -> Verdict {
    let Some((tested, record)) = found else {
        return Verdict::Untested(format!(
            "`{upstream}` has no successful deploy of image `{tag}`"
        ));
    };
    let deploy = &tested.deploy_id;
    let Some(record) = record else {
        return Verdict::Untested(format!(
            "the record of `{upstream}` deploy `{deploy}`, which ran image `{tag}`, is gone"
        ));
    };
    if record.state != RunState::Succeeded {
        return Verdict::Untested(format!(
            "`{upstream}` deploy `{deploy}` of image `{tag}` is `{}` now, not succeeded",
            serde_json::to_value(record.state)
                .ok()
                .and_then(|state| state.as_str().map(str::to_owned))
                .unwrap_or_default()
        ));
    }
    let digest = record.image.as_ref().map(|image| image.digest.as_str());
    if digest != Some(tested.digest.as_str()) {
        return Verdict::Untested(format!(
            "`{upstream}` deploy `{deploy}` ran another image than `{tag}` ({})",
            digest.unwrap_or("none")
        ));
    }
    Verdict::Tested(tested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::record::RecordedImage;

    const TAG: &str = "tree-3be22be77da4-0a1b2c3d";

    fn tested() -> Tested {
        Tested {
            tag: TAG.to_owned(),
            digest: "sha256:aa".to_owned(),
            deploy_id: "stg-0123456-89abcdef".to_owned(),
            commit: "0123456789".to_owned(),
            at: 1_700_000_000,
            uri: String::new(),
        }
    }

    fn record(state: RunState, digest: &str) -> DeployRecord {
        DeployRecord {
            deploy_id: "stg-0123456-89abcdef".to_owned(),
            state,
            image: Some(RecordedImage {
                tag: TAG.to_owned(),
                digest: digest.to_owned(),
                uri: String::new(),
            }),
            ..DeployRecord::default()
        }
    }

    /// One row per situation: what `stg` holds, and what the guard says.
    #[test]
    fn an_image_passes_only_with_a_successful_deploy_that_ran_it() {
        let rows = [
            ("no entry", None, "`stg` has no successful deploy of image"),
            (
                "an entry whose record is gone",
                Some((tested(), None)),
                "the record of `stg` deploy `stg-0123456-89abcdef`, which ran image",
            ),
            (
                "a record that failed since (rerun)",
                Some((tested(), Some(record(RunState::Failed, "sha256:aa")))),
                "is `failed` now, not succeeded",
            ),
            (
                "a record of another digest",
                Some((tested(), Some(record(RunState::Succeeded, "sha256:bb")))),
                "ran another image than",
            ),
        ];
        for (case, found, missing) in rows {
            match judge("stg", TAG, found) {
                Verdict::Untested(why) => assert!(why.contains(missing), "{case}: {why}"),
                other => panic!("{case}: {other:?}"),
            }
        }
        let found = Some((tested(), Some(record(RunState::Succeeded, "sha256:aa"))));
        assert_eq!(judge("stg", TAG, found), Verdict::Tested(tested()));
    }
}
