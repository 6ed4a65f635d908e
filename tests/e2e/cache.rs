//! The build cache on an empty engine: taken from ECR, with BuildKit and with the classic builder.

use serde_json::{Value, json};

use crate::harness::*;

/// A fresh CI machine has none of the app's images and no build cache. The build takes its
/// cached steps from ECR: from the image the service runs, and from the cache image of the
/// `assets` stage, which the image itself only copies from. It says what was cached and what
/// ran, and `[build] cache = false` builds without.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_on_an_empty_engine_takes_its_cache_from_ecr() {
    let app = App::with_build("cache", "migrate = \"skip\"\n", "cache = true\n");
    // Gems of this test alone: no other test's build can leave their steps in the engine.
    let lock = app.dir.path().join("Gemfile.lock");
    let gems = fs_err::read_to_string(&lock).unwrap();
    fs_err::write(&lock, format!("{gems}# {}\n", app.name)).unwrap();
    mark_runs(&app);
    app.commit("gems of this test");
    // The base stage's records, which every test's build shares, are in here: they stay.
    let others = build_cache();

    let cold = app.deploy(&[]);
    assert_eq!(cold.code, Some(0), "{}", cold.stderr);
    let build = &cold.json()["build"];
    let steps = |build: &Value| {
        build["steps_cached"].as_u64().unwrap() + build["steps_run"].as_u64().unwrap()
    };
    // Nine steps; the gems' and the assets' ran (only `WORKDIR` may be in the engine already).
    assert_eq!(steps(build), 9, "{build}");
    assert!(build["steps_run"].as_u64().unwrap() >= 8, "{build}");
    assert_eq!(build["cache_images"], json!(["berth-cache-stg-assets"]));
    assert_eq!(app.counters().cache_pushes, 1);

    // A one-line change, built on an empty engine.
    let model = app.dir.path().join("app/models/user.rb");
    let code = fs_err::read_to_string(&model).unwrap();
    fs_err::write(&model, format!("{code}# one line\n")).unwrap();
    app.commit("one line");
    empty_engine(&app.name, &others);
    let warm = app.deploy(&[]);
    assert_eq!(warm.code, Some(0), "{}", warm.stderr);
    let build = &warm.json()["build"];
    let cache_from = build["cache_from"].as_array().unwrap();
    assert_eq!(
        cache_from[0],
        cold.json()["image"]["uri"],
        "first the image `web` runs: {build}"
    );
    assert!(
        cache_from[1]
            .as_str()
            .unwrap()
            .starts_with(&format!("127.0.0.1:5055/{}@sha256:", app.name)),
        "then the stage cache image: {build}"
    );
    // Every step of `gems` and `assets` and the COPY of the gems came from the cache; the
    // changed code, the COPY of the assets after it and the last RUN ran.
    assert_eq!(build["steps_cached"], 6, "{build}");
    assert_eq!(build["steps_run"], 3, "{build}");
    assert!(build["pulled_bytes"].as_u64().unwrap() > 0, "{build}");
    for step in ["[gems 2/2] RUN", "[assets 2/2] RUN"] {
        assert!(
            warm.stderr
                .lines()
                .any(|line| line.contains(step) && line.ends_with("(cached)")),
            "{step} cached:\n{}",
            warm.stderr
        );
    }
    assert!(
        warm.stderr.contains("build: done") && warm.stderr.contains("6 cached, 3 run"),
        "{}",
        warm.stderr
    );
    // `assets` did not change: its cache image stays as it is.
    assert_eq!(build.get("cache_images"), None, "{build}");
    assert_eq!(app.counters().cache_pushes, 1);

    app.edit_config(|config| config.replace("cache = true", "cache = false"));
    fs_err::write(&model, format!("{code}# another line\n")).unwrap();
    app.commit("no cache");
    empty_engine(&app.name, &others);
    let off = app.deploy(&[]);
    assert_eq!(off.code, Some(0), "{}", off.stderr);
    let build = &off.json()["build"];
    assert_eq!(build["cache_from"], json!([]), "{build}");
    assert!(
        off.stderr
            .lines()
            .any(|line| line.contains("[gems 2/2] RUN") && !line.ends_with("(cached)")),
        "the gems ran again:\n{}",
        off.stderr
    );
    assert!(off.stderr.contains("cache: off"), "{}", off.stderr);
}

