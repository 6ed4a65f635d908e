//! berth's own memory of each environment, kept in S3 beside nothing else: the lock that keeps
//! two deploys of one environment apart ([`lock`]) and one record per deploy ([`record`]).
//!
//! Every write is conditional, the way Terraform's S3 backend writes its lock file: an object is
//! created with `If-None-Match: *` and replaced with `If-Match: <the ETag we read>`, so of two
//! writers that read the same version exactly one wins and the other learns it lost (412). S3's
//! ETag of a plain object is the MD5 of its content, so every object carries a `serial` that
//! each write bumps: two writes never look like none.
//!
//! Objects live under `<prefix>/<env>/` of one bucket: `lock.json`, and `deploys/<id>.json`.

mod bucket;
pub mod drift;
mod held;
pub mod images;
pub mod lock;
pub mod record;

use aws_config::SdkConfig;
use aws_sdk_s3::Client as S3;
use aws_sdk_s3::primitives::ByteStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aws::{self, denied_action, failed};
use crate::error::Error;
use crate::report::Reporter;
use crate::settings::{Settings, StateSettings};

pub use bucket::default_bucket;
use bucket::{bucket_exists, is_not_found, make_bucket};
pub use held::Held;
pub use lock::Lock;
pub use record::Record;

/// Where one environment's state lives.
#[derive(Debug, Clone)]
pub struct Store {
    s3: S3,
    bucket: String,
    /// `<prefix>/<env>/`.
    root: String,
}

/// An object as read, with the ETag a conditional write of it needs.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub value: T,
    pub etag: String,
}

/// How a conditional write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Written; the object's new ETag.
    Written(String),
    /// The condition failed: the object exists (create) or changed since it was read (replace).
    Lost,
}

/// Where an environment's state lives: its `[state]` settings, its region and its name.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub state: &'a StateSettings,
    pub region: &'a str,
    pub env: &'a str,
}

impl<'a> Place<'a> {
    pub fn of(settings: &'a Settings) -> Self {
        Self {
            state: &settings.state,
            region: &settings.region,
            env: &settings.env,
        }
    }
}

impl Store {
    /// The environment's store: the bucket of `[state] bucket`, else `berth-state-<account>-
    /// <region>`, created on first use unless `[state] create = false`.
    pub async fn open(
        config: &SdkConfig,
        place: Place<'_>,
        reporter: &dyn Reporter,
    ) -> Result<Self, Error> {
        let store = Self::locate(config, place).await?;
        let exists = store.exists().await?;
        store.make_unless(exists, place, reporter).await?;
        Ok(store)
    }

    /// Whether the bucket exists (`HeadBucket`); one berth may not read is an error.
    pub async fn exists(&self) -> Result<bool, Error> {
        bucket_exists(&self.s3, &self.bucket).await
    }

    /// Makes the bucket unless it `exists`, as `[state] create` allows: the first write of an
    /// environment's first deploy, once its checks passed.
    pub async fn make_unless(
        &self,
        exists: bool,
        place: Place<'_>,
        reporter: &dyn Reporter,
    ) -> Result<(), Error> {
        if exists {
            return Ok(());
        }
        make_bucket(&self.s3, &self.bucket, place, reporter).await
    }

    /// The environment's store as it is, for reading: `None` when its bucket does not exist.
    pub async fn find(config: &SdkConfig, place: Place<'_>) -> Result<Option<Self>, Error> {
        Self::find_in(config, place, None).await
    }

    /// [`Store::find`] when the account is known already ([`Store::locate_in`]).
    pub async fn find_in(
        config: &SdkConfig,
        place: Place<'_>,
        account: Option<&str>,
    ) -> Result<Option<Self>, Error> {
        let store = Self::locate_in(config, place, account).await?;
        match store.s3.head_bucket().bucket(&store.bucket).send().await {
            Ok(_) => Ok(Some(store)),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(failed(
                format!("reading state bucket `{}`", store.bucket),
                error,
            )),
        }
    }

    /// Where the store is, without looking at it.
    pub async fn locate(config: &SdkConfig, place: Place<'_>) -> Result<Self, Error> {
        Self::locate_in(config, place, None).await
    }

