"""Service deployments and service revisions: made by CreateService and by an
UpdateService that needs a deployment, listed, described, superseded, rolled
back by the circuit breaker or by StopServiceDeployment."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError
from conftest import wait_for
from test_services import CRASH, UP, create, describe, register, running_task_definitions

# Up, never healthy: its health check fails inside a long start period, so its deployment stays
# IN_PROGRESS until something ends it.
NEVER_READY = {"command": ["CMD-SHELL", "test -f /tmp/never"], "interval": 1, "timeout": 1, "startPeriod": 300}


def service_deployment(ecs, arn: str) -> dict:
    described = ecs.describe_service_deployments(serviceDeploymentArns=[arn])
    assert described["failures"] == []
    return described["serviceDeployments"][0]


def reaches(ecs, arn: str, status: str, timeout: float = 60) -> dict:
    def check():
        deployment = service_deployment(ecs, arn)
        return deployment if deployment["status"] == status else None

    return wait_for(check, timeout=timeout, what=f"service deployment to be {status}")


def revision(ecs, arn: str) -> dict:
    described = ecs.describe_service_revisions(serviceRevisionArns=[arn])
    assert described["failures"] == []
    return described["serviceRevisions"][0]


def test_create_and_update_make_service_deployments_and_revisions(ecs, cluster):
    v1 = register(ecs, "web", UP)
    first_arn = create(ecs, cluster, "web", v1)["currentServiceDeployment"]
    assert first_arn.startswith(f"arn:aws:ecs:us-east-1:123456789012:service-deployment/{cluster}/web/")
    first = reaches(ecs, first_arn, "SUCCESSFUL")
    assert first["sourceServiceRevisions"] == []
    assert first["createdAt"] <= first["startedAt"] <= first["finishedAt"]
    assert first["deploymentCircuitBreaker"] == {"status": "MONITORING_COMPLETE", "failureCount": 0, "threshold": 3}
    assert first["alarms"] == {"status": "DISABLED"}
    assert "lifecycleStage" not in first  # a ROLLING deployment reports none
    old_revision = first["targetServiceRevision"]["arn"]
    assert revision(ecs, old_revision)["taskDefinition"] == v1

    v2 = register(ecs, "web", UP)
    updated = ecs.update_service(cluster=cluster, service="web", taskDefinition=v2)["service"]
    second_arn = updated["currentServiceDeployment"]
    assert second_arn != first_arn
    assert service_deployment(ecs, second_arn)["status"] in ("PENDING", "IN_PROGRESS")
    second = reaches(ecs, second_arn, "SUCCESSFUL")
    assert [s["arn"] for s in second["sourceServiceRevisions"]] == [old_revision]
    target = second["targetServiceRevision"]
    assert (target["requestedTaskCount"], target["runningTaskCount"], target["pendingTaskCount"]) == (2, 2, 0)
    assert revision(ecs, target["arn"])["taskDefinition"] == v2
    assert describe(ecs, cluster, "web")["currentServiceRevisions"][0]["arn"] == target["arn"]

    # A change of the desired count alone is no deployment.
    ecs.update_service(cluster=cluster, service="web", desiredCount=1)
    listed = ecs.list_service_deployments(cluster=cluster, service="web")["serviceDeployments"]
    assert [d["serviceDeploymentArn"] for d in listed] == [second_arn, first_arn]

    unknown = second_arn[:-4] + "zzzz"
    assert ecs.describe_service_deployments(serviceDeploymentArns=[unknown])["failures"] == [
        {"arn": unknown, "reason": "MISSING"}
    ]
    assert ecs.describe_service_revisions(serviceRevisionArns=[target["arn"] + "1"])["failures"][0]["reason"] == (
        "MISSING"
    )


def test_list_service_deployments_filters_pages_and_names_an_unknown_service(ecs, cluster):
    v1 = register(ecs, "web", UP)
    first = create(ecs, cluster, "web", v1, desired=1)["currentServiceDeployment"]
    reaches(ecs, first, "SUCCESSFUL")
    between = time.time()
    time.sleep(0.05)
    second = ecs.update_service(cluster=cluster, service="web", forceNewDeployment=True)["service"]
    second_arn = second["currentServiceDeployment"]
    reaches(ecs, second_arn, "SUCCESSFUL")

    def listed(**filters) -> list[str]:
        page = ecs.list_service_deployments(cluster=cluster, service="web", **filters)
        return [d["serviceDeploymentArn"] for d in page["serviceDeployments"]]

    assert listed() == [second_arn, first]
    assert listed(createdAt={"after": between}) == [second_arn]
    assert listed(createdAt={"before": between}) == [first]
    assert listed(status=["IN_PROGRESS"]) == []
    page = ecs.list_service_deployments(cluster=cluster, service="web", maxResults=1)
    assert [d["serviceDeploymentArn"] for d in page["serviceDeployments"]] == [second_arn]
    assert listed(maxResults=1, nextToken=page["nextToken"]) == [first]
    brief = ecs.list_service_deployments(cluster=cluster, service="web")["serviceDeployments"][0]
    assert brief["status"] == "SUCCESSFUL"
    assert brief["targetServiceRevisionArn"] == service_deployment(ecs, second_arn)["targetServiceRevision"]["arn"]

    with pytest.raises(ClientError) as refused:
        ecs.list_service_deployments(cluster=cluster, service="nope")
    assert refused.value.response["Error"]["Code"] == "ServiceNotFoundException"
    with pytest.raises(ClientError) as refused:
        ecs.list_service_deployments(cluster=cluster, service="web", maxResults=101)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"


def test_a_deployment_in_flight_is_stopped_when_the_next_one_starts(ecs, cluster):
    v1 = register(ecs, "web", UP)
    create(ecs, cluster, "web", v1, desired=1)
    stuck = register(ecs, "web", UP, healthCheck=NEVER_READY)
    superseded = ecs.update_service(cluster=cluster, service="web", taskDefinition=stuck)["service"]
    reaches(ecs, superseded["currentServiceDeployment"], "IN_PROGRESS")
    v3 = register(ecs, "web", UP)
    newer = ecs.update_service(cluster=cluster, service="web", taskDefinition=v3)["service"]

    stopped = service_deployment(ecs, superseded["currentServiceDeployment"])
    assert stopped["status"] == "STOPPED"
    assert "newer service deployment" in stopped["statusReason"]
    assert stopped["stoppedAt"] == stopped["finishedAt"]
    reaches(ecs, newer["currentServiceDeployment"], "SUCCESSFUL")


def test_the_circuit_breaker_rolls_the_service_deployment_back(ecs, cluster):
    v1 = register(ecs, "web", UP)
    first = create(ecs, cluster, "web", v1)["currentServiceDeployment"]
    source = reaches(ecs, first, "SUCCESSFUL")["targetServiceRevision"]["arn"]
    bad = register(ecs, "web", CRASH)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)["service"]["currentServiceDeployment"]

    rolled_back = reaches(ecs, arn, "ROLLBACK_SUCCESSFUL")
    assert rolled_back["rollback"]["serviceRevisionArn"] == source
    assert "circuit breaker" in rolled_back["rollback"]["reason"]
    assert "circuit breaker" in rolled_back["statusReason"]
    breaker = rolled_back["deploymentCircuitBreaker"]
    assert breaker["status"] == "TRIGGERED" and breaker["failureCount"] >= breaker["threshold"] == 3
    # No new service deployment for the rollback: it reuses the revision from before.
    assert describe(ecs, cluster, "web")["currentServiceDeployment"] == arn
    assert describe(ecs, cluster, "web")["taskDefinition"] == v1
    assert running_task_definitions(ecs, cluster, "web") == [v1, v1]


def test_without_the_breakers_rollback_the_service_deployment_stops(ecs, cluster):
    v1 = register(ecs, "web", UP)
    create(ecs, cluster, "web", v1, desired=1, rollback=False)
    bad = register(ecs, "web", CRASH)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)["service"]["currentServiceDeployment"]

    stopped = reaches(ecs, arn, "STOPPED")
    assert stopped["stoppedAt"] == stopped["finishedAt"]
    assert stopped["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert "rollback" not in stopped
    assert describe(ecs, cluster, "web")["taskDefinition"] == bad


def test_stop_service_deployment_rolls_back_what_is_in_flight_and_refuses_what_is_finished(ecs, cluster):
    v1 = register(ecs, "web", UP)
    first = create(ecs, cluster, "web", v1, desired=1)["currentServiceDeployment"]
    source = reaches(ecs, first, "SUCCESSFUL")["targetServiceRevision"]["arn"]
    stuck = register(ecs, "web", UP, healthCheck=NEVER_READY)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=stuck)["service"][
        "currentServiceDeployment"
    ]
    reaches(ecs, arn, "IN_PROGRESS")

    with pytest.raises(ClientError) as refused:
        ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ABORT")
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    assert service_deployment(ecs, arn)["status"] == "IN_PROGRESS"

    assert ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")["serviceDeploymentArn"] == arn
    assert service_deployment(ecs, arn)["status"] in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
    done = reaches(ecs, arn, "ROLLBACK_SUCCESSFUL")
    assert done["rollback"]["serviceRevisionArn"] == source
    assert "StopServiceDeployment" in done["rollback"]["reason"]
    service = describe(ecs, cluster, "web")
    assert service["taskDefinition"] == v1
    wait_for(lambda: running_task_definitions(ecs, cluster, "web") == [v1], what="the stuck task to go")

    for finished in (arn, first):
        with pytest.raises(ClientError) as refused:
            ecs.stop_service_deployment(serviceDeploymentArn=finished, stopType="ROLLBACK")
        assert refused.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ClientError) as refused:
        ecs.stop_service_deployment(serviceDeploymentArn=arn[:-4] + "zzzz", stopType="ROLLBACK")
    assert refused.value.response["Error"]["Code"] == "ServiceDeploymentNotFoundException"


def test_a_deployment_of_a_service_scaled_to_zero_succeeds_at_once(ecs, cluster):
    v1 = register(ecs, "web", UP)
    create(ecs, cluster, "web", v1, desired=1)
    ecs.update_service(cluster=cluster, service="web", desiredCount=0)
    v2 = register(ecs, "web", UP)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=v2)["service"]["currentServiceDeployment"]
    done = reaches(ecs, arn, "SUCCESSFUL", timeout=10)
    assert done["startedAt"] <= done["finishedAt"]
    assert done["targetServiceRevision"]["requestedTaskCount"] == 0
