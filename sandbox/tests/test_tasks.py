"""RunTask really runs containers and reports what they did."""

from __future__ import annotations

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
    listed = ecs.list_tasks(cluster=cluster, startedBy="berth/deploy-1", desiredStatus="STOPPED")
    assert listed["taskArns"] == [task["taskArn"]]
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