    /// [`Store::locate`] when the account is known already (from an ARN of its resources): the
    /// default bucket is named without asking STS.
    pub async fn locate_in(
        config: &SdkConfig,
        place: Place<'_>,
        account: Option<&str>,
    ) -> Result<Self, Error> {
        let s3 = aws::s3_client(config);
        let bucket = match (&place.state.bucket, account) {
            (Some(bucket), _) => bucket.clone(),
            (None, Some(account)) => default_bucket(account, place.region),
            (None, None) => {
                let identity = aws::sts_client(config)
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| failed("finding the AWS account (`sts:GetCallerIdentity`)", e))?;
                default_bucket(identity.account().unwrap_or_default(), place.region)
            }
        };
        Ok(Self::new(s3, bucket, &place.state.prefix, place.env))
    }

    pub fn new(s3: S3, bucket: String, prefix: &str, env: &str) -> Self {
        Self {
            s3,
            bucket,
            root: format!("{prefix}/{env}/"),
        }
    }

    /// `s3://bucket/prefix/env/key`, for messages.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.root)
    }

    /// The object at `key`, or `None` when there is none.
    pub async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Stored<T>>, Error> {
        let output = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.root))
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(error) => {
                let error = failed(format!("reading `{}`", self.url(key)), error);
                return Err(denied_action(error, "s3:GetObject"));
            }
        };
        let etag = output.e_tag().unwrap_or_default().to_owned();
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| Error::Aws {
                action: format!("reading `{}`", self.url(key)),
                environment: true,
                transient: true,
                source: Box::new(e),
            })?
            .into_bytes();
        let value = serde_json::from_slice(&bytes).map_err(|e| Error::Mismatch {
            problem: format!("`{}` is not what berth wrote there: {e}", self.url(key)),
            hint: "berth keeps only its own objects under its prefix; remove the object, or set `[state] prefix` to another path".to_owned(),
        })?;
        Ok(Some(Stored { value, etag }))
    }

    /// Creates `key` unless it exists (`If-None-Match: *`).
    pub async fn create<T: Serialize>(&self, key: &str, value: &T) -> Result<Put, Error> {
        self.put(key, value, Condition::Absent).await
    }

    /// Replaces `key` if it is still the version with `etag` (`If-Match`).
    pub async fn replace<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        etag: &str,
    ) -> Result<Put, Error> {
        self.put(key, value, Condition::Version(etag)).await
    }

    /// Replaces `key`, an object this run writes, if it is still the version with `etag`. When it
    /// is not, the object is read back: `ours` tells this run's own earlier write (whose answer was
    /// lost, or which an interrupted run left in flight) from another run's.
    pub async fn replace_own<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        value: &T,
        etag: &str,
        ours: impl Fn(&T) -> bool,
    ) -> Result<Replaced<T>, Error> {
        if let Put::Written(etag) = self.replace(key, value, etag).await? {
            return Ok(Replaced::Written(etag));
        }
        Ok(match self.read::<T>(key).await? {
            Some(stored) if ours(&stored.value) => Replaced::Ours(stored),
            other => Replaced::Theirs(other.map(|stored| stored.value)),
        })
    }

    async fn put<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        condition: Condition<'_>,
    ) -> Result<Put, Error> {
        let body = serde_json::to_vec_pretty(value).unwrap_or_default();
        let request = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.root))
            .content_type("application/json")
            .body(ByteStream::from(body));
        let request = match condition {
            Condition::Absent => request.if_none_match("*"),
            Condition::Version(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(output) => Ok(Put::Written(output.e_tag().unwrap_or_default().to_owned())),
            Err(error) if precondition_failed(&error) => Ok(Put::Lost),
            Err(error) => Err(denied_action(
                failed(format!("writing `{}`", self.url(key)), error),
                "s3:PutObject",
            )),
        }
    }

    /// Deletes `key` if it is still the version with `etag` (S3's conditional delete): false
    /// when it is not.
    pub async fn delete_if(&self, key: &str, etag: &str) -> Result<bool, Error> {
        let deleted = self
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.root))
            .if_match(etag)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(error) if precondition_failed(&error) => Ok(false),
            Err(error) => Err(denied_action(
                failed(format!("deleting `{}`", self.url(key)), error),
                "s3:DeleteObject",
            )),
        }
    }

    /// The keys under `folder/` (relative to the environment), any order.
    pub async fn list(&self, folder: &str) -> Result<Vec<String>, Error> {
        let prefix = format!("{}{folder}/", self.root);
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                let error = failed(format!("listing `{}`", self.url(folder)), e);
                denied_action(error, "s3:ListBucket")
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| object.key())
                    .filter_map(|key| key.strip_prefix(&self.root))
                    .map(str::to_owned),
            );
        }
        Ok(keys)
    }
}

/// How [`Store::replace_own`] ended.
#[derive(Debug)]
pub enum Replaced<T> {
    /// Written; the object's new ETag.
    Written(String),
    /// Not written: the object moved on from a write of this run's own; it is as read now.
    Ours(Stored<T>),
    /// Not written: another run wrote it (or it is gone).
    Theirs(Option<T>),
}

#[derive(Debug, Clone, Copy)]
enum Condition<'a> {
    Absent,
    Version(&'a str),
}

/// 412 Precondition Failed, or 409 ConditionalRequestConflict (a conditional write raced another
/// write of the same key): either way another writer won.
fn precondition_failed<E, R>(error: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> bool
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match error {
        SdkError::ServiceError(service) => matches!(
            service.err().code(),
            Some("PreconditionFailed" | "ConditionalRequestConflict")
        ),
        _ => false,
    }
}

/// Now, as seconds since the Unix epoch: what berth's records and the lock's lease count in.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
