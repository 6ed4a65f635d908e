//! The state bucket: its default name, whether it is there, and how berth makes it (versioned,
//! private, encrypted) on an environment's first deploy.

use aws_sdk_s3::Client as S3;
use aws_sdk_s3::types::{
    BucketVersioningStatus, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    VersioningConfiguration,
};

use super::Place;
use crate::aws::failed;
use crate::error::Error;
use crate::report::Reporter;

/// HeadBucket's 404: the bucket does not exist.
pub(super) fn is_not_found(
    error: &aws_smithy_runtime_api::client::result::SdkError<
        aws_sdk_s3::operation::head_bucket::HeadBucketError,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool {
    error.as_service_error().is_some_and(|e| e.is_not_found())
        || error.raw_response().map(|r| r.status().as_u16()) == Some(404)
}

/// `berth-state-<account>-<region>`: one per account and region, like AWS SAM's managed bucket.
pub fn default_bucket(account: &str, region: &str) -> String {
    format!("berth-state-{account}-{region}")
}

/// Whether `bucket` exists; one berth may not read is an error that says what to grant.
pub(super) async fn bucket_exists(s3: &S3, bucket: &str) -> Result<bool, Error> {
    let head = s3.head_bucket().bucket(bucket).send().await;
    let missing = match &head {
        Ok(_) => return Ok(true),
        Err(error) => is_not_found(error),
    };
    if missing {
        return Ok(false);
    }
    let error = head
        .err()
        .map(|e| failed(format!("reading state bucket `{bucket}`"), e));
    Err(match error {
        Some(Error::AccessDenied { .. }) => Error::Mismatch {
            problem: format!("state bucket `{bucket}` exists, but berth may not read it"),
            hint: "grant `s3:ListBucket`, `s3:GetObject` and `s3:PutObject` on it (docs/configuration.md, `[state]`), or set `[state] bucket` to one of this account's buckets".to_owned(),
        },
        Some(other) => other,
        None => return Ok(true),
    })
}

/// Makes the missing `bucket` (versioned, private, encrypted), unless `[state] create = false`
/// forbids it.
pub(super) async fn make_bucket(
    s3: &S3,
    bucket: &str,
    place: Place<'_>,
    reporter: &dyn Reporter,
) -> Result<(), Error> {
    if !place.state.create {
        return Err(Error::Mismatch {
            problem: format!(
                "state bucket `{bucket}` does not exist, and `[state] create = false`"
            ),
            hint: "create it (versioning on), or name an existing one with `[state] bucket`"
                .to_owned(),
        });
    }
    create_bucket(s3, bucket, place.region).await?;
    reporter.info(&format!(
        "created state bucket `{bucket}` (versioned, private, encrypted): berth keeps each environment's lock and deploy records there"
    ));
    Ok(())
}

async fn create_bucket(s3: &S3, bucket: &str, region: &str) -> Result<(), Error> {
    use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

    let mut request = s3.create_bucket().bucket(bucket);
    // us-east-1 is S3's default location and refuses to be named as one.
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => {}
        // Another deploy created it a moment ago.
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
        Err(error) => {
            return Err(match failed(format!("creating state bucket `{bucket}`"), error) {
                Error::AccessDenied { .. } => Error::Mismatch {
                    problem: format!(
                        "state bucket `{bucket}` does not exist, and berth may not create it (`s3:CreateBucket`)"
                    ),
                    hint: "create it once (versioning on), or set `[state] bucket` to an existing bucket and `[state] create = false`; docs/configuration.md lists the S3 actions berth needs".to_owned(),
                },
                other => other,
            });
        }
    }
    set_up_bucket(s3, bucket).await
}

/// A new state bucket's settings: versioning on, no public access, encryption at rest.
async fn set_up_bucket(s3: &S3, bucket: &str) -> Result<(), Error> {
    let setup = format!("setting up state bucket `{bucket}`");
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| failed(&setup, e))?;
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| failed(&setup, e))?;
    // The builders refuse only a missing required field, and both are set.
    let unbuilt = |e: aws_sdk_s3::error::BuildError| Error::Aws {
        action: setup.clone(),
        environment: false,
        transient: false,
        source: Box::new(e),
    };
    let encryption = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(unbuilt)?;
    let rules = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(encryption)
                .build(),
        )
        .build()
        .map_err(unbuilt)?;
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(rules)
        .send()
        .await
        .map_err(|e| failed(&setup, e))?;
    Ok(())
}