/// The classic builder reuses only images the engine has: berth pulls the image `web` ran, with
/// ECR's login (the sandbox's registry refuses an anonymous pull), reports what the pull took,
/// and names the stages that rebuild, since that builder keeps no stage image. (Here those are
/// all the steps that could hit: the final stage copies from both.)
#[tokio::test(flavor = "multi_thread")]
async fn the_classic_builder_pulls_its_cache_source_with_ecrs_login() {
    let app = App::with_build(
        "classic",
        "migrate = \"skip\"\n",
        "cache = true\nbuilder = \"classic\"\n",
    );
    // An image of this test's own first: the seed's image shares its layers with every other
    // test's seed, so the engine would keep them and a pull of it would move no bytes.
    let cold = app.deploy(&[]);
    assert_eq!(cold.code, Some(0), "{}", cold.stderr);
    assert!(
        cold.stderr.contains(
            "cache: no cache image of stage `assets` (the classic builder keeps no cache of it): \
             `assets`, `gems` rebuild on an empty engine"
        ),
        "{}",
        cold.stderr
    );
    assert_eq!(cold.json()["build"].get("cache_images"), None);
    assert_eq!(app.counters().cache_pushes, 0, "no stage image");

    // No task may hold the image, so that removing it leaves the engine without it.
    app.stop_services().await;
    let model = app.dir.path().join("app/models/user.rb");
    let code = fs_err::read_to_string(&model).unwrap();
    fs_err::write(&model, format!("{code}# one line\n")).unwrap();
    app.commit("one line");
    // Not BuildKit's cache: pruning it would cut other tests' builds short.
    remove_images(&app.name);
    let ran = cold.json()["image"]["uri"].as_str().unwrap().to_owned();
    let inspected = std::process::Command::new("docker")
        .args(["image", "inspect", &ran])
        .output()
        .unwrap();
    assert!(
        !inspected.status.success(),
        "the engine no longer has `{ran}`"
    );

    let warm = app.deploy(&[]);
    assert_eq!(warm.code, Some(0), "{}", warm.stderr);
    let build = &warm.json()["build"];
    assert_eq!(build["cache_from"][0], ran.as_str(), "{build}");
    assert!(
        warm.stderr
            .contains(&format!("cache from `{ran}`: pulled ")),
        "{}",
        warm.stderr
    );
    assert!(!warm.stderr.contains("left out"), "{}", warm.stderr);
    assert!(build["pulled_bytes"].as_u64().unwrap() > 0, "{build}");
}

/// Removes the app's images and its build cache, as on a fresh CI machine. Only this app's
/// records go: other tests build beside it, and their cache is theirs. The sandbox's base images
/// stay: nothing can be pulled from outside here.
fn empty_engine(app: &str, others: &BuildCache) {
    remove_images(app);
    loop {
        let cache = build_cache();
        let ours = cache.of(app, others);
        if ours.is_empty() {
            return;
        }
        // Deepest first: a record goes only once nothing is built on it.
        for id in &ours {
            let pruned = std::process::Command::new("docker")
                .args(["builder", "prune", "-af", "--filter"])
                .arg(format!("id={id}"))
                .output()
                .unwrap();
            assert!(pruned.status.success(), "{}", text(&pruned.stderr));
        }
        let left = build_cache().of(app, others);
        println!(
            "--- build cache of `{app}`: {} record(s) pruned, {} left",
            ours.len().saturating_sub(left.len()),
            left.len()
        );
        if left.len() == ours.len() {
            // What is left is held: by a build under way, or as the parent of another's step.
            let named: Vec<&String> = left.iter().filter(|id| cache.names(id, app)).collect();
            assert!(
                named.is_empty(),
                "the engine keeps `{app}`'s steps {named:?}"
            );
            return;
        }
    }
}

