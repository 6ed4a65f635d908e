//! Build and push against the real local Docker engine and the sandbox registry
//! (`sandbox/sandboxctl start`): `127.0.0.1:5055`, base image `berth-sandbox/base:latest`.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use berth::report::Reporter;
use berth::settings::Builder;
use berth::steps::image::build::{BuildError, BuildRequest, build_image};
use berth::steps::image::context::ContextError;
use bollard::Docker;
use futures_util::TryStreamExt;

const BASE: &str = "berth-sandbox/base:latest";
const REGISTRY: &str = "127.0.0.1:5055";

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Reporter for Lines {
    fn step_started(&self, _: &str) {}
    fn step_finished(&self, _: &str, _: Duration) {}
    fn step_skipped(&self, _: &str, _: &str) {}
    fn info(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
    /// Build output as the engine wrote it, without the `build | ` prefix.
    fn output(&self, _: &str, line: &str) {
        self.info(line);
    }
}

impl Lines {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, text).unwrap();
}

fn request(context: &Path, tag: &str, builder: Builder) -> BuildRequest {
    BuildRequest {
        context: context.to_owned(),
        dockerfile: "Dockerfile".into(),
        target: None,
        platform: "linux/amd64".to_owned(),
        args: BTreeMap::new(),
        secret_args: BTreeMap::new(),
        labels: BTreeMap::new(),
        tag: tag.to_owned(),
        builder,
        cache: None,
        credentials: Default::default(),
    }
}

/// The engine, and a fresh context folder holding `dockerfile` as `Dockerfile`.
async fn context_with(dockerfile: &str) -> (Docker, tempfile::TempDir) {
    let docker = berth::docker::connect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", dockerfile);
    (docker, dir)
}

/// The labels of a local image.
async fn labels(docker: &Docker, image: &str) -> HashMap<String, String> {
    docker
        .inspect_image(image)
        .await
        .unwrap()
        .config
        .unwrap()
        .labels
        .unwrap()
}

/// Defeats the build cache, so `RUN` output shows on every run.
fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn remove_image(docker: &Docker, image: &str) {
    let options = bollard::query_parameters::RemoveImageOptionsBuilder::default()
        .force(true)
        .build();
    let _ = docker.remove_image(image, Some(options), None).await;
}

