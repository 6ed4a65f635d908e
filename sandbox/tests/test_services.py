"""Services roll out: UpdateService starts a deployment that completes, or
fails at the circuit-breaker threshold and rolls back."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from conftest import container_def, wait_for

UP = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
CRASH = ["/bin/sh", "-c", "echo boom; exit 1"]


def register(ecs, family: str, command, **extra) -> str:
    response = ecs.register_task_definition(
        family=family, memory="512", containerDefinitions=[container_def("app", command, **extra)]
    )
    return response["taskDefinition"]["taskDefinitionArn"]


def describe(ecs, cluster: str, name: str) -> dict:
    return ecs.describe_services(cluster=cluster, services=[name])["services"][0]


def deployment(service: dict, deployment_id: str) -> dict | None:
    return next((d for d in service["deployments"] if d["id"] == deployment_id), None)


def settled(ecs, cluster: str, name: str, timeout: float = 60) -> dict:
    def check():
        service = describe(ecs, cluster, name)
        deployments = service["deployments"]
        if len(deployments) == 1 and deployments[0]["rolloutState"] == "COMPLETED":
            return service
        return None

    return wait_for(check, timeout=timeout, what=f"service {name} to settle")


def create(ecs, cluster: str, name: str, task_definition: str, desired: int = 2, rollback=True):
    ecs.create_service(
        cluster=cluster,
        serviceName=name,
        taskDefinition=task_definition,
        desiredCount=desired,
        deploymentConfiguration={
            "deploymentCircuitBreaker": {"enable": True, "rollback": rollback},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        },
    )
    return settled(ecs, cluster, name)


def running_task_definitions(ecs, cluster: str, name: str) -> list[str]:
    arns = ecs.list_tasks(cluster=cluster, serviceName=name)["taskArns"]
    if not arns:
        return []
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
    return sorted(t["taskDefinitionArn"] for t in tasks)


def test_new_service_starts_its_tasks_and_reaches_steady_state(ecs, cluster):
    v1 = register(ecs, "web", UP)
    service = create(ecs, cluster, "web", v1)
    assert service["runningCount"] == 2
    assert service["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert running_task_definitions(ecs, cluster, "web") == [v1, v1]
    messages = [e["message"] for e in service["events"]]
    assert messages[0] == "(service web) has reached a steady state."
    assert any(m.startswith("(service web) has started 2 tasks:") for m in messages)


def test_update_to_a_healthy_revision_completes_and_old_tasks_go(ecs, cluster):
    v1 = register(ecs, "web", UP)
    create(ecs, cluster, "web", v1)
    old_tasks = ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"]
    v2 = register(ecs, "web", UP, environment=[{"name": "RELEASE", "value": "2"}])

    updated = ecs.update_service(cluster=cluster, service="web", taskDefinition=v2)["service"]
    primary, old = updated["deployments"]
    assert (primary["status"], primary["rolloutState"], primary["taskDefinition"]) == ("PRIMARY", "IN_PROGRESS", v2)
    assert (old["status"], old["taskDefinition"]) == ("ACTIVE", v1)

    service = settled(ecs, cluster, "web")
    [final] = service["deployments"]
    assert final["id"] == primary["id"]
    assert final["rolloutStateReason"] == f"ECS deployment {primary['id']} completed."
    assert final["runningCount"] == final["desiredCount"] == 2
    assert running_task_definitions(ecs, cluster, "web") == [v2, v2]
    old_described = ecs.describe_tasks(cluster=cluster, tasks=old_tasks)["tasks"]
    assert {t["lastStatus"] for t in old_described} == {"STOPPED"}
    assert {t["stopCode"] for t in old_described} == {"ServiceSchedulerInitiated"}
    messages = [e["message"] for e in service["events"]]
    assert f"(service web) (deployment {primary['id']}) deployment completed." in messages
    assert any(m.startswith("(service web) has stopped 2 running tasks:") for m in messages)


def test_update_to_a_crashing_image_fails_then_rolls_back(ecs, cluster):
    v1 = register(ecs, "web", UP)
    create(ecs, cluster, "web", v1)
    bad = register(ecs, "web", CRASH)
    ours = ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)["service"]["deployments"][0]

    def failed():
        service = describe(ecs, cluster, "web")
        mine = deployment(service, ours["id"])
        return service if mine and mine["rolloutState"] == "FAILED" else None

    service = wait_for(failed, timeout=60, what="the deployment to fail")
    mine = deployment(service, ours["id"])
    assert mine["status"] == "ACTIVE"
    assert mine["failedTasks"] >= 3  # the circuit breaker's minimum threshold
    assert mine["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
    rollback = service["deployments"][0]
    assert rollback["status"] == "PRIMARY" and rollback["taskDefinition"] == v1
    assert service["taskDefinition"] == v1
    messages = [e["message"] for e in service["events"]]
    assert f"(service web) (deployment {ours['id']}) deployment failed: tasks failed to start." in messages
    assert f"(service web) rolling back to deployment {rollback['id']}." in messages

    final = settled(ecs, cluster, "web")
    assert final["deployments"][0]["id"] == rollback["id"]
    assert running_task_definitions(ecs, cluster, "web") == [v1, v1]
    stopped = ecs.list_tasks(cluster=cluster, serviceName="web", desiredStatus="STOPPED")["taskArns"]
    crashed = [t for t in ecs.describe_tasks(cluster=cluster, tasks=stopped)["tasks"] if t["taskDefinitionArn"] == bad]
    assert crashed and all(
        t["containers"][0]["exitCode"] == 1 for t in crashed if t["stopCode"] == "EssentialContainerExited"
    )


def test_without_rollback_a_failed_deployment_stays_failed(ecs, cluster):
    v1 = register(ecs, "web", UP)
    create(ecs, cluster, "web", v1, desired=1, rollback=False)
    bad = register(ecs, "web", CRASH)
    ours = ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)["service"]["deployments"][0]

    def failed():
        mine = deployment(describe(ecs, cluster, "web"), ours["id"])
        return mine if mine["rolloutState"] == "FAILED" else None

    mine = wait_for(failed, timeout=60, what="the deployment to fail")
    assert mine["status"] == "PRIMARY"
    assert describe(ecs, cluster, "web")["taskDefinition"] == bad


def test_health_check_gates_completion(ecs, cluster):
    healthy_later = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 2; touch /tmp/ready; while :; do sleep 0.2; done"]
    health = {"command": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 1, "timeout": 1, "retries": 2}
    v1 = register(ecs, "web", healthy_later, healthCheck=health)
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=v1, desiredCount=1)

    def running():
        service = describe(ecs, cluster, "web")
        return service if service["runningCount"] == 1 else None

    service = wait_for(running, what="the task to run")
    assert service["deployments"][0]["rolloutState"] == "IN_PROGRESS"  # up, not yet healthy
    service = settled(ecs, cluster, "web")
    [arn] = ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"]
    task = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
    assert task["healthStatus"] == "HEALTHY"
    assert task["containers"][0]["healthStatus"] == "HEALTHY"


def test_force_new_deployment_replaces_tasks(ecs, cluster):
    v1 = register(ecs, "web", UP)
    create(ecs, cluster, "web", v1, desired=1)
    [before] = ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"]
    fresh = ecs.update_service(cluster=cluster, service="web", forceNewDeployment=True)["service"]
    assert len(fresh["deployments"]) == 2
    settled(ecs, cluster, "web")
    [after] = ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"]
    assert after != before


def test_code_deploy_and_external_services_are_not_rolled_out(ecs, cluster):
    v1 = register(ecs, "web", UP)
    for kind in ("CODE_DEPLOY", "EXTERNAL"):
        created = ecs.create_service(
            cluster=cluster,
            serviceName=kind.lower(),
            taskDefinition=v1,
            desiredCount=1,
            deploymentController={"type": kind},
        )["service"]
        assert created["deploymentController"] == {"type": kind}
        [primary] = created["deployments"]
        assert primary["status"] == "PRIMARY" and "rolloutState" not in primary
    # An ECS service beside them still rolls out: the scheduler copes with both.
    create(ecs, cluster, "ecs", v1, desired=1)
    for kind in ("CODE_DEPLOY", "EXTERNAL"):
        service = describe(ecs, cluster, kind.lower())
        assert service["deploymentController"] == {"type": kind}
        assert [d.get("rolloutState") for d in service["deployments"]] == [None]
        assert (service["runningCount"], service["pendingCount"]) == (0, 0)
        assert ecs.list_tasks(cluster=cluster, serviceName=kind.lower())["taskArns"] == []
        scaled = ecs.update_service(cluster=cluster, service=kind.lower(), desiredCount=2)["service"]
        assert scaled["desiredCount"] == 2 and scaled["runningCount"] == 0
        assert "rolloutState" not in scaled["deployments"][0]
        # A new revision goes through CodeDeploy or a task set, not UpdateService.
        with pytest.raises(ClientError) as refused:
            ecs.update_service(cluster=cluster, service=kind.lower(), taskDefinition=v1)
        assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