/// Appends the app's name to each `RUN` of its Dockerfile, as a shell comment: BuildKit's cache
/// records of those steps carry it in their descriptions, and so can be told from other tests'.
fn mark_runs(app: &App) {
    let path = app.dir.path().join("Dockerfile");
    let mut run = false;
    let mut marked = String::new();
    for line in fs_err::read_to_string(&path).unwrap().lines() {
        run = run || line.starts_with("RUN ");
        marked.push_str(line);
        if run && !line.ends_with('\\') {
            marked.push_str(&format!(" # {}", app.name));
            run = false;
        }
        marked.push('\n');
    }
    fs_err::write(&path, marked).unwrap();
}

/// The engine's build cache records: each one's parent and description, by id.
struct BuildCache(std::collections::BTreeMap<String, (String, String)>);

fn build_cache() -> BuildCache {
    let listed = std::process::Command::new("docker")
        .args(["system", "df", "-v", "--format", "{{json .BuildCache}}"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let records: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let field = |record: &Value, key: &str| record[key].as_str().unwrap_or_default().to_owned();
    BuildCache(
        records
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    field(r, "ID"),
                    (field(r, "Parent"), field(r, "Description")),
                )
            })
            .collect(),
    )
}

impl BuildCache {
    /// The record `id` names `app`: one of its marked `RUN`s, or a layer pulled from its
    /// repository.
    fn names(&self, id: &str, app: &str) -> bool {
        self.0.get(id).is_some_and(|(_, said)| said.contains(app))
    }

    /// The records of `app`'s steps, deepest first: those that name it, what was built on them, and
    /// what they were built on but the base stage's, which were in the engine before (`others`).
    fn of(&self, app: &str, others: &BuildCache) -> Vec<String> {
        let mut ours: Vec<String> = self
            .0
            .keys()
            .filter(|id| self.names(id, app))
            .cloned()
            .collect();
        // Down from each: what was built on it.
        let mut at = 0;
        while at < ours.len() {
            let children: Vec<String> = (self.0.iter())
                .filter(|(id, (parent, _))| *parent == ours[at] && !ours.contains(id))
                .map(|(id, _)| id.clone())
                .collect();
            ours.extend(children);
            at += 1;
        }
        // Up from each: what it was built on, as far as the base stage's records (others build on
        // those too, so never down from them).
        for at in 0..ours.len() {
            let mut id = ours[at].clone();
            while let Some((parent, _)) = self.0.get(&id) {
                if !self.0.contains_key(parent) || others.0.contains_key(parent) {
                    break;
                }
                if !ours.contains(parent) {
                    ours.push(parent.clone());
                }
                id = parent.clone();
            }
        }
        // Deepest first, so that each round prunes a record before its parent.
        let depth = |id: &String| {
            std::iter::successors(Some(id), |id| self.0.get(*id).map(|(p, _)| p))
                .take_while(|id| self.0.contains_key(*id))
                .count()
        };
        ours.sort_by_key(|id| std::cmp::Reverse(depth(id)));
        ours
    }
}

/// Removes the app's images (the classic builder's cache is in them, and in their parents).
fn remove_images(app: &str) {
    let listed = std::process::Command::new("docker")
        .args(["image", "ls", "-q", "--filter"])
        .arg(format!("reference=127.0.0.1:5055/{app}"))
        .output()
        .unwrap();
    let ids: Vec<String> = text(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    // An image a running task uses stays (its layers then need no pull); the rest go.
    for id in ids {
        let _ = std::process::Command::new("docker")
            .args(["image", "rm", "-f", &id])
            .output();
    }
}
