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

/// `stg` says which account it lives in: prd, in another, names stg's state bucket by it.
fn in_first_account(app: &App) {
    app.edit_config(|config| {
        config.replace(
            "[env.stg]\n",
            &format!("[env.stg]\naccount = \"{ACCOUNT}\"\n"),
        )
    });
}

/// A step of a run, as `--output json` lists it.
fn step(run: &Run, name: &str) -> serde_json::Value {
    let steps = run.json()["steps"].as_array().cloned().unwrap_or_default();
    steps
        .into_iter()
        .find(|s| s["step"] == name)
        .unwrap_or_default()
}

/// stg in one account, prd in another with `promote_from = "stg"`: prd builds nothing, copies
/// stg's image by digest into its own registry and pins it there; a rerun copies nothing.
#[tokio::test(flavor = "multi_thread")]
async fn prd_in_another_account_copies_the_image_stg_ran_by_digest() {
    let mut app = App::create("accounts", "migrate = \"skip\"\n", "", &["stg"]);
    in_first_account(&app);
    let prd_at = (SECOND_ACCOUNT, "us-east-1");
    app.seed_elsewhere("prd", prd_at, "promote_from = \"stg\"");
    let seeded = app.counters();
    let stg = app.deploy(&[]);
    assert_eq!(stg.code, Some(0), "{}", stg.stderr);
    app.share_with((ACCOUNT, "us-east-1"), SECOND_ACCOUNT).await;
    let image = stg.json()["image"].clone();
    let (tag, digest) = (
        image["tag"].as_str().unwrap(),
        image["digest"].as_str().unwrap(),
    );
    let stored = format!("{SECOND_ACCOUNT}/us-east-1/{}", app.name);

    let prd = app.deploy_with(&["--env", "prd"], IN_SECOND_ACCOUNT);
    assert_eq!(prd.code, Some(0), "{}", prd.stderr);
    assert_eq!(step(&prd, "promote")["status"], "done");
    prd.assert_skipped(&["build", "push"]);
    let report = prd.json();
    assert_eq!(report["image"]["digest"], digest, "the digest stg ran");
    let repository = app.repository_in(prd_at).await;
    assert_eq!(
        report["image"]["uri"],
        format!("{repository}@{digest}").as_str(),
        "pinned in prd's own registry"
    );
    assert_ne!(
        repository.split('/').next(),
        image["uri"].as_str().unwrap().split('/').next()
    );
    assert_eq!(
        app.web_image_in(prd_at, "prd").await,
        format!("{repository}@{digest}")
    );
    let copied = &report["promoted"]["copied"];
    assert!(copied["blobs_copied"].as_u64().unwrap() >= 2, "{copied}");
    assert_eq!(copied["manifests"], 1);
    assert_eq!(
        app.manifest_pushes(&stored, tag),
        1,
        "one manifest in prd's registry"
    );
    assert_eq!(app.counters().pushes, seeded.pushes + 1, "one build, stg's");

    let again = app.deploy_with(&["--env", "prd", "--new"], IN_SECOND_ACCOUNT);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(step(&again, "promote")["status"], "skipped");
    assert!(
        again.json()["promoted"]["copied"].is_null(),
        "nothing copied"
    );
    assert_eq!(
        app.manifest_pushes(&stored, tag),
        1,
        "a rerun copies nothing"
    );
}

