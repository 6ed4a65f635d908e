"""ECS's deployment strategies: BLUE_GREEN, LINEAR and CANARY through their
lifecycle stages, with bake times, lifecycle hooks, pause hooks and alarms;
what CreateService refuses; the circuit breaker's configurable threshold."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from conftest import unique, wait_for
from test_service_deployments import reaches, service_deployment
from test_services import CRASH, UP, describe, register, running_task_definitions

from berth_sandbox.seed import blue_green_balancer

ROLE = "arn:aws:iam::123456789012:role/ecs-infrastructure"


@pytest.fixture
def balancer(sandbox) -> dict:
    """An ALB with a production and a test listener rule, a blue and a green target group."""
    ec2, elbv2 = sandbox.client("ec2"), sandbox.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"us-east-1{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in enumerate("ab")
    ]
    return blue_green_balancer(elbv2, {"vpc": vpc, "subnets": subnets}, unique("alb")[:25], 80, ROLE)


def staged_service(sandbox, ecs, cluster: str, balancer: dict | None, config: dict, minute: float) -> str:
    """A service of `config`'s strategy on a first revision, settled (its bake times short);
    that revision. Minutes last `minute` seconds from then on."""
    sandbox.admin("POST", "config", {"minute_seconds": 0.05})
    v1 = register(ecs, "web", UP)
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=v1,
        desiredCount=1,
        loadBalancers=[balancer] if balancer else [],
        deploymentConfiguration={"maximumPercent": 200, "minimumHealthyPercent": 100, **config},
    )
    reaches(ecs, describe(ecs, cluster, "web")["currentServiceDeployment"], "SUCCESSFUL")
    sandbox.admin("POST", "config", {"minute_seconds": minute})
    return v1


def follow(ecs, arn: str, until: tuple[str, ...], timeout: float = 90) -> tuple[dict, list]:
    """Watches the deployment until one of `until`: its end, and each (stage,
    production weight, task definitions running) seen on the way, in order."""
    seen: list = []

    def check():
        deployment = service_deployment(ecs, arn)
        step = (
            deployment.get("lifecycleStage"),
            deployment["targetServiceRevision"].get("requestedProductionTrafficWeight"),
        )
        if not seen or seen[-1] != step:
            seen.append(step)
        return deployment if deployment["status"] in until else None

    return wait_for(check, timeout=timeout, interval=0.05, what=f"the deployment to be {until}"), seen


def test_create_service_refuses_what_a_strategy_lacks_and_creates_nothing(ecs, cluster, balancer):
    v1 = register(ecs, "web", UP)
    bare = {k: v for k, v in balancer.items() if k != "advancedConfiguration"}
    lambda_hook = {"hookTargetArn": "arn:aws:lambda:us-east-1:123456789012:function:f", "roleArn": ROLE}
    refused = [
        ("no bake time", {"strategy": "BLUE_GREEN"}, [balancer], "bakeTimeInMinutes"),
        ("no load balancer to shift", {"strategy": "LINEAR"}, [], "needs a load balancer"),
        ("no advanced configuration", {"strategy": "CANARY"}, [bare], "alternateTargetGroupArn"),
        (
            "a target group that does not exist",
            {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1},
            [{**balancer, "targetGroupArn": balancer["targetGroupArn"] + "x"}],
            "does not exist",
        ),
        (
            "a step too small",
            {"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 2.0}},
            [balancer],
            "stepPercent",
        ),
        (
            "hooks on a rolling update",
            {"lifecycleHooks": [{**lambda_hook, "lifecycleStages": ["POST_SCALE_UP"]}]},
            [],
            "lifecycleHooks are valid only",
        ),
        (
            "a pause at a traffic shift",
            {
                "strategy": "BLUE_GREEN",
                "bakeTimeInMinutes": 1,
                "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["TEST_TRAFFIC_SHIFT"]}],
            },
            [balancer],
            "cannot run at TEST_TRAFFIC_SHIFT",
        ),
        ("a strategy ECS does not have", {"strategy": "RED_BLACK"}, [], "strategy must be one of"),
    ]
    for case, config, balancers, words in refused:
        with pytest.raises(ClientError) as error:
            ecs.create_service(
                cluster=cluster,
                serviceName="web",
                taskDefinition=v1,
                desiredCount=1,
                loadBalancers=balancers,
                deploymentConfiguration=config,
            )
        assert error.value.response["Error"]["Code"] == "InvalidParameterException", case
        assert words in error.value.response["Error"]["Message"], case
        assert ecs.list_services(cluster=cluster)["serviceArns"] == [], case


def test_blue_green_goes_through_its_stages_and_succeeds_only_after_the_bake(sandbox, ecs, cluster, balancer):
    v1 = staged_service(sandbox, ecs, cluster, balancer, {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1}, 2.0)
    v2 = register(ecs, "web", UP)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=v2)["service"]["currentServiceDeployment"]

    def baking():
        deployment = service_deployment(ecs, arn)
        return deployment if deployment.get("lifecycleStage") == "BAKE_TIME" else None

    wait_for(baking, timeout=60, interval=0.05, what="the bake time")
    # Blue and green both run while the deployment bakes.
    assert running_task_definitions(ecs, cluster, "web") == sorted([v1, v2])
    done, seen = follow(ecs, arn, ("SUCCESSFUL",))
    assert [stage for stage, _ in seen][-2:] == ["BAKE_TIME", "CLEAN_UP"]
    assert done["targetServiceRevision"]["requestedProductionTrafficWeight"] == 100.0
    assert done["sourceServiceRevisions"][0]["requestedProductionTrafficWeight"] == 0.0
    wait_for(lambda: running_task_definitions(ecs, cluster, "web") == [v2], what="blue to scale in")
    legacy = describe(ecs, cluster, "web")["deployments"][0]
    assert legacy["rolloutState"] == "COMPLETED" and legacy["taskDefinition"] == v2


def test_a_blue_green_deployment_names_each_stage_in_order(sandbox, ecs, cluster, balancer):
    staged_service(sandbox, ecs, cluster, balancer, {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1}, 1.0)
    v2 = register(ecs, "web", UP)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=v2)["service"]["currentServiceDeployment"]
    _, seen = follow(ecs, arn, ("SUCCESSFUL",))
    order = [
        "PRE_SCALE_UP",
        "SCALE_UP",
        "POST_SCALE_UP",
        "TEST_TRAFFIC_SHIFT",
        "POST_TEST_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
        "CLEAN_UP",
    ]
    stages = [stage for stage, _ in seen if stage]
    # Each stage seen is in ECS's order; SCALE_UP and BAKE_TIME take long enough to be seen.
    assert [order.index(s) for s in stages] == sorted(order.index(s) for s in stages), stages
    assert {"SCALE_UP", "BAKE_TIME"} <= set(stages)


def test_linear_shifts_production_traffic_step_by_step(sandbox, ecs, cluster, balancer):
    linear = {"stepPercent": 34.0, "stepBakeTimeInMinutes": 1}
    staged_service(sandbox, ecs, cluster, balancer, {"strategy": "LINEAR", "linearConfiguration": linear}, 1.0)
    v2 = register(ecs, "web", UP)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=v2)["service"]["currentServiceDeployment"]
    done, seen = follow(ecs, arn, ("SUCCESSFUL",))
    weights = [w for stage, w in seen if stage == "PRODUCTION_TRAFFIC_SHIFT"]
    # Each step bakes a minute but the last: those two are seen, in order, then all of it.
    assert weights[:2] == [34.0, 68.0], seen
    assert done["targetServiceRevision"]["requestedProductionTrafficWeight"] == 100.0


def test_an_alarm_during_a_canarys_bake_rolls_it_back(sandbox, ecs, cluster, balancer):
    cloudwatch = sandbox.client("cloudwatch")
    alarm = unique("web-5xx")
    cloudwatch.put_metric_alarm(
        AlarmName=alarm,
        MetricName="HTTPCode_Target_5XX_Count",
        Namespace="AWS/ApplicationELB",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    config = {
        "strategy": "CANARY",
        "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 1},
        "alarms": {"alarmNames": [alarm], "enable": True, "rollback": True},
    }
    v1 = staged_service(sandbox, ecs, cluster, balancer, config, 30.0)
    v2 = register(ecs, "web", UP)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=v2)["service"]["currentServiceDeployment"]

    def canary_baking():
        deployment = service_deployment(ecs, arn)
        return deployment["targetServiceRevision"].get("requestedProductionTrafficWeight") == 10.0

    wait_for(canary_baking, timeout=60, interval=0.05, what="the canary step")
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="5xx")
    done = reaches(ecs, arn, "ROLLBACK_SUCCESSFUL")
    assert done["alarms"]["status"] == "TRIGGERED"
    assert done["alarms"]["triggeredAlarmNames"] == [alarm]
    assert "alarm" in done["rollback"]["reason"]
    assert describe(ecs, cluster, "web")["taskDefinition"] == v1
    assert running_task_definitions(ecs, cluster, "web") == [v1]


def test_a_lambda_hook_is_asked_again_until_it_answers_and_a_failure_rolls_back(sandbox, ecs, cluster, balancer):
    smoke = f"arn:aws:lambda:us-east-1:123456789012:function:{unique('smoke')}"
    hook = {"hookTargetArn": smoke, "roleArn": ROLE, "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}
    config = {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0, "lifecycleHooks": [hook]}
    sandbox.admin("POST", "hooks", {"function": smoke, "answers": [{"hookStatus": "IN_PROGRESS", "callBackDelay": 1}]})
    sandbox.admin("POST", "hooks", {"function": smoke, "answers": [{"hookStatus": "SUCCEEDED"}]})
    v1 = staged_service(sandbox, ecs, cluster, balancer, config, 1.0)
    assert len(sandbox.admin("GET", "hooks")[smoke]) == 1  # the first deployment asked once

    sandbox.admin(
        "POST",
        "hooks",
        {"function": smoke, "answers": [{"hookStatus": "IN_PROGRESS", "callBackDelay": 1}, {"hookStatus": "FAILED"}]},
    )
    v2 = register(ecs, "web", UP)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=v2)["service"]["currentServiceDeployment"]
    done = reaches(ecs, arn, "ROLLBACK_SUCCESSFUL")
    assert done["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT"
    [detail] = done["lifecycleHookDetails"]
    assert (detail["targetArn"], detail["status"]) == (smoke, "FAILED")
    calls = sandbox.admin("GET", "hooks")[smoke]
    assert len(calls) == 3
    assert calls[-1]["lifecycleStage"] == "POST_TEST_TRAFFIC_SHIFT" and calls[-1]["resourceArn"] == arn
    assert describe(ecs, cluster, "web")["taskDefinition"] == v1
    wait_for(lambda: running_task_definitions(ecs, cluster, "web") == [v1], what="green to stop")


def test_a_pause_hook_waits_for_continue_service_deployment(sandbox, ecs, cluster, balancer):
    pause = {"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]}
    config = {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0, "lifecycleHooks": [pause]}
    v1 = register(ecs, "web", UP)
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=v1,
        desiredCount=1,
        loadBalancers=[balancer],
        deploymentConfiguration=config,
    )

    def paused(arn):
        def check():
            deployment = service_deployment(ecs, arn)
            details = deployment.get("lifecycleHookDetails") or []
            return details[0] if details and details[0]["status"] == "AWAITING_ACTION" else None

        return wait_for(check, timeout=60, interval=0.05, what="the pause hook")

    first = describe(ecs, cluster, "web")["currentServiceDeployment"]
    hook = paused(first)
    assert hook["hookId"].startswith("ecs-pause-") and len(hook["hookId"]) == len("ecs-pause-") + 43
    assert hook["targetType"] == "PAUSE" and hook["timeoutAction"] == "ROLLBACK"
    assert service_deployment(ecs, first)["lifecycleStage"] == "POST_SCALE_UP"
    with pytest.raises(ClientError) as error:
        ecs.continue_service_deployment(serviceDeploymentArn=first, hookId="ecs-pause-nope")
    assert error.value.response["Error"]["Code"] == "InvalidParameterException"
    ecs.continue_service_deployment(serviceDeploymentArn=first, hookId=hook["hookId"], action="CONTINUE")
    reaches(ecs, first, "SUCCESSFUL")

    v2 = register(ecs, "web", UP)
    second = ecs.update_service(cluster=cluster, service="web", taskDefinition=v2)["service"][
        "currentServiceDeployment"
    ]
    hook = paused(second)
    ecs.continue_service_deployment(serviceDeploymentArn=second, hookId=hook["hookId"], action="ROLLBACK")
    done = reaches(ecs, second, "ROLLBACK_SUCCESSFUL")
    assert "ContinueServiceDeployment" in done["rollback"]["reason"]
    assert describe(ecs, cluster, "web")["taskDefinition"] == v1
    wait_for(lambda: running_task_definitions(ecs, cluster, "web") == [v1], what="green to stop")


def test_stop_service_deployment_rolls_a_blue_green_bake_back(sandbox, ecs, cluster, balancer):
    v1 = staged_service(sandbox, ecs, cluster, balancer, {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 5}, 60.0)
    v2 = register(ecs, "web", UP)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=v2)["service"]["currentServiceDeployment"]
    wait_for(
        lambda: service_deployment(ecs, arn).get("lifecycleStage") == "BAKE_TIME", timeout=60, what="the bake time"
    )
    ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")
    done = reaches(ecs, arn, "ROLLBACK_SUCCESSFUL")
    assert done["targetServiceRevision"]["requestedProductionTrafficWeight"] == 0.0
    assert describe(ecs, cluster, "web")["taskDefinition"] == v1
    assert running_task_definitions(ecs, cluster, "web") == [v1]


def test_the_circuit_breakers_threshold_can_be_a_count(ecs, cluster):
    v1 = register(ecs, "web", UP)
    ecs.create_service(
        cluster=cluster,
        serviceName="web",
        taskDefinition=v1,
        desiredCount=4,
        deploymentConfiguration={
            "deploymentCircuitBreaker": {
                "enable": True,
                "rollback": True,
                "thresholdConfiguration": {"type": "COUNT", "value": 1},
            }
        },
    )
    first = describe(ecs, cluster, "web")["currentServiceDeployment"]
    assert reaches(ecs, first, "SUCCESSFUL")["deploymentCircuitBreaker"]["threshold"] == 1
    bad = register(ecs, "web", CRASH)
    arn = ecs.update_service(cluster=cluster, service="web", taskDefinition=bad)["service"]["currentServiceDeployment"]
    done = reaches(ecs, arn, "ROLLBACK_SUCCESSFUL")
    breaker = done["deploymentCircuitBreaker"]
    assert breaker["status"] == "TRIGGERED" and breaker["threshold"] == 1 and breaker["failureCount"] >= 1
