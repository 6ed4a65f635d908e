//! What names an image and where it may go: the build context's tree names it, so a merge commit
//! reuses what `stg` ran; `requires` lets into `prd` only an image `stg` ran successfully.

use crate::harness::*;

/// The example's Dockerfile without `ARG BERTH_GIT_SHA`: the commit is not in the image, and the
/// build context's tree names it.
fn without_the_commit(app: &App) {
    let path = app.dir.path().join("Dockerfile");
    let dockerfile = fs_err::read_to_string(&path).unwrap();
    let dockerfile = dockerfile
        .replace("ARG BERTH_GIT_SHA=unknown\n", "")
        .replace("echo \"$BERTH_GIT_SHA\"", "echo tree");
    fs_err::write(&path, dockerfile).unwrap();
    app.commit("the image does not hold the commit");
}

/// develop → stg, master → prd with merge commits: the merge's tree is what `stg` ran, so `prd`
/// takes `stg`'s image unbuilt; a merge whose tree differs (a hotfix on master) builds.
#[tokio::test(flavor = "multi_thread")]
async fn a_merge_commit_with_the_tree_stg_ran_reuses_its_image() {
    let app = App::create("tree", "migrate = \"skip\"\n", "", &["stg", "prd"]);
    without_the_commit(&app);
    app.git(&["checkout", "-q", "-b", "develop"]);
    fs_err::write(app.dir.path().join("app/feature.txt"), "a feature\n").unwrap();
    app.commit("a feature");
    let seeded = app.counters();
    let stg = app.deploy(&[]);
    assert_eq!(stg.code, Some(0), "{}", stg.stderr);
    let stg_image = stg.json()["image"].clone();
    let tag = stg_image["tag"].as_str().unwrap().to_owned();
    assert!(tag.starts_with("tree-"), "named by the tree: {tag}");
    assert!(stg.stderr.contains("is named by the build context's tree"));
    assert_eq!(app.counters().pushes, seeded.pushes + 1);

    app.git(&["checkout", "-q", "main"]);
    app.git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "merge develop",
        "develop",
    ]);
    let prd = app.deploy(&["--env", "prd"]);
    assert_eq!(prd.code, Some(0), "{}", prd.stderr);
    prd.assert_skipped(&["build", "push"]);
    assert_eq!(prd.json()["image"], stg_image, "the same tag and digest");
    assert_ne!(prd.json()["commit"], stg.json()["commit"], "a merge commit");
    assert_eq!(app.counters().pushes, seeded.pushes + 1, "nothing pushed");
    let id = prd.json()["deploy_id"].as_str().unwrap().to_owned();
    let record = app.state_object("prd", &format!("deploys/{id}.json")).await;
    assert_eq!(
        record.unwrap()["commit"],
        prd.json()["commit"],
        "the record names the merge"
    );

    fs_err::write(app.dir.path().join("app/hotfix.txt"), "a hotfix\n").unwrap();
    app.commit("a hotfix on master");
    let hotfix = app.deploy(&["--env", "prd"]);
    assert_eq!(hotfix.code, Some(0), "{}", hotfix.stderr);
    assert_ne!(
        hotfix.json()["image"]["tag"],
        stg_image["tag"],
        "another tree"
    );
    assert_eq!(app.counters().pushes, seeded.pushes + 2, "built and pushed");
}

/// `requires = "stg"`: `prd` refuses an image `stg` never ran (exit 2, nothing written anywhere);
/// once `stg` ran it, `prd` names that deploy; `--force` deploys an untested one with a warning.
#[tokio::test(flavor = "multi_thread")]
async fn prd_requires_a_successful_stg_deploy_of_the_image_unless_forced() {
    let app = App::create("guard", "migrate = \"skip\"\n", "", &["stg", "prd"]);
    app.edit_config(|config| config.replace("[env.prd]\n", "[env.prd]\nrequires = \"stg\"\n"));
    let before = app.snapshot().await;
    let refused = app.deploy(&["--env", "prd"]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    let error = refused.error_line();
    assert!(
        error.contains("`prd` takes an image only once `stg` deployed it, and `stg` has no successful deploy of image `"),
        "{error}"
    );
    assert!(
        refused
            .stderr
            .contains("hint: deploy this build to `stg` first")
    );
    assert!(refused.stderr.contains("`--force`"));
    assert_eq!(
        app.snapshot().await,
        before,
        "nothing was written, S3 included"
    );
    let planned = app.run("plan", &["--env", "prd"], &[]);
    assert_eq!(planned.code, Some(2), "a plan refuses as the deploy does");

    let stg = app.deploy(&[]);
    assert_eq!(stg.code, Some(0), "{}", stg.stderr);
    let stg_id = stg.json()["deploy_id"].as_str().unwrap().to_owned();
    let tag = stg.json()["image"]["tag"].as_str().unwrap().to_owned();
    let entry = app.state_object("stg", &format!("images/{tag}.json")).await;
    assert_eq!(
        entry.unwrap()["deploy_id"],
        stg_id.as_str(),
        "stg's index names its deploy"
    );

    let prd = app.deploy(&["--env", "prd"]);
    assert_eq!(prd.code, Some(0), "{}", prd.stderr);
    assert!(
        prd.stderr
            .contains(&format!("same image as `stg` deploy `{stg_id}` (tested ")),
        "{}",
        prd.stderr
    );
    assert_eq!(prd.json()["tested"]["deploy_id"], stg_id.as_str());
    assert_eq!(prd.json()["tested"]["env"], "stg");
    prd.assert_skipped(&["build", "push"]);

    fs_err::write(app.dir.path().join("app/untested.txt"), "untested\n").unwrap();
    app.commit("never deployed to stg");
    let untested = app.deploy(&["--env", "prd"]);
    assert_eq!(untested.code, Some(2), "{}", untested.stderr);
    let forced = app.deploy(&["--env", "prd", "--force"]);
    assert_eq!(forced.code, Some(0), "{}", forced.stderr);
    let warnings = forced.json()["warnings"].to_string();
    assert!(warnings.contains("untested (`--force`)"), "{warnings}");
    assert!(forced.json()["tested"].is_null());
}