/// `promotion = "reference"`: prd pins stg's registry by digest. Without a repository policy
/// that lets prd's account pull, the deploy stops before any change and names the policy; with
/// it, prd runs stg's image from stg's registry.
#[tokio::test(flavor = "multi_thread")]
async fn a_reference_needs_a_repository_policy_that_lets_prd_pull() {
    let mut app = App::create("reference", "migrate = \"skip\"\n", "", &["stg"]);
    in_first_account(&app);
    let prd_at = (SECOND_ACCOUNT, "us-east-1");
    app.seed_elsewhere(
        "prd",
        prd_at,
        "promote_from = \"stg\"\npromotion = \"reference\"",
    );
    let stg = app.deploy(&[]);
    assert_eq!(stg.code, Some(0), "{}", stg.stderr);
    app.share_with((ACCOUNT, "us-east-1"), SECOND_ACCOUNT).await;
    // The records shared, the pull not: the repository policy says nothing of prd's account.
    aws_sdk_ecr::Client::new(&app.config_in(ACCOUNT, "us-east-1").await)
        .delete_repository_policy()
        .repository_name(&app.name)
        .send()
        .await
        .unwrap();
    let before = app.web_image_in(prd_at, "prd").await;

    let refused = app.deploy_with(&["--env", "prd"], IN_SECOND_ACCOUNT);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    let error = refused.error_line();
    assert!(error.contains("`prd` may not pull `"), "{error}");
    assert!(
        error.contains("DENIED") || error.contains("not authorized"),
        "{error}"
    );
    assert!(
        refused.stderr.contains("repository policy"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        app.web_image_in(prd_at, "prd").await,
        before,
        "prd unchanged"
    );
    let prd_state = aws_sdk_s3::Client::new(&app.config_in(SECOND_ACCOUNT, "us-east-1").await)
        .list_objects_v2()
        .bucket(format!("berth-state-{SECOND_ACCOUNT}-us-east-1"))
        .prefix(format!("{}/prd/", app.name))
        .send()
        .await;
    let written = prd_state.map_or(0, |listed| listed.contents().len());
    assert_eq!(written, 0, "no state written in prd's account");

    app.allow_pull((ACCOUNT, "us-east-1"), SECOND_ACCOUNT).await;
    let prd = app.deploy_with(&["--env", "prd"], IN_SECOND_ACCOUNT);
    assert_eq!(prd.code, Some(0), "{}", prd.stderr);
    let pinned = stg.json()["image"]["uri"].as_str().unwrap().to_owned();
    assert_eq!(
        prd.json()["image"]["uri"],
        pinned.as_str(),
        "stg's registry, by digest"
    );
    assert_eq!(app.web_image_in(prd_at, "prd").await, pinned);
    prd.assert_skipped(&["promote", "build", "push"]);
}

/// prd in a second region of the same account: the copy crosses regions, and a rerun copies
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_region_gets_the_image_copied_once() {
    let mut app = App::create("region", "migrate = \"skip\"\n", "", &["stg"]);
    let prd_at = (ACCOUNT, SECOND_REGION);
    app.seed_elsewhere("prd", prd_at, "promote_from = \"stg\"");
    let stg = app.deploy(&[]);
    assert_eq!(stg.code, Some(0), "{}", stg.stderr);
    let digest = stg.json()["image"]["digest"].as_str().unwrap().to_owned();
    let tag = stg.json()["image"]["tag"].as_str().unwrap().to_owned();

    let planned = app.run("plan", &["--env", "prd"], &[]);
    assert_eq!(planned.code, Some(0), "{}", planned.stderr);
    assert!(
        planned.stderr.contains("same image as `stg` deploy"),
        "{}",
        planned.stderr
    );
    let would = &planned.json()["image"]["promotion"];
    assert_eq!(would["source"], stg.json()["image"]["uri"], "{would}");
    assert!(
        would["copy"]["blobs_copied"].as_u64().unwrap() >= 2,
        "{would}"
    );
    assert_eq!(would["copy"]["manifests"], 1);

    let prd = app.deploy(&["--env", "prd"]);
    assert_eq!(prd.code, Some(0), "{}", prd.stderr);
    let repository = app.repository_in(prd_at).await;
    assert!(repository.contains(':'), "{repository}");
    assert_eq!(
        prd.json()["image"]["uri"],
        format!("{repository}@{digest}").as_str()
    );
    let stored = format!("{ACCOUNT}/{SECOND_REGION}/{}", app.name);
    assert_eq!(app.manifest_pushes(&stored, &tag), 1);
    let again = app.deploy(&["--env", "prd", "--new"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(step(&again, "promote")["status"], "skipped");
    assert_eq!(
        app.manifest_pushes(&stored, &tag),
        1,
        "a rerun copies nothing"
    );
}
