"""The demo account is what berth's demo and end-to-end tests deploy to."""

from __future__ import annotations

import botocore.exceptions
import pytest
from conftest import wait_for

from berth_sandbox import seed as demo
from berth_sandbox.config import Endpoints


@pytest.fixture
def seeded(sandbox):
    return demo.seed(Endpoints(), envs=("stg",))


def test_demo_account_is_steady_with_sidecar_and_schedule(sandbox, seeded, ecs, ecr):
    services = ecs.describe_services(cluster="berth-stg", services=["web", "devops"])["services"]
    assert {s["serviceName"]: s["runningCount"] for s in services} == {"web": 2, "devops": 1}
    web = services[0]
    assert web["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert web["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == seeded["network"]["subnets"]
    definition = ecs.describe_task_definition(taskDefinition=web["taskDefinition"])["taskDefinition"]
    images = {c["name"]: c["image"] for c in definition["containerDefinitions"]}
    # Named by the repository's URI, which is the registry's address.
    assert images["app"] == f"{sandbox.registry}/berth-example:initial"
    [repository] = ecr.describe_repositories(repositoryNames=["berth-example"])["repositories"]
    assert images["app"] == f"{repository['repositoryUri']}:initial"
    assert images["datadog-agent"] == "public.ecr.aws/datadog/agent:7"
    assert ecr.describe_images(repositoryName="berth-example")["imageDetails"][0]["imageTags"] == ["initial"]

    ec2 = sandbox.client("ec2")
    vpc = seeded["network"]["vpc"]
    attribute = ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")
    assert attribute["EnableDnsHostnames"]["Value"] is True

    events = sandbox.client("events")
    [target] = events.list_targets_by_rule(Rule="berth-example-stg-nightly")["Targets"]
    assert target["EcsParameters"]["TaskDefinitionArn"] == web["taskDefinition"]


def test_migration_task_changes_what_the_app_serves(sandbox, seeded, ecs, engine):
    web = ecs.describe_services(cluster="berth-stg", services=["web"])["services"][0]
    task = ecs.run_task(
        cluster="berth-stg",
        taskDefinition=web["taskDefinition"],
        launchType="FARGATE",
        networkConfiguration=web["networkConfiguration"],
        overrides={"containerOverrides": [{"name": "app", "command": ["bin/rails", "db:migrate"]}]},
    )["tasks"][0]

    def done():
        described = ecs.describe_tasks(cluster="berth-stg", tasks=[task["taskArn"]])["tasks"][0]
        return described if described["lastStatus"] == "STOPPED" else None

    stopped = wait_for(done, timeout=60, what="the migration")
    assert {c["name"]: c["exitCode"] for c in stopped["containers"]} == {"app": 0, "datadog-agent": 0}

    # An app task reads the migrated schema from the shared EFS volume.
    [app_task] = ecs.describe_tasks(
        cluster="berth-stg", tasks=ecs.list_tasks(cluster="berth-stg", serviceName="web")["taskArns"][:1]
    )["tasks"]
    runtime = next(c for c in app_task["containers"] if c["name"] == "app")["runtimeId"]
    served = engine.containers.get(runtime).exec_run(["wget", "-q", "-O", "-", "http://127.0.0.1:3000/schema.rb"])
    assert served.exit_code == 0
    assert b'add_column "users", "email", :string' in served.output


def test_firing_the_rule_and_the_schedule_runs_their_tasks(sandbox, seeded, ecs):
    cluster = "berth-stg"
    web = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    scheduler = sandbox.client("scheduler")
    schedule = scheduler.get_schedule(Name=seeded["clusters"][cluster]["scheduler"])
    assert schedule["Target"]["EcsParameters"]["TaskDefinitionArn"] == web["taskDefinition"]
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Berlin"

    def stopped(arn):
        def done():
            task = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
            return task if task["lastStatus"] == "STOPPED" else None

        return wait_for(done, timeout=60, what=f"task {arn}")

    fired = sandbox.admin("POST", "fire", {"rule": "berth-example-stg-nightly"})["tasks"]
    assert [t["taskDefinitionArn"] for t in fired] == [web["taskDefinition"]]
    task = stopped(fired[0]["taskArn"])
    assert task["startedBy"] == "events-rule/berth-example-stg-nightly"
    assert task["overrides"]["containerOverrides"][0]["command"] == ["bin/rails", "db:migrate"]
    assert {c["name"]: c["exitCode"] for c in task["containers"]}["app"] == 0

    fired = sandbox.admin("POST", "fire", {"schedule": "berth-example-stg-hourly"})["tasks"]
    assert [t["taskDefinitionArn"] for t in fired] == [web["taskDefinition"]]
    task = stopped(fired[0]["taskArn"])
    assert task["overrides"]["containerOverrides"][0]["command"] == ["bin/rails", "runner", "Report.hourly"]
    assert {c["name"]: c["exitCode"] for c in task["containers"]}["app"] == 0

    with pytest.raises(Exception, match="400"):
        sandbox.admin("POST", "fire", {"nothing": "here"})


def test_update_schedule_replaces_the_whole_schedule_as_aws_does(sandbox, seeded):
    scheduler = sandbox.client("scheduler")
    name = seeded["clusters"]["berth-stg"]["scheduler"]
    schedule = scheduler.get_schedule(Name=name)
    assert schedule["ActionAfterCompletion"] == "NONE"
    update = {
        "Name": name,
        "ScheduleExpression": schedule["ScheduleExpression"],
        "FlexibleTimeWindow": schedule["FlexibleTimeWindow"],
        "Target": schedule["Target"],
    }
    old = schedule["CreationDate"].timestamp() - 3600
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        scheduler.update_schedule(**update, StartDate=old)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    scheduler.update_schedule(**update, State="DISABLED", ActionAfterCompletion="DELETE")
    scheduler.update_schedule(**update)  # every field left out takes its default
    after = scheduler.get_schedule(Name=name)
    assert (after["State"], after["ActionAfterCompletion"]) == ("ENABLED", "NONE")
    assert "Description" not in after or after["Description"] is None
