//! ECS services as berth reads them: active, by name, in batches as `DescribeServices` takes them.

use std::collections::BTreeMap;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::Service;

use crate::aws::failed;
use crate::error::Error;

/// DescribeServices takes at most this many services per call.
const DESCRIBE_BATCH: usize = 10;

/// Rounds of the SDK's retries a read of the services gets before it fails: `DescribeServices`
/// is what an account's other tools poll too, so it is the call most often throttled, and a read
/// is safe to repeat.
const DESCRIBE_ROUNDS: u32 = 3;

/// Fetches the services, `MISSING` ones being an error that changes nothing. Throttling and
/// server errors that outlast the SDK's retries get more rounds of them, a pause apart.
pub async fn describe(
    ecs: &Client,
    cluster: &str,
    names: &[String],
) -> Result<BTreeMap<String, Service>, Error> {
    let mut round = 1;
    loop {
        match describe_once(ecs, cluster, names).await {
            Err(error) if crate::aws::is_transient(&error) && round < DESCRIBE_ROUNDS => {
                tracing::info!(%error, round, "DescribeServices failed; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(round))).await;
                round += 1;
            }
            result => return result,
        }
    }
}

async fn describe_once(
    ecs: &Client,
    cluster: &str,
    names: &[String],
) -> Result<BTreeMap<String, Service>, Error> {
    let mut found = BTreeMap::new();
    for batch in names.chunks(DESCRIBE_BATCH) {
        let output = ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|e| e.is_cluster_not_found_exception())
                {
                    return Error::Mismatch {
                        problem: format!("cluster `{cluster}` not found"),
                        hint:
                            "check `cluster` (and `region`) in berth.toml against the ECS console"
                                .to_owned(),
                    };
                }
                failed(format!("describing services in cluster `{cluster}`"), e)
            })?;
        for service in output.services() {
            if service.status() == Some("ACTIVE")
                && let Some(name) = service.service_name()
            {
                found.insert(name.to_owned(), service.clone());
            }
        }
    }
    if let Some(missing) = names.iter().find(|name| !found.contains_key(*name)) {
        return Err(Error::Mismatch {
            problem: format!("service `{missing}` is not active in cluster `{cluster}`"),
            hint: "check `services` and `cluster` in berth.toml against the ECS console".to_owned(),
        });
    }
    Ok(found)
}

/// berth rolls a service out by `UpdateService` and judges the deployment by its `rolloutState`,
/// which only services with the ECS deployment controller have. Others are refused before any
/// change.
pub fn check_controller(name: &str, service: &Service) -> Result<(), Error> {
    let controller = service
        .deployment_controller()
        .map_or("ECS", |controller| controller.r#type().as_str());
    if controller == "ECS" {
        return Ok(());
    }
    Err(Error::Mismatch {
        problem: format!(
            "service `{name}` uses the `{controller}` deployment controller; berth rolls out services with the `ECS` controller only"
        ),
        hint: match controller {
            "CODE_DEPLOY" => {
                "ECS now runs blue/green itself: move the service to the `ECS` controller with `deploymentConfiguration.strategy = \"BLUE_GREEN\"` (AWS's guide: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/migrate-codedeploy-to-ecs-bluegreen.html) and berth follows its stages and bake time; or deploy it with CodeDeploy, or remove it from `services` in berth.toml"
                    .to_owned()
            }
            _ => "deploy it with its own controller, or remove it from `services` in berth.toml"
                .to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{DeploymentController, DeploymentControllerType, Service};

    use super::check_controller;

    #[test]
    fn only_the_ecs_deployment_controller_is_rolled_out() {
        let rows = [
            ("no controller: ECS by default", None, None),
            ("ECS", Some(DeploymentControllerType::Ecs), None),
            (
                "CodeDeploy",
                Some(DeploymentControllerType::CodeDeploy),
                Some("`web` uses the `CODE_DEPLOY` deployment controller"),
            ),
            (
                "external",
                Some(DeploymentControllerType::External),
                Some("`web` uses the `EXTERNAL` deployment controller"),
            ),
        ];
        for (case, controller, refused) in rows {
            let service = Service::builder()
                .set_deployment_controller(controller.map(|kind| {
                    DeploymentController::builder()
                        .r#type(kind)
                        .build()
                        .unwrap()
                }))
                .build();
            let got = check_controller("web", &service);
            match refused {
                None => assert!(got.is_ok(), "{case}: {got:?}"),
                Some(part) => crate::error::assert_usage_error(got, part, case),
            }
        }
    }
}