/// Files and symlinks under `/ctx` of `image`, read from an exported (never started) container.
async fn files_in_ctx(docker: &Docker, image: &str) -> BTreeSet<String> {
    let container = docker
        .create_container(
            None,
            bollard::models::ContainerCreateBody {
                image: Some(image.to_owned()),
                cmd: Some(vec!["true".to_owned()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let exported: Vec<u8> = docker
        .export_container(&container.id)
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await
        .unwrap();
    let options = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
        .force(true)
        .build();
    docker
        .remove_container(&container.id, Some(options))
        .await
        .unwrap();

    let mut archive = tar::Archive::new(exported.as_slice());
    archive
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .filter(|entry| entry.header().entry_type() != tar::EntryType::Directory)
        .filter_map(|entry| {
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            path.strip_prefix("ctx/").map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn built_image_holds_exactly_the_files_the_ignore_rules_allow() {
    let docker = berth::docker::connect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", &format!("FROM {BASE}\nCOPY . /ctx\n"));
    write(
        root,
        ".dockerignore",
        "Dockerfile\nlog\n!log/keep.log\n*.md\n!README.md\n**/*.key\ntmp\n",
    );
    write(root, "README.md", "sent");
    write(root, "CHANGELOG.md", "ignored");
    write(root, "app/main.rb", "puts :ok");
    write(root, "app/config/master.key", "ignored");
    write(root, "log/development.log", "ignored");
    write(root, "log/keep.log", "re-included");
    write(root, "tmp/cache/blob", "ignored");
    std::os::unix::fs::symlink("app/main.rb", root.join("main")).unwrap();
    // The Dockerfile is always sent (the builder reads it). The classic builder then drops it
    // from `COPY .` because a rule excludes it, as `docker build` does; BuildKit, given the
    // context as a tar, keeps it (docs/concepts.md).
    let expected: BTreeSet<String> = [
        ".dockerignore",
        "README.md",
        "app/main.rb",
        "log/keep.log",
        "main",
    ]
    .map(str::to_owned)
    .into();

    for builder in [Builder::Classic, Builder::BuildKit] {
        let tag = format!("berth-build-test:files-{builder:?}").to_lowercase();
        let mut request = request(root, &tag, builder);
        request
            .labels
            .insert("berth.test".to_owned(), "files".to_owned());
        let lines = Lines::default();
        let image = build_image(&docker, &request, &lines).await.unwrap();
        assert_eq!(
            image.context.files,
            expected.len() as u64 + 1,
            "{builder:?}"
        );

        let mut expected = expected.clone();
        if builder == Builder::BuildKit {
            expected.insert("Dockerfile".to_owned());
        }
        assert_eq!(
            files_in_ctx(&docker, &image.id).await,
            expected,
            "{builder:?}"
        );
        let inspect = docker.inspect_image(&tag).await.unwrap();
        assert_eq!(inspect.id.as_deref(), Some(image.id.as_str()));
        let labels = inspect.config.unwrap().labels.unwrap();
        assert_eq!(labels.get("berth.test").map(String::as_str), Some("files"));
        remove_image(&docker, &tag).await;
    }
}

#[tokio::test]
async fn a_failing_instruction_is_an_error_naming_the_step() {
    let (docker, dir) = context_with(&format!(
        "FROM {BASE}\nRUN echo before {}\nRUN exit 3\nRUN echo after\n",
        unique()
    ))
    .await;

    for (builder, step) in [
        (Builder::Classic, "Step 3/4 : RUN exit 3"),
        (Builder::BuildKit, "[3/4] RUN exit 3"),
    ] {
        let request = request(dir.path(), "berth-build-test:failing", builder);
        let lines = Lines::default();
        let error = build_image(&docker, &request, &lines).await.unwrap_err();
        let BuildError::Instruction {
            step: failed,
            message,
        } = &error
        else {
            panic!("{builder:?}: {error:?}");
        };
        assert_eq!(failed, step, "{builder:?}");
        assert!(message.contains('3'), "{builder:?}: {message}");
        assert!(
            lines.all().iter().any(|line| line.starts_with("before ")),
            "{builder:?}: {:?}",
            lines.all()
        );
    }
}

#[tokio::test]
async fn secret_build_arg_values_never_reach_the_reporter() {
    let (docker, dir) = context_with(&format!(
        "FROM {BASE}\nARG TOKEN\nARG PUBLIC\nRUN echo \"token=$TOKEN public=$PUBLIC\" # {}\n",
        unique()
    ))
    .await;
    let secret = "s3cr3t-value-42";

    for builder in [Builder::Classic, Builder::BuildKit] {
        let tag = format!("berth-build-test:secret-{builder:?}").to_lowercase();
        let mut request = request(dir.path(), &tag, builder);
        request
            .secret_args
            .insert("TOKEN".to_owned(), secret.to_owned());
        request.args.insert("PUBLIC".to_owned(), "shown".to_owned());
        let lines = Lines::default();
        build_image(&docker, &request, &lines).await.unwrap();
        let lines = lines.all();
        assert!(
            lines.iter().all(|line| !line.contains(secret)),
            "{builder:?}: {lines:?}"
        );
        assert!(
            lines.iter().any(|line| line == "token=*** public=shown"),
            "{builder:?}: {lines:?}"
        );
        remove_image(&docker, &tag).await;
    }
}

#[tokio::test]
async fn a_multi_stage_target_builds_with_the_classic_builder() {
    let (docker, dir) = context_with(&format!(
        "FROM {BASE} AS first\nLABEL stage=first\n\nFROM {BASE} AS second\nLABEL stage=second\n"
    ))
    .await;
    let tag = "berth-build-test:target";
    let mut request = request(dir.path(), tag, Builder::Classic);
    request.target = Some("first".to_owned());
    build_image(&docker, &request, &Lines::default())
        .await
        .unwrap();
    let labels = labels(&docker, tag).await;
    assert_eq!(labels.get("stage").map(String::as_str), Some("first"));
    remove_image(&docker, tag).await;
}

/// sysfs files claim 4096 bytes and hold fewer, so the walk fails part way through the upload.
#[tokio::test]
async fn an_unreadable_context_file_beats_the_engine_complaint() {
    let root = Path::new("/sys/kernel/mm/transparent_hugepage");
    if !root.join("hpage_pmd_size").exists() {
        return;
    }
    let docker = berth::docker::connect().await.unwrap();
    let mut request = request(root, "berth-build-test:unreadable", Builder::Classic);
    request.dockerfile = "hpage_pmd_size".into();
    let error = build_image(&docker, &request, &Lines::default())
        .await
        .unwrap_err();
    let BuildError::Context(ContextError::Read { path, .. }) = &error else {
        panic!("{error:?}");
    };
    assert!(path.starts_with(root), "{error:?}");
}

#[tokio::test]
async fn a_built_image_is_pushed_to_the_registry() {
    let registry_up = tokio::net::TcpStream::connect(REGISTRY).await.is_ok();
    assert!(
        registry_up,
        "no registry at {REGISTRY}: start the sandbox with `sandbox/sandboxctl start`"
    );
    let nanos = unique();
    let (docker, dir) = context_with(&format!("FROM {BASE}\nRUN echo {nanos} > /built\n")).await;
    let repository = format!("{REGISTRY}/berth-build-test");
    let tag = format!("push-{nanos}");
    let reference = format!("{repository}:{tag}");
    build_image(
        &docker,
        &request(dir.path(), &reference, Builder::Auto),
        &Lines::default(),
    )
    .await
    .unwrap();

    // The registry takes ECR's login only, as ECR's does.
    let login = ecr_login(&repository).await;
    let password = login.password.clone();
    let credentials = bollard::auth::DockerCredentials {
        username: Some(login.username),
        password: Some(login.password),
        serveraddress: Some(login.host),
        ..Default::default()
    };
    let lines = Lines::default();
    let pushed =
        berth::steps::image::push::push_image(&docker, &repository, &tag, credentials, &lines)
            .await
            .unwrap();
    let lines = lines.all();
    assert!(
        pushed
            .digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{pushed:?}"
    );
    assert_eq!(
        pushed.layers_pushed + pushed.layers_existing,
        2,
        "{lines:?}"
    );
    assert!(pushed.layers_pushed >= 1, "{lines:?}");
    assert!(
        lines.iter().all(|line| !line.contains(&password)),
        "{lines:?}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|line| line.starts_with(&format!("pushed `{reference}` (sha256:"))),
        "{lines:?}"
    );
    remove_image(&docker, &reference).await;
}

/// The sandbox ECR's registry login (`AWS_ENDPOINT_URL` points at the sandbox).
/// ECR's login for `repository`, made in ECR first if need be: the registry takes pushes only to
/// repositories ECR has, as ECR's does.
async fn ecr_login(repository: &str) -> berth::aws::ecr::RegistryLogin {
    let config = berth::aws::sdk_config_for("us-east-1", None, 3600)
        .await
        .unwrap();
    let ecr = aws_sdk_ecr::Client::new(&config);
    let repository = berth::aws::ecr::Repository {
        name: repository.rsplit('/').next().unwrap().to_owned(),
        uri: repository.to_owned(),
    };
    let created = ecr
        .create_repository()
        .repository_name(&repository.name)
        .send()
        .await;
    if let Err(error) = created {
        let exists = error
            .as_service_error()
            .is_some_and(|e| e.is_repository_already_exists_exception());
        assert!(exists, "{error:?}");
    }
    berth::aws::ecr::login(&ecr, &repository).await.unwrap()
}

#[tokio::test]
async fn pushing_a_missing_image_names_it() {
    let docker = berth::docker::connect().await.unwrap();
    let repository = format!("{REGISTRY}/berth-build-test");
    let error = berth::steps::image::push::push_image(
        &docker,
        &repository,
        "never-built",
        bollard::auth::DockerCredentials::default(),
        &Lines::default(),
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("`{repository}:never-built`")),
        "{error}"
    );
}
