"""RunTask really runs containers and reports what they did."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError
from conftest import container_def, log_lines, stopped, unique, wait_for


def run(ecs, cluster, family, containers, run=None, **kwargs):
    # Task-level memory only, as on Fargate: moto's RunTask wants memoryReservation.
    kwargs.setdefault("memory", "512")
    ecs.register_task_definition(family=family, containerDefinitions=containers, **kwargs)
    response = ecs.run_task(cluster=cluster, taskDefinition=family, **(run or {}))
    assert response["failures"] == []
    return response["tasks"][0]


def test_exit_code_and_output_reach_ecs_and_cloudwatch(ecs, logs, cluster):
    task = run(
        ecs,
        cluster,
        unique("exit3"),
        [container_def("app", ["/bin/sh", "-c", "echo migrating; echo done; sleep 0.1; echo 'oops' >&2; exit 3"])],
    )
    assert task["lastStatus"] == "PROVISIONING"
    done = stopped(ecs, cluster, task["taskArn"])
    assert done["desiredStatus"] == "STOPPED"
    assert done["stopCode"] == "EssentialContainerExited"
    assert done["stoppedReason"] == "Essential container in task exited"
    assert done["stoppedAt"] >= done["startedAt"]
    [app] = done["containers"]
    assert app["exitCode"] == 3
    assert app["lastStatus"] == "STOPPED"
    # stdout and stderr are separate pipes: only the order within each holds.
    assert log_lines(logs, "app", task["taskArn"]) == ["migrating", "done", "oops"]


def test_two_containers_each_report_their_own_exit_code(ecs, cluster):
    task = run(
        ecs,
        cluster,
        unique("pair"),
        [
            container_def("app", ["/bin/sh", "-c", "sleep 1; exit 0"]),
            container_def(
                "sidecar",
                ["/bin/sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.2; done"],
                essential=False,
            ),
        ],
    )
    done = stopped(ecs, cluster, task["taskArn"])
    codes = {c["name"]: c.get("exitCode") for c in done["containers"]}
    assert codes == {"app": 0, "sidecar": 7}


def test_non_essential_exit_keeps_the_task_running(ecs, cluster):
    task = run(
        ecs,
        cluster,
        unique("nonessential"),
        [
            container_def("app", ["/bin/sh", "-c", "sleep 30"]),
            container_def("helper", ["/bin/sh", "-c", "exit 5"], essential=False),
        ],
    )

    def helper_done():
        described = ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]
        helper = next(c for c in described["containers"] if c["name"] == "helper")
        return described if helper.get("exitCode") == 5 else None

    described = wait_for(helper_done, what="helper to exit")
    assert described["lastStatus"] == "RUNNING"
    ecs.stop_task(cluster=cluster, task=task["taskArn"], reason="test over")
    done = stopped(ecs, cluster, task["taskArn"])
    assert done["stopCode"] == "UserInitiated"
    assert done["stoppedReason"] == "test over"


def test_overrides_and_environment_apply(ecs, logs, cluster):
    family = unique("override")
    task = run(
        ecs,
        cluster,
        family,
        [
            container_def(
                "app",
                ["/bin/sh", "-c", "echo never"],
                environment=[{"name": "GREETING", "value": "hello"}, {"name": "WHO", "value": "def"}],
            )
        ],
        run={
            "overrides": {
                "containerOverrides": [
                    {
                        "name": "app",
                        "command": ["/bin/sh", "-c", "echo $GREETING $WHO"],
                        "environment": [{"name": "WHO", "value": "override"}],
                    }
                ]
            },
            "startedBy": "berth/deploy-1",
        },
    )
    done = stopped(ecs, cluster, task["taskArn"])
    assert done["startedBy"] == "berth/deploy-1"
    assert log_lines(logs, "app", task["taskArn"]) == ["hello override"]
    # startedBy alone keeps the default status filter RUNNING.
    assert ecs.list_tasks(cluster=cluster, startedBy="berth/deploy-1")["taskArns"] == []


def test_image_that_cannot_be_pulled_fails_to_start(ecs, cluster):
    task = run(
        ecs,
        cluster,
        unique("nopull"),
        [container_def("app", ["true"], image="registry.example.invalid/nothing:1")],
    )
    done = stopped(ecs, cluster, task["taskArn"])
    assert done["stopCode"] == "TaskFailedToStart"
    assert done["stoppedReason"].startswith("CannotPullContainerError")
    assert "exitCode" not in done["containers"][0]


def test_missing_log_group_fails_to_start_like_fargate(ecs, cluster):
    definition = container_def("app", ["true"])
    definition["logConfiguration"]["options"]["awslogs-group"] = "/ecs/does-not-exist"
    task = run(ecs, cluster, unique("nolog"), [definition])
    done = stopped(ecs, cluster, task["taskArn"])
    assert done["stopCode"] == "TaskFailedToStart"
    assert "ResourceInitializationError" in done["stoppedReason"]


def test_a_secret_that_does_not_exist_fails_the_start_as_ecs_words_it(sandbox, ecs, cluster):
    """ECS reads `secrets` before it pulls: a parameter or secret that is not there fails the
    task's start (https://repost.aws/knowledge-center/ecs-unable-to-pull-secrets); one that is
    there lets it run."""
    ssm = sandbox.client("ssm")
    ssm.put_parameter(Name="/tasks/present", Value="v", Type="SecureString", Overwrite=True)
    secrets = sandbox.client("secretsmanager")
    secret_arn = secrets.create_secret(Name=unique("present"), SecretString="s")["ARN"]
    prefix = "arn:aws:ssm:us-east-1:123456789012:parameter"
    cases = [
        (f"{prefix}/tasks/absent", "invalid ssm parameters: /tasks/absent"),
        ("/tasks/absent-by-name", "invalid ssm parameters: /tasks/absent-by-name"),
        (
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-AbCdEf",
            "ResourceNotFoundException: Secrets Manager can't find the specified secret",
        ),
    ]
    for value_from, says in cases:
        definition = container_def("app", ["true"], secrets=[{"name": "S", "valueFrom": value_from}])
        done = stopped(ecs, cluster, run(ecs, cluster, unique("nosecret"), [definition])["taskArn"])
        assert done["stopCode"] == "TaskFailedToStart", value_from
        reason = done["stoppedReason"]
        assert reason.startswith("ResourceInitializationError: unable to pull secrets or registry auth"), reason
        assert says in reason, reason
        assert "pullStartedAt" not in done, "nothing was pulled"
    present = [{"name": "A", "valueFrom": f"{prefix}/tasks/present"}, {"name": "B", "valueFrom": f"{secret_arn}:key::"}]
    definition = container_def("app", ["true"], secrets=present)
    done = stopped(ecs, cluster, run(ecs, cluster, unique("secret"), [definition])["taskArn"])
    assert done["stopCode"] == "EssentialContainerExited", done.get("stoppedReason")
    assert done["containers"][0]["exitCode"] == 0


def test_efs_volume_is_shared_between_tasks(ecs, logs, cluster):
    volumes = [{"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-12345678", "rootDirectory": "/app"}}]
    mounts = [{"sourceVolume": "data", "containerPath": "/data"}]
    writer = run(
        ecs,
        cluster,
        unique("efs-writer"),
        [container_def("app", ["/bin/sh", "-c", "echo 20260101 > /data/schema"], mountPoints=mounts)],
        volumes=volumes,
    )
    assert stopped(ecs, cluster, writer["taskArn"])["containers"][0]["exitCode"] == 0
    reader = run(
        ecs,
        cluster,
        unique("efs-reader"),
        [container_def("app", ["/bin/sh", "-c", "cat /data/schema"], mountPoints=mounts)],
        volumes=volumes,
    )
    stopped(ecs, cluster, reader["taskArn"])
    assert log_lines(logs, "app", reader["taskArn"]) == ["20260101"]


def test_awsvpc_fargate_task_without_memory_reservation(sandbox, ecs, cluster):
    ec2 = sandbox.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="tests", Description="tests", VpcId=vpc)["GroupId"]
    family = unique("fargate")
    ecs.register_task_definition(
        family=family,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[container_def("app", ["/bin/sh", "-c", "exit 0"])],
    )
    response = ecs.run_task(
        cluster=cluster,
        taskDefinition=family,
        launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}},
    )
    done = stopped(ecs, cluster, response["tasks"][0]["taskArn"])
    assert done["containers"][0]["exitCode"] == 0
    assert done["launchType"] == "FARGATE"


SLEEP = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]


def error_of(call, **kwargs) -> dict:
    """The parsed error response of a call that must fail."""
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return raised.value.response


def running(ecs, cluster: str, task_arn: str) -> dict:
    def check():
        task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
        return task if task["lastStatus"] == "RUNNING" else None

    return wait_for(check, what=f"task {task_arn} to run")


def test_started_by_must_be_the_only_filter(ecs, cluster):
    family = unique("startedby")
    task = run(ecs, cluster, family, [container_def("app", SLEEP)], run={"startedBy": "berth/deploy-2"})
    running(ecs, cluster, task["taskArn"])
    assert ecs.list_tasks(cluster=cluster, startedBy="berth/deploy-2")["taskArns"] == [task["taskArn"]]
    others = {
        "desiredStatus": "RUNNING",
        "family": family,
        "serviceName": "web",
        "containerInstance": "ci-1",
        "launchType": "EC2",
    }
    for name, value in others.items():
        error = error_of(ecs.list_tasks, cluster=cluster, startedBy="berth/deploy-2", **{name: value})
        assert error["Error"]["Code"] == "InvalidParameterException", name
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    # maxResults and nextToken are not filters.
    assert ecs.list_tasks(cluster=cluster, startedBy="berth/deploy-2", maxResults=10)["taskArns"] == [task["taskArn"]]
    ecs.stop_task(cluster=cluster, task=task["taskArn"])
    stopped(ecs, cluster, task["taskArn"])
    # startedBy alone still filters on the default status RUNNING.
    assert ecs.list_tasks(cluster=cluster, startedBy="berth/deploy-2")["taskArns"] == []


def test_client_token_retry_returns_the_original_task(ecs, cluster):
    family = unique("token")
    other = unique("token-other")
    for name in (family, other):
        ecs.register_task_definition(family=name, memory="512", containerDefinitions=[container_def("app", SLEEP)])
    request = {"cluster": cluster, "taskDefinition": family, "startedBy": "berth/deploy-3", "clientToken": "tok-1"}
    first = ecs.run_task(**request)["tasks"]
    again = ecs.run_task(**request)
    assert [t["taskArn"] for t in again["tasks"]] == [t["taskArn"] for t in first]
    assert again["failures"] == []
    assert ecs.list_tasks(cluster=cluster, family=family)["taskArns"] == [first[0]["taskArn"]]

    changed = [
        {"taskDefinition": other},
        {"startedBy": "berth/deploy-4"},
        {"count": 2},
        {"overrides": {"containerOverrides": [{"name": "app", "command": ["true"]}]}},
        {"networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}},
    ]
    for change in changed:
        error = error_of(ecs.run_task, **{**request, **change})
        assert error["Error"]["Code"] == "ConflictException", change
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert error.get("resourceIds") == [first[0]["taskArn"]]
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == [first[0]["taskArn"]]

    # Tokens are per cluster: the same one starts a task in another cluster.
    ecs.create_cluster(clusterName=f"{cluster}-b")
    elsewhere = ecs.run_task(**{**request, "cluster": f"{cluster}-b"})["tasks"]
    assert elsewhere[0]["taskArn"] != first[0]["taskArn"]


def test_client_token_is_forgotten_after_its_time_to_live_and_on_reset(sandbox, ecs, cluster):
    family = unique("token-ttl")
    ecs.register_task_definition(family=family, memory="512", containerDefinitions=[container_def("app", SLEEP)])
    first = ecs.run_task(cluster=cluster, taskDefinition=family, clientToken="tok-ttl")["tasks"][0]
    sandbox.admin("POST", "config", {"client_token_ttl_seconds": 0.5})
    time.sleep(0.6)
    later = ecs.run_task(cluster=cluster, taskDefinition=family, clientToken="tok-ttl")["tasks"][0]
    assert later["taskArn"] != first["taskArn"]

    sandbox.admin("POST", "config", {"client_token_ttl_seconds": 86400})
    ecs.run_task(cluster=cluster, taskDefinition=family, clientToken="tok-reset")
    sandbox.admin("POST", "reset")
    ecs.create_cluster(clusterName=cluster)
    other = unique("token-reset")
    ecs.register_task_definition(family=other, memory="512", containerDefinitions=[container_def("app", SLEEP)])
    # Different parameters, and no conflict: the reset forgot the token.
    assert ecs.run_task(cluster=cluster, taskDefinition=other, clientToken="tok-reset")["tasks"]


def test_stopped_tasks_are_forgotten_after_the_retention_time(sandbox, ecs, cluster):
    sandbox.admin("POST", "config", {"stopped_task_retention_seconds": 2})
    task = run(ecs, cluster, unique("retention"), [container_def("app", ["/bin/sh", "-c", "exit 0"])])
    arn = task["taskArn"]
    stopped(ecs, cluster, arn)
    assert ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"] == [arn]

    def forgotten():
        described = ecs.describe_tasks(cluster=cluster, tasks=[arn])
        return described if not described["tasks"] else None

    described = wait_for(forgotten, timeout=15, what="the stopped task to be forgotten")
    assert described["failures"] == [{"arn": arn, "reason": "MISSING"}]
    assert ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"] == []
    assert arn not in [t["taskArn"] for t in sandbox.admin("GET", "tasks")]


def test_describe_tasks_reports_unknown_tasks_as_missing(ecs, cluster):
    task = run(ecs, cluster, unique("missing"), [container_def("app", SLEEP)])
    ecs.create_cluster(clusterName=f"{cluster}-b")
    unknown = task["taskArn"].rsplit("/", 1)[0] + "/0123456789abcdef0123456789abcdef"
    described = ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"], unknown])
    assert [t["taskArn"] for t in described["tasks"]] == [task["taskArn"]]
    assert described["failures"] == [{"arn": unknown, "reason": "MISSING"}]
    # A task is described only in its own cluster.
    elsewhere = ecs.describe_tasks(cluster=f"{cluster}-b", tasks=[task["taskArn"]])
    assert elsewhere["tasks"] == []
    assert elsewhere["failures"] == [{"arn": task["taskArn"], "reason": "MISSING"}]


def test_essential_exit_stops_the_others_with_sigterm_then_sigkill(sandbox, ecs, cluster):
    sandbox.admin("POST", "config", {"stop_timeout_seconds": 2})
    task = run(
        ecs,
        cluster,
        unique("sigterm"),
        [
            container_def("app", ["/bin/sh", "-c", "sleep 1; exit 0"]),
            # Handles SIGTERM by exiting as a process killed by it would: 128 + 15.
            container_def(
                "polite", ["/bin/sh", "-c", "trap 'exit 143' TERM; while true; do sleep 1; done"], essential=False
            ),
            # PID 1 without a handler: SIGTERM does nothing, SIGKILL (128 + 9) ends it. Its own
            # stopTimeout is longer than the agent's cap.
            container_def("stubborn", ["sleep", "3600"], essential=False, stopTimeout=120),
        ],
    )
    done = stopped(ecs, cluster, task["taskArn"], timeout=30)
    assert done["stopCode"] == "EssentialContainerExited"
    codes = {c["name"]: c.get("exitCode") for c in done["containers"]}
    assert codes == {"app": 0, "polite": 143, "stubborn": 137}
    # SIGKILL came after the capped timeout, not after 120 s.
    assert (done["stoppedAt"] - done["stoppingAt"]).total_seconds() < 15


def test_failing_health_check_marks_a_standalone_task_unhealthy_and_it_keeps_running(ecs, cluster):
    health = {"command": ["CMD-SHELL", "exit 1"], "interval": 1, "timeout": 1, "retries": 1}
    task = run(
        ecs,
        cluster,
        unique("unhealthy"),
        [container_def("app", SLEEP, healthCheck=health), container_def("helper", SLEEP, essential=False)],
    )

    def unhealthy():
        described = ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]
        return described if described["healthStatus"] == "UNHEALTHY" else None

    described = wait_for(unhealthy, what="the task to be unhealthy")
    containers = {c["name"]: c["healthStatus"] for c in described["containers"]}
    assert containers == {"app": "UNHEALTHY", "helper": "UNKNOWN"}
    # Not part of a service: nothing replaces it, it runs on.
    time.sleep(2)
    assert ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]["lastStatus"] == "RUNNING"


def test_list_task_definitions_sorts_and_pages_as_ecs_does(ecs):
    family = unique("paged")
    arns = register_revisions(ecs, family, 3)
    page = ecs.list_task_definitions(familyPrefix=family, sort="DESC", maxResults=2)
    assert page["taskDefinitionArns"] == [arns[2], arns[1]]
    rest = ecs.list_task_definitions(familyPrefix=family, sort="DESC", maxResults=2, nextToken=page["nextToken"])
    assert rest["taskDefinitionArns"] == [arns[0]]
    assert "nextToken" not in rest
    assert ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"] == arns


def test_an_inactive_revision_runs_no_new_task(ecs, cluster):
    family = unique("retired")
    arns = register_revisions(ecs, family, 2)
    ecs.deregister_task_definition(taskDefinition=arns[1])
    with pytest.raises(ClientError) as caught:
        ecs.run_task(cluster=cluster, taskDefinition=arns[1])
    assert caught.value.response["Error"]["Code"] == "ClientException"
    # The family alone means its latest ACTIVE revision.
    [task] = ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"]
    assert task["taskDefinitionArn"] == arns[0]


def test_a_family_alone_describes_its_latest_active_revision(ecs):
    family = unique("described")
    arns = register_revisions(ecs, family, 3)
    ecs.deregister_task_definition(taskDefinition=arns[2])
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["taskDefinitionArn"] == arns[1]
    # Named outright, an INACTIVE revision is still described.
    inactive = ecs.describe_task_definition(taskDefinition=arns[2])["taskDefinition"]
    assert inactive["status"] == "INACTIVE"
    # A family with no ACTIVE revision left is not found.
    for arn in arns[:2]:
        ecs.deregister_task_definition(taskDefinition=arn)
    with pytest.raises(ClientError) as caught:
        ecs.describe_task_definition(taskDefinition=family)
    assert caught.value.response["Error"]["Code"] == "ClientException"


def register_revisions(ecs, family: str, count: int) -> list[str]:
    """`count` revisions of `family`, oldest first, by ARN."""
    return [
        ecs.register_task_definition(family=family, containerDefinitions=[container_def("app", memory=64)])[
            "taskDefinition"
        ]["taskDefinitionArn"]
        for _ in range(count)
    ]
