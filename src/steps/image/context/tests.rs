#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;

use super::*;

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, text).unwrap();
}

/// Entry paths of the tar, folders with a trailing `/`, in tar order.
fn entries(context: &BuildContext) -> Vec<String> {
    let mut tar = Vec::new();
    context.write_tar(&mut tar).unwrap();
    let mut archive = tar::Archive::new(tar.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            entry.path().unwrap().to_string_lossy().into_owned()
        })
        .collect()
}

#[test]
fn dockerignore_rules_decide_the_entries_and_the_dockerfile_is_always_sent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        ".dockerignore",
        "# build output\nlog/*\n!log/keep.log\nvendor\n!vendor/cache/keep.gem\ntmp\n*.md\n!README.md\nDockerfile\n.dockerignore\napp/*.key\n",
    );
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "README.md", "read me");
    write(root, "NOTES.md", "not sent");
    write(root, "app/main.rb", "puts 1");
    write(root, "app/secret.key", "not sent");
    write(root, "log/a.log", "not sent");
    write(root, "log/keep.log", "kept");
    write(root, "tmp/cache/blob", "not sent");
    write(
        root,
        "vendor/cache/keep.gem",
        "re-included inside an excluded folder",
    );
    write(root, "vendor/cache/other.gem", "not sent");
    write(root, "vendor/readme.txt", "not sent");
    std::os::unix::fs::symlink("app/main.rb", root.join("link")).unwrap();

    let context = BuildContext::new(root, Path::new("Dockerfile"), true).unwrap();
    assert_eq!(
        context.ignore_file(),
        Some(root.join(".dockerignore").as_path())
    );
    assert_eq!(
        entries(&context),
        [
            ".dockerignore",
            "Dockerfile",
            "README.md",
            "app/",
            "app/main.rb",
            "link",
            "log/",
            "log/keep.log",
            "vendor/cache/keep.gem",
        ]
    );
}

#[test]
fn the_dockerfile_specific_ignore_file_takes_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".dockerignore", "public\n");
    write(root, "docker/app.Dockerfile", "FROM scratch\n");
    write(
        root,
        "docker/app.Dockerfile.dockerignore",
        "secret\ndocker\n",
    );
    write(
        root,
        "public/index.html",
        "sent: only .dockerignore excludes it",
    );
    write(root, "secret/key", "not sent");

    let context = BuildContext::new(root, Path::new("docker/app.Dockerfile"), true).unwrap();
    assert_eq!(
        context.ignore_file(),
        Some(root.join("docker/app.Dockerfile.dockerignore").as_path())
    );
    // `docker` is excluded, but the Dockerfile inside it is still sent.
    assert_eq!(
        entries(&context),
        [
            ".dockerignore",
            "docker/app.Dockerfile",
            "public/",
            "public/index.html",
        ]
    );
}

#[test]
fn without_an_ignore_file_everything_is_sent_and_gitignore_plays_no_part() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, ".gitignore", "log\n");
    write(root, "log/a.log", "sent");

    let context = BuildContext::new(root, Path::new("Dockerfile"), true).unwrap();
    assert_eq!(context.ignore_file(), None);
    assert_eq!(
        entries(&context),
        [".gitignore", "Dockerfile", "log/", "log/a.log"]
    );
}

#[test]
fn headers_carry_root_ownership_real_mode_and_mtime_and_symlinks_stay_links() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "bin/run", "#!/bin/sh\n");
    fs_err::set_permissions(root.join("bin/run"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("escape")).unwrap();
    let mtime = fs_err::metadata(root.join("bin/run")).unwrap().mtime();

    let context = BuildContext::new(root, Path::new("Dockerfile"), true).unwrap();
    let mut tar = Vec::new();
    let stats = context.write_tar(&mut tar).unwrap();
    assert_eq!(stats.files, 3);
    assert_eq!(stats.bytes, tar.len() as u64);

    let mut archive = tar::Archive::new(tar.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        match entry.path().unwrap().to_str().unwrap() {
            "bin/run" => {
                assert_eq!(header.mode().unwrap(), 0o750);
                assert_eq!(header.mtime().unwrap(), u64::try_from(mtime).unwrap());
                let mut text = String::new();
                entry.read_to_string(&mut text).unwrap();
                assert_eq!(text, "#!/bin/sh\n");
            }
            "escape" => {
                assert_eq!(header.entry_type(), tar::EntryType::Symlink);
                assert_eq!(
                    entry.link_name().unwrap().unwrap().to_str(),
                    Some("../outside")
                );
            }
            _ => {}
        }
    }
}

