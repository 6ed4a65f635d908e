//! Which stage cache images a build leaves stale, pure.

use std::collections::BTreeSet;

use crate::steps::image::cache::{CacheStage, Plan};

/// The stage images to build and push after the image: those not in ECR yet, and those with a
/// step that ran (their cache is new).
pub fn stale<'a>(plan: &'a Plan, ran_stages: &BTreeSet<String>) -> Vec<&'a CacheStage> {
    plan.stages
        .iter()
        .filter(|stage| !stage.exists || stage.lineage.iter().any(|s| ran_stages.contains(s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::stale;
    use crate::steps::image::cache::Plan;
    use crate::steps::image::cache::tests::stage;

    #[test]
    fn a_stage_image_is_rebuilt_when_missing_or_when_a_step_of_its_lineage_ran() {
        let plan = Plan {
            stages: vec![
                stage("assets", &["assets", "gems", "base"], true),
                stage("docs", &["docs", "base"], false),
                stage("tools", &["tools"], true),
            ],
            ..Plan::default()
        };
        let rows: [(&str, &[&str], &[&str]); 4] = [
            ("nothing ran: only the missing one", &[], &["docs"]),
            ("the final stage ran", &["release"], &["docs"]),
            (
                "a gems step ran: assets is built from gems",
                &["gems"],
                &["assets", "docs"],
            ),
            (
                "base ran: every stage built from it",
                &["base"],
                &["assets", "docs"],
            ),
        ];
        for (case, ran, want) in rows {
            let ran: BTreeSet<String> = ran.iter().map(|s| (*s).to_owned()).collect();
            let got: Vec<&str> = stale(&plan, &ran).iter().map(|s| s.name.as_str()).collect();
            assert_eq!(got, want, "{case}");
        }
    }
}
