//! Old revisions deregistered beyond `keep_revisions`.

use crate::harness::*;

/// `keep_revisions = 2`: after each deploy, each family keeps its newest 2 ACTIVE revisions and
/// every one still in use (a service's, a scheduled target's, one the newest 2 deploys' records
/// name) or not made by this environment's deploys; the rest are deregistered, and the record
/// says which.
#[tokio::test(flavor = "multi_thread")]
async fn old_unused_revisions_are_deregistered_beyond_keep_revisions() {
    // `schedules = []`: the nightly rule and the hourly schedule stay on `web:1`, which is then
    // in use however old it gets.
    let app = App::new(
        "tidy",
        "keep_revisions = 2\nschedules = []\nmigrate = \"skip\"\n",
    );
    let first = app.deploy(&[]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let mut last = first;
    for _ in 0..3 {
        last = app.deploy(&["--new"]);
        assert_eq!(last.code, Some(0), "{}", last.stderr);
    }
    let ecs = app.ecs().await;
    let active = |family: String| {
        let ecs = ecs.clone();
        async move {
            let listed = ecs
                .list_task_definitions()
                .family_prefix(&family)
                .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
                .send()
                .await
                .unwrap();
            let mut numbers: Vec<u64> = listed
                .task_definition_arns()
                .iter()
                .map(|arn| arn.rsplit(':').next().unwrap().parse().unwrap())
                .collect();
            numbers.sort_unstable();
            numbers
        }
    };
    assert_eq!(active(format!("{}-stg-web", app.name)).await, [1, 3, 4, 5]);
    // Revision 1 of each family was made by hand (the demo account's seed), not by a deploy of
    // `stg`: never berth's to deregister.
    assert_eq!(
        active(format!("{}-stg-devops", app.name)).await,
        [1, 3, 4, 5]
    );
    let report = last.json();
    let gone: Vec<&str> = report["deregistered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arn| arn.as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        gone,
        [
            format!("{}-stg-devops:2", app.name),
            format!("{}-stg-web:2", app.name)
        ]
    );
    let record = app.record(report["deploy_id"].as_str().unwrap()).await;
    assert_eq!(record["deregistered"], report["deregistered"]);
    assert!(last.stderr.contains("cleanup: done"), "{}", last.stderr);
}
