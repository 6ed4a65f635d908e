//! The Docker engine over TLS, as CircleCI's remote Docker serves it.

use std::path::Path;

use crate::harness::*;

/// CircleCI's remote Docker is a TLS endpoint: berth builds with BuildKit (the default builder,
/// whose gRPC session rides an upgraded connection) and pushes through the sandbox's TLS front,
/// as after `setup_remote_docker`; without the certificates it stops before changing anything
/// (exit 4).
#[tokio::test(flavor = "multi_thread")]
async fn builds_with_buildkit_and_pushes_through_docker_over_tls() {
    let app = App::with_build("tls", "migrate = \"skip\"\n", "builder = \"buildkit\"\n");
    let host = app.var("BERTH_SANDBOX_DOCKER_TLS_HOST");
    let certs = app.var("BERTH_SANDBOX_DOCKER_CERT_PATH");
    // A deploy through the TLS front, with the certificates in `folder`.
    let over_tls = |folder: &str| {
        app.deploy_with(
            &[],
            &[
                ("DOCKER_HOST", &host),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", folder),
            ],
        )
    };
    let before = app.service_task_definitions().await;

    let missing = tempfile::tempdir().unwrap();
    let counted = app.counters();
    let without = over_tls(missing.path().to_str().unwrap());
    assert_eq!(without.code, Some(4), "{}", without.stderr);
    assert!(
        without
            .stderr
            .contains("error: `DOCKER_TLS_VERIFY` is set, but `"),
        "{}",
        without.stderr
    );
    assert!(without.stderr.contains("ca.pem"));
    app.counters().assert_none_since(&counted, CHANGES);
    assert_eq!(app.service_task_definitions().await, before);

    // The wrong CA: the engine's certificate is not signed by this `ca.pem`.
    let wrong = tempfile::tempdir().unwrap();
    for file in ["cert.pem", "key.pem"] {
        fs_err::copy(Path::new(&certs).join(file), wrong.path().join(file)).unwrap();
    }
    fs_err::copy(
        Path::new(&certs).join("cert.pem"),
        wrong.path().join("ca.pem"),
    )
    .unwrap();
    let untrusted = over_tls(wrong.path().to_str().unwrap());
    assert_eq!(untrusted.code, Some(4), "{}", untrusted.stderr);
    assert!(
        untrusted.stderr.contains(&format!(
            "error: cannot reach the Docker engine at `{host}` over TLS"
        )),
        "{}",
        untrusted.stderr
    );
    assert!(
        untrusted
            .stderr
            .contains("hint: `DOCKER_CERT_PATH` must hold")
    );
    app.counters().assert_none_since(&counted, CHANGES);

    let seeded = app.counters();
    let run = over_tls(&certs);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("build: done"), "built over TLS");
    // BuildKit's own progress (its vertices) came back through the TLS front.
    assert!(
        run.stderr.contains("with the BuildKit builder"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("build | [internal] load remote build context"),
        "{}",
        run.stderr
    );
    assert_eq!(app.counters().pushes, seeded.pushes + 1);
    assert_ne!(app.service_task_definitions().await, before);
}
