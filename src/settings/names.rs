//! What a valid name, duration or image reference looks like, by the rules of the service that
//! takes it (ECR, S3, Docker, AWS regions).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A positive duration such as `20m`, `90s`, `1h 30m` or `250ms`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|error| error.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// S3's rule for general purpose buckets: 3 to 63 characters, lowercase letters, digits, `.` and
/// `-`, starting and ending with a letter or digit, no `..`, not an IP address.
pub(super) fn is_valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// ECR's rule: `(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*`, 2 to 256 long.
pub(super) fn is_valid_repository_name(name: &str) -> bool {
    let is_component = |part: &str| {
        part.split(['.', '_', '-']).all(|run| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
    };
    (2..=256).contains(&name.len()) && name.split('/').all(is_component)
}

/// `os/arch` or `os/arch/variant`, each part made of lowercase letters, digits and `_`.
/// `us-east-1`, `us-gov-west-1`, `eusc-de-east-1`: a partition prefix, words, a number.
pub(super) fn looks_like_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let lower = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase());
    match parts.as_slice() {
        [prefix, words @ .., number] if !words.is_empty() => {
            (2..=4).contains(&prefix.len())
                && lower(prefix)
                && words.iter().all(|word| lower(word))
                && (1..=2).contains(&number.len())
                && number.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

pub(super) fn is_valid_platform(platform: &str) -> bool {
    let parts: Vec<&str> = platform.split('/').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Drops `.` components so paths read cleanly (`/app/.` → `/app`); leaves `..` alone.
pub(super) fn tidy(path: &Path) -> PathBuf {
    path.components().collect()
}

/// Docker's tag rule: 1 to 128 of `[A-Za-z0-9_.-]`, the first a letter, digit or `_`.
pub fn is_tag(tag: &str) -> bool {
    tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        && tag
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte))
}

/// `repository[:tag]` or `repository@sha256:…`, with an optional registry host: lower-case path
/// components, no spaces, at most one tag or digest.
pub(super) fn is_image_reference(image: &str) -> bool {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest
        && !(digest
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit())))
    {
        return false;
    }
    // A tag follows the last `:` after the last `/` (a `:` before it is a registry port).
    let (path, tag) = match name.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
        _ => (name, None),
    };
    let tag_ok = tag.is_none_or(is_tag);
    let mut parts = path.split('/').peekable();
    let host_ok = match parts.peek() {
        Some(first) if path.contains('/') && (first.contains('.') || first.contains(':')) => {
            let host = parts.next().unwrap_or_default();
            host.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b".-:".contains(&byte))
        }
        _ => true,
    };
    let path_ok = parts.all(|part| {
        !part.is_empty()
            && part.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte)
            })
    });
    tag_ok && host_ok && path_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units_and_length() {
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 5s "), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5").is_err(), "a bare number has no unit");
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert!(
            parse_duration("0s").is_err(),
            "zero would poll in a busy loop"
        );
    }

    #[test]
    fn repository_names_follow_ecr_rules() {
        for good in [
            "berth-example",
            "ab",
            "team/app",
            "a.b_c-d/e2",
            &"a".repeat(256),
        ] {
            assert!(is_valid_repository_name(good), "{good} should be valid");
        }
        for bad in [
            "a",
            "Berth",
            "app_",
            "-app",
            "a--b",
            "team//app",
            "/app",
            "app/",
            "a b",
            &"a".repeat(257),
        ] {
            assert!(!is_valid_repository_name(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for (name, valid) in [
            ("berth-state-123456789012-us-east-1", true),
            ("my.bucket", true),
            ("abc", true),
            ("ab", false),
            ("Upper", false),
            ("-start", false),
            ("end-", false),
            ("a..b", false),
            ("192.168.1.1", false),
            ("under_score", false),
            (&"a".repeat(64), false),
        ] {
            assert_eq!(is_valid_bucket_name(name), valid, "{name}");
        }
    }

    #[test]
    fn regions_look_like_aws_regions() {
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "eu-central-2",
            "cn-northwest-1",
            "eusc-de-east-1",
        ] {
            assert!(looks_like_region(good), "{good} should be valid");
        }
        for bad in [
            "us-east",
            "US-EAST-1",
            "us_east_1",
            "useast1",
            "us-east-1a",
            "-east-1",
            "us--1",
        ] {
            assert!(!looks_like_region(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn platforms_look_like_os_and_arch() {
        for good in ["linux/amd64", "linux/arm64/v8", "linux/386"] {
            assert!(is_valid_platform(good), "{good} should be valid");
        }
        for bad in [
            "linux",
            "amd64",
            "linux/",
            "/amd64",
            "Linux/AMD64",
            "linux/arm64/v8/x",
        ] {
            assert!(!is_valid_platform(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn image_references_have_a_path_and_at_most_a_tag_or_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for good in [
            "app".to_owned(),
            "app:v1".to_owned(),
            "127.0.0.1:5055/app:berth-cache-stg-assets".to_owned(),
            "123.dkr.ecr.us-east-1.amazonaws.com/team/app".to_owned(),
            format!("registry.example.com/app@{digest}"),
        ] {
            assert!(is_image_reference(&good), "{good} should be valid");
        }
        for bad in [
            "",
            "App:v1",
            "app:",
            "app:v 1",
            "app@sha256:abc",
            "registry.example.com//app",
        ] {
            assert!(!is_image_reference(bad), "{bad} should be invalid");
        }
    }
}
