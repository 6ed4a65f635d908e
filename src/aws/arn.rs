//! The parts of an ECS ARN that berth reads: `arn:aws:ecs:…:task-definition/family:7`,
//! `arn:aws:ecs:…:task/cluster/0123abcd`.

/// `family:7` or the task id: the part of an ARN a person reads.
pub fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// `family` of `arn:…:task-definition/family:7` (or of `family:7`, or of `family`).
pub fn family(arn: &str) -> &str {
    let last = short(arn);
    last.rsplit_once(':').map_or(last, |(family, _)| family)
}

/// `7` of `arn:…:task-definition/family:7`; 0 when there is none.
pub fn revision(arn: &str) -> u64 {
    arn.rsplit(':')
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The account of an ARN (`arn:aws:ecs:us-east-1:123456789012:service/…`), if it names one.
pub fn account(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (arn.starts_with("arn:") && !account.is_empty() && account.bytes().all(|b| b.is_ascii_digit()))
        .then_some(account)
}

#[cfg(test)]
mod tests {
    use super::{account, family, revision, short};

    #[test]
    fn an_arn_names_its_account() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:service/berth-stg/web";
        assert_eq!(account(arn), Some("123456789012"));
        assert_eq!(account("arn:aws:s3:::bucket"), None);
        assert_eq!(account("web"), None);
    }

    #[test]
    fn arns_name_family_and_revision() {
        let arn = "arn:aws:ecs:us-east-1:1:task-definition/berth-example-stg-web:12";
        assert_eq!(family(arn), "berth-example-stg-web");
        assert_eq!(revision(arn), 12);
        assert_eq!(family("web"), "web");
    }

    #[test]
    fn short_keeps_what_follows_the_last_slash() {
        assert_eq!(
            short("arn:aws:ecs:us-east-1:1:task/berth-stg/0123abcd"),
            "0123abcd"
        );
        assert_eq!(short("sha256:abc"), "sha256:abc");
    }
}
