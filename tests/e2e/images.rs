//! The image a deploy names: promoted from `stg` to `prd` unbuilt, and its environment tag.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_env_tag_that_cannot_be_moved_is_a_warning_and_the_deploy_succeeds() {
    let app = App::new("envtag", "env_tag = \"stg-latest\"\nmigrate = \"skip\"\n");
    let before = app.service_task_definitions().await;
    // Every attempt at the tag move fails; the build's push goes to the registry, not PutImage.
    app.fault(serde_json::json!({
        "service": "ecr", "operation": "PutImage", "error": "500", "first": 10
    }));
    let run = app.deploy(&[]);
    assert_eq!(run.code, Some(0), "the deploy landed");
    assert!(
        run.stderr
            .contains("warning: the deploy landed, but tag `stg-latest` was not moved"),
        "{}",
        run.stderr
    );
    let warnings = run.json()["warnings"].clone();
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.contains("`stg-latest`")),
        "{warnings}"
    );
    assert_ne!(
        app.service_task_definitions().await,
        before,
        "services are on the new revisions"
    );
}

/// The image names a build, not a deploy: `prd` after `stg` with the same build settings promotes
/// the image without building or pushing it; other build args make another image.
#[tokio::test(flavor = "multi_thread")]
async fn a_prd_deploy_after_stg_promotes_the_same_image() {
    let app = App::create("promote", "migrate = \"skip\"\n", "", &["stg", "prd"]);
    let seeded = app.counters();
    let stg = app.deploy(&[]);
    assert_eq!(stg.code, Some(0));
    let stg_image = stg.json()["image"].clone();
    assert_eq!(app.counters().pushes, seeded.pushes + 1);

    let prd = app.rerun_without(&["--env", "prd"], &["ecr:GetAuthorizationToken"]);
    assert_eq!(prd.code, Some(0));
    prd.assert_skipped(&["build", "push"]);
    assert_eq!(prd.json()["image"], stg_image, "the same tag and digest");
    assert_ne!(
        prd.json()["deploy_id"],
        stg.json()["deploy_id"],
        "another deploy"
    );

    app.edit_config(|config| {
        format!("{config}[env.prd.build]\nargs = {{ RAILS_LOG_LEVEL = \"warn\" }}\n")
    });
    let other = app.deploy(&["--env", "prd"]);
    assert_eq!(other.code, Some(0));
    assert_ne!(
        other.json()["image"]["tag"],
        stg_image["tag"],
        "other build args, another image"
    );
    assert_eq!(app.counters().pushes, seeded.pushes + 2);
}