#[test]
fn a_missing_dockerfile_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let error = BuildContext::new(dir.path(), Path::new("Dockerfile"), true).unwrap_err();
    let ContextError::Read { path, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(path, &dir.path().join("Dockerfile"));
}

#[test]
fn a_bad_ignore_pattern_names_the_ignore_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    write(dir.path(), ".dockerignore", "[\n");
    let error = BuildContext::new(dir.path(), Path::new("Dockerfile"), true).unwrap_err();
    assert!(
        matches!(&error, ContextError::IgnoreFile { path, .. } if path.ends_with(".dockerignore")),
        "{error:?}"
    );
}

#[test]
fn a_file_that_shrinks_while_read_is_an_error_not_a_corrupt_tar() {
    let mut reader = ExactReader {
        inner: "abc".as_bytes(),
        remaining: 5,
    };
    let mut out = Vec::new();
    let error = std::io::copy(&mut reader, &mut out).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn the_stream_yields_the_same_tar_in_bounded_chunks() {
    use futures_util::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "big", &"x".repeat(3 * CHUNK_SIZE + 17));

    let mut expected = Vec::new();
    BuildContext::new(root, Path::new("Dockerfile"), true)
        .unwrap()
        .write_tar(&mut expected)
        .unwrap();

    let (mut stream, task) = BuildContext::new(root, Path::new("Dockerfile"), true)
        .unwrap()
        .stream();
    let mut streamed = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() < 2 * CHUNK_SIZE, "chunk of {}", chunk.len());
        streamed.extend_from_slice(&chunk);
    }
    let stats = task.finish().await.unwrap();
    assert_eq!(streamed, expected);
    assert_eq!(stats.bytes, expected.len() as u64);
}

#[tokio::test]
async fn a_dropped_stream_stops_the_writer_as_closed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "big", &"x".repeat(20 * CHUNK_SIZE));

    let (stream, task) = BuildContext::new(root, Path::new("Dockerfile"), true)
        .unwrap()
        .stream();
    drop(stream);
    let error = task.finish().await.unwrap_err();
    assert!(matches!(error, ContextError::Closed), "{error:?}");
}

/// sysfs files claim 4096 bytes and hold fewer: a real file that cannot be read as announced.
#[tokio::test]
async fn a_walk_error_ends_the_stream_with_an_error_and_names_the_path() {
    use futures_util::StreamExt;

    let root = Path::new("/sys/kernel/mm/transparent_hugepage");
    if !root.join("hpage_pmd_size").exists() {
        return;
    }
    let (mut stream, task) = BuildContext::new(root, Path::new("hpage_pmd_size"), true)
        .unwrap()
        .stream();
    let mut last = None;
    while let Some(chunk) = stream.next().await {
        last = Some(chunk);
    }
    assert!(matches!(last, Some(Err(_))), "{last:?}");
    let error = task.finish().await.unwrap_err();
    let ContextError::Read { path, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(path.starts_with(root), "{error:?}");
}

#[test]
fn a_name_that_is_not_utf8_keeps_its_bytes() {
    use std::os::unix::ffi::OsStrExt;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
    fs_err::create_dir(root.join(name)).unwrap();
    fs_err::write(root.join(name).join("menu"), "sent").unwrap();

    let context = BuildContext::new(root, Path::new("Dockerfile"), true).unwrap();
    let mut tar = Vec::new();
    context.write_tar(&mut tar).unwrap();
    let mut archive = tar::Archive::new(tar.as_slice());
    let names: Vec<Vec<u8>> = archive
        .entries()
        .unwrap()
        .map(|entry| entry.unwrap().path_bytes().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            b"Dockerfile".to_vec(),
            b"caf\xe9/".to_vec(),
            b"caf\xe9/menu".to_vec()
        ]
    );
}

/// `docker build` with the classic builder reads `.dockerignore` only.
#[test]
fn the_classic_builder_reads_only_the_context_root_ignore_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, ".dockerignore", "public\n");
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "Dockerfile.dockerignore", "secret\n");
    write(root, "public/index.html", "not sent");
    write(
        root,
        "secret/key",
        "sent: the classic builder never reads Dockerfile.dockerignore",
    );

    let classic = BuildContext::new(root, Path::new("Dockerfile"), false).unwrap();
    assert_eq!(
        classic.ignore_file(),
        Some(root.join(".dockerignore").as_path())
    );
    assert_eq!(
        entries(&classic),
        [
            ".dockerignore",
            "Dockerfile",
            "Dockerfile.dockerignore",
            "secret/",
            "secret/key"
        ]
    );
    let buildkit = BuildContext::new(root, Path::new("Dockerfile"), true).unwrap();
    assert_eq!(
        buildkit.ignore_file(),
        Some(root.join("Dockerfile.dockerignore").as_path())
    );
}
