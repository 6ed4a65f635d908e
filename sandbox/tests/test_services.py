"""Services roll out: UpdateService starts a deployment that completes, or
fails at the circuit-breaker threshold and rolls back."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError
from conftest import container_def, stopped, unique, wait_for

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


def test_without_circuit_breaker_failing_tasks_are_replaced_and_the_deployment_stays_in_progress(ecs, cluster):
    v1 = register(ecs, "web", UP)
    # No deploymentConfiguration: the circuit breaker is off, as by default on ECS.
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=v1, desiredCount=1)
    settled(ecs, cluster, "web")
    assert describe(ecs, cluster, "web")["deploymentConfiguration"]["deploymentCircuitBreaker"]["enable"] is False
    bad = register(ecs, "web", CRASH)
    ours = ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)["service"]["deployments"][0]

    def many_failed():
        mine = deployment(describe(ecs, cluster, "web"), ours["id"])
        return mine if mine["failedTasks"] >= 5 else None  # past the breaker's threshold of 3

    wait_for(many_failed, timeout=90, what="five failed tasks")
    service = describe(ecs, cluster, "web")
    primary, old = service["deployments"]
    assert (primary["id"], primary["status"], primary["rolloutState"]) == (ours["id"], "PRIMARY", "IN_PROGRESS")
    assert primary["rolloutStateReason"] == f"ECS deployment {ours['id']} in progress."
    # The old tasks keep serving while the new ones fail.
    assert (old["status"], old["taskDefinition"], old["runningCount"]) == ("ACTIVE", v1, 1)
    assert service["taskDefinition"] == bad
    assert not any("deployment failed" in e["message"] for e in service["events"])
    # It keeps trying: more tasks fail, and the deployment still does not fail.
    failed_so_far = deployment(service, ours["id"])["failedTasks"]
    wait_for(
        lambda: deployment(describe(ecs, cluster, "web"), ours["id"])["failedTasks"] > failed_so_far,
        timeout=30,
        what="another failed task",
    )
    assert deployment(describe(ecs, cluster, "web"), ours["id"])["rolloutState"] == "IN_PROGRESS"
    stopped = ecs.list_tasks(cluster=cluster, serviceName="web", desiredStatus="STOPPED")["taskArns"]
    crashed = ecs.describe_tasks(cluster=cluster, tasks=stopped[:100])["tasks"]
    assert {t["stopCode"] for t in crashed} == {"EssentialContainerExited"}


NEVER_HEALTHY = {"command": ["CMD-SHELL", "exit 1"], "interval": 1, "timeout": 1, "retries": 1}


def test_a_task_failing_its_health_checks_is_replaced_after_the_grace_period(ecs, cluster):
    checked = register(ecs, "web", UP, healthCheck=NEVER_HEALTHY)
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=checked, desiredCount=1)
    ecs.create_service(
        cluster=cluster,
        serviceName="graced",
        taskDefinition=checked,
        desiredCount=1,
        healthCheckGracePeriodSeconds=600,
    )
    [first] = wait_for(lambda: ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"], what="a task")

    def replaced():
        task = ecs.describe_tasks(cluster=cluster, tasks=[first])["tasks"][0]
        return task if task["lastStatus"] == "STOPPED" else None

    task = wait_for(replaced, timeout=60, what="the unhealthy task to be replaced")
    assert task["stopCode"] == "ServiceSchedulerInitiated"
    assert task["stoppedReason"] == "Task failed container health checks"
    assert task["healthStatus"] == "UNHEALTHY"
    assert task["containers"][0]["healthStatus"] == "UNHEALTHY"
    # It counts as a failed task of the deployment (on the scheduler's next look), and another
    # one takes its place.
    service = wait_for(
        lambda: (s := describe(ecs, cluster, "web"))["deployments"][0]["failedTasks"] >= 1 and s,
        what="the deployment to count the failed task",
    )
    messages = [e["message"] for e in service["events"]]
    assert f"(service web) (task {first.split('/')[-1]}) failed container health checks" in messages
    assert service["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    tasks = wait_for(
        lambda: [t for t in ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"] if t != first],
        what="a replacement task",
    )
    assert first not in tasks

    # Within its grace period a service's unhealthy task stays.
    [graced] = ecs.list_tasks(cluster=cluster, serviceName="graced")["taskArns"]

    def graced_unhealthy():
        return ecs.describe_tasks(cluster=cluster, tasks=[graced])["tasks"][0]["healthStatus"] == "UNHEALTHY"

    wait_for(graced_unhealthy, what="the graced task to be unhealthy")
    time.sleep(2)
    assert ecs.list_tasks(cluster=cluster, serviceName="graced")["taskArns"] == [graced]
    assert ecs.describe_tasks(cluster=cluster, tasks=[graced])["tasks"][0]["lastStatus"] == "RUNNING"


def test_an_unhealthy_task_goes_once_its_replacement_is_healthy(ecs, cluster):
    # Healthy for a few seconds, then failing its health check for good.
    sickens = ["/bin/sh", "-c", "trap 'exit 0' TERM; touch /tmp/ok; sleep 5; rm /tmp/ok; while :; do sleep 0.2; done"]
    health = {"command": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 1, "timeout": 1, "retries": 1}
    v1 = register(ecs, "web", sickens, healthCheck=health)
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=v1, desiredCount=1)  # maximumPercent 200
    settled(ecs, cluster, "web")
    [first] = ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"]

    def stopped_first():
        task = ecs.describe_tasks(cluster=cluster, tasks=[first])["tasks"][0]
        return task if task["lastStatus"] == "STOPPED" else None

    old = wait_for(stopped_first, timeout=60, what="the task to fall ill and be replaced")
    assert old["stoppedReason"] == "Task failed container health checks"
    stopped = ecs.list_tasks(cluster=cluster, serviceName="web", desiredStatus="STOPPED")["taskArns"]
    running = ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"]
    tasks = ecs.describe_tasks(cluster=cluster, tasks=[a for a in stopped + running if a != first])["tasks"]
    replacement = min(tasks, key=lambda t: t["createdAt"])
    # With room under maximumPercent, the replacement runs before the unhealthy task is stopped.
    assert replacement["startedAt"] < old["stoppingAt"]


def test_without_room_for_a_replacement_the_unhealthy_task_goes_first(ecs, cluster):
    checked = register(ecs, "web", UP, healthCheck=NEVER_HEALTHY)
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=checked,
        desiredCount=1,
        deploymentConfiguration={"maximumPercent": 100, "minimumHealthyPercent": 0},
    )
    [first] = wait_for(lambda: ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"], what="a task")

    def replacement():
        arns = [a for a in ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"] if a != first]
        return ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"][0] if arns else None

    second = wait_for(replacement, timeout=60, what="a replacement")
    old = ecs.describe_tasks(cluster=cluster, tasks=[first])["tasks"][0]
    assert old["stoppedReason"] == "Task failed container health checks"
    assert second["createdAt"] >= old["stoppingAt"]


def test_deleting_a_service_stops_its_tasks_and_no_other_clusters(ecs, cluster):
    """A service is named within its cluster: deleting `web` of one cluster
    stops its tasks and leaves another cluster's `web` running."""
    other = unique("other")
    ecs.create_cluster(clusterName=other)
    arn = register(ecs, unique("web"), UP)
    create(ecs, cluster, "web", arn, desired=1)
    create(ecs, other, "web", arn, desired=1)
    [gone] = ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"]
    [kept] = ecs.list_tasks(cluster=other, serviceName="web")["taskArns"]
    ecs.update_service(cluster=cluster, service="web", desiredCount=0)
    ecs.delete_service(cluster=cluster, service="web", force=True)
    assert stopped(ecs, cluster, gone)["lastStatus"] == "STOPPED"
    time.sleep(2)
    [task] = ecs.describe_tasks(cluster=other, tasks=[kept])["tasks"]
    assert task["lastStatus"] == "RUNNING"
