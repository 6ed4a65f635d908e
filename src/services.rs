//! ECS services as berth reads them: active, by name, in batches as `DescribeServices` takes them.

use std::collections::BTreeMap;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::Service;

use crate::aws::failed;
use crate::error::Error;

/// DescribeServices takes at most this many services per call.
const DESCRIBE_BATCH: usize = 10;

/// Fetches the services, `MISSING` ones being an error that changes nothing.
pub async fn describe(
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
            .map_err(|e| failed(format!("describing services in cluster `{cluster}`"), e))?;
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
