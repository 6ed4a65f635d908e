//! Environments in another account or region of the sandbox: seeded there, configured in
//! berth.toml, deployed with that account's keys, and read with them.

use super::App;

/// The sandbox's default account, and a second one (its keys are `AKIA<account>SBOX`).
pub const ACCOUNT: &str = "123456789012";
pub const SECOND_ACCOUNT: &str = "210987654321";
pub const SECOND_REGION: &str = "us-west-2";
/// What a run of berth needs to act in the second account.
pub const IN_SECOND_ACCOUNT: &[(&str, &str)] = &[("AWS_ACCESS_KEY_ID", "AKIA210987654321SBOX")];

/// The sandbox's credentials for `account` (`testing` for the default one).
pub fn access_key(account: &str) -> String {
    if account == ACCOUNT {
        "testing".to_owned()
    } else {
        format!("AKIA{account}SBOX")
    }
}

/// An SDK config acting in `account` and `region`.
pub async fn config_in(endpoint: &str, account: &str, region: &str) -> aws_config::SdkConfig {
    let credentials =
        aws_sdk_ecs::config::Credentials::new(access_key(account), "testing", None, None, "test");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await
}

impl App {
    /// Seeds environment `env` of the app in `account` and `region` and configures it in
    /// berth.toml with `extra` lines (committed).
    pub fn seed_elsewhere(&mut self, env: &str, (account, region): (&str, &str), extra: &str) {
        super::seed(&[
            "--envs",
            env,
            "--keep",
            "--app",
            &self.name,
            "--account",
            account,
            "--region",
            region,
        ]);
        let cluster = format!("{}-{env}", self.name);
        self.edit_config(|config| {
            format!(
                "{config}[env.{env}]\nregion = \"{region}\"\ncluster = \"{cluster}\"\nservices = [\"web\", \"devops\"]\naccount = \"{account}\"\n{extra}\n"
            )
        });
        self.elsewhere
            .push((account.to_owned(), region.to_owned(), cluster));
    }

    pub async fn config_in(&self, account: &str, region: &str) -> aws_config::SdkConfig {
        config_in(&self.var("AWS_ENDPOINT_URL"), account, region).await
    }
}

impl App {
    /// Manifests pushed by tag `tag` to `repository` as the registry stores it (`NAME`, or
    /// `ACCOUNT/REGION/NAME` for another account's or region's registry).
    pub fn manifest_pushes(&self, repository: &str, tag: &str) -> u64 {
        let all = super::admin(
            &self.var("BERTH_SANDBOX_PORT"),
            "GET",
            "/_sandbox/counters",
            None,
        );
        all[format!("registry:push:{repository}:{tag}")]
            .as_u64()
            .unwrap_or(0)
    }

    /// What `account` (in `region`) lets another account do: read the app's deploy records of
    /// every environment in the state bucket, and pull from its repository, as the team's
    /// infrastructure code would grant it.
    pub async fn share_with(&self, (account, region): (&str, &str), reader: &str) {
        let config = self.config_in(account, region).await;
        let bucket = format!("berth-state-{account}-{region}");
        let principal = format!("arn:aws:iam::{reader}:root");
        let bucket_policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "s3:GetObject",
                 "Resource": format!("arn:aws:s3:::{bucket}/*")},
                {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "s3:ListBucket",
                 "Resource": format!("arn:aws:s3:::{bucket}")}
            ]
        });
        aws_sdk_s3::Client::new(&config)
            .put_bucket_policy()
            .bucket(&bucket)
            .policy(bucket_policy.to_string())
            .send()
            .await
            .unwrap();
        self.allow_pull((account, region), reader).await;
    }

    /// `account`'s repository of the app lets `reader` pull (its repository policy).
    pub async fn allow_pull(&self, (account, region): (&str, &str), reader: &str) {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "pull",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{reader}:root")},
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
            }]
        });
        aws_sdk_ecr::Client::new(&self.config_in(account, region).await)
            .set_repository_policy()
            .repository_name(&self.name)
            .policy_text(policy.to_string())
            .send()
            .await
            .unwrap();
    }

    /// The image of container `app` of `web`'s task definition in `account` and `region`.
    pub async fn web_image_in(&self, (account, region): (&str, &str), env: &str) -> String {
        let ecs = aws_sdk_ecs::Client::new(&self.config_in(account, region).await);
        let cluster = format!("{}-{env}", self.name);
        let described = ecs
            .describe_services()
            .cluster(&cluster)
            .services("web")
            .send()
            .await
            .unwrap();
        let arn = described.services()[0]
            .task_definition()
            .unwrap()
            .to_owned();
        let definition = super::task_definition(&ecs, &arn).await;
        super::container(&definition, "app")
            .image()
            .unwrap()
            .to_owned()
    }

    /// The URI of the app's repository in `account` and `region`.
    pub async fn repository_in(&self, (account, region): (&str, &str)) -> String {
        let ecr = aws_sdk_ecr::Client::new(&self.config_in(account, region).await);
        let described = ecr
            .describe_repositories()
            .repository_names(&self.name)
            .send()
            .await
            .unwrap();
        described.repositories()[0]
            .repository_uri()
            .unwrap()
            .to_owned()
    }
}
