"""The demo account: what a team running the example app on ECS already has
before berth's first deploy.

- a VPC with DNS hostnames, two subnets and a security group;
- the ECR repository `berth-example` holding the app's first release (tag `initial`);
- clusters `berth-stg` and `berth-prd`, the log group `/ecs/berth-example`;
- in each cluster a `web` service (our `app` container plus a `datadog-agent`
  sidecar whose image is not ours) with the circuit breaker and rollback on,
  and a `devops` service on the same image;
- an EventBridge rule that runs the web task family nightly, and an EventBridge
  Scheduler schedule that runs it hourly;
- the role `<app>-circleci` that a CircleCI job assumes with its OIDC token;
- with `blue_green`, in each cluster a `web-bg` service: a copy of `web` (one
  task) deployed by ECS blue/green (a one-minute bake time, its alarm
  `<app>-<env>-web-5xx` rolling back), behind an Application Load Balancer
  with a blue and a green target group and a production and a test listener
  rule.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker

from .config import ACCOUNT_ID, REGION, SANDBOX_DIR, Endpoints, registry_auth_config

APP = "berth-example"
EXAMPLE_DIR = SANDBOX_DIR.parent / "examples" / "rails-app"
FILE_SYSTEM = "fs-0b1e2a7c9d4f35e61"
DATADOG_IMAGE = "public.ecr.aws/datadog/agent:7"


@dataclass(frozen=True)
class At:
    """The account and region an environment is seeded in."""

    account: str = ACCOUNT_ID
    region: str = REGION


HOME = At()


def cluster_name(app: str, env: str) -> str:
    """`berth-stg` for the demo app; `<app>-stg` for a test's own copy."""
    return f"berth-{env}" if app == APP else f"{app}-{env}"


def client(endpoints: Endpoints, service: str, at: At = HOME):
    return endpoints.client(service, account=at.account, region=at.region)


def build_initial_image(repository_uri: str, context: Path = EXAMPLE_DIR, at: At = HOME) -> str:
    """Build the first release and push it to the repository, named as ECR
    names it (`repositoryUri`, which is the registry's address here)."""
    engine = docker.from_env()
    engine.images.build(
        path=str(context),
        tag=f"{repository_uri}:initial",
        target="release",
        buildargs={"BERTH_GIT_SHA": "initial"},
        rm=True,
    )
    for line in engine.api.push(
        repository_uri, tag="initial", stream=True, decode=True, auth_config=registry_auth_config(at.account, at.region)
    ):
        if "error" in line:
            raise RuntimeError(f"push of {repository_uri}:initial failed: {line['error']}")
    return f"{repository_uri}:initial"


def network(endpoints: Endpoints, app: str = APP, at: At = HOME) -> dict:
    ec2 = client(endpoints, "ec2", at)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{at.region}{zone}")["Subnet"]["SubnetId"]
        for cidr, zone in (("10.20.1.0/24", "a"), ("10.20.2.0/24", "b"))
    ]
    group = ec2.create_security_group(GroupName=f"{app}-app", Description="berth example app", VpcId=vpc)["GroupId"]
    return {"vpc": vpc, "subnets": subnets, "security_group": group}


def roles(endpoints: Endpoints, app: str = APP, at: At = HOME) -> dict:
    iam = client(endpoints, "iam", at)
    trust = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
        '"Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
    )
    names = {"execution": f"{app}-execution", "task": f"{app}-task", "events": f"{app}-events"}
    return {key: ensure_role(iam, name, trust)["Arn"] for key, name in names.items()}


def ensure_role(iam, name: str, trust: str) -> dict:
    """The role `name`, made unless the account has it: roles are global, and an app seeded in
    a second region of its account finds them there."""
    try:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName=name)["Role"]


def circleci_role(endpoints: Endpoints, app: str = APP, at: At = HOME) -> str:
    """The role a CircleCI job of the app assumes with its OIDC token: the account's OIDC provider
    for the sandbox's issuer (made once), and `<app>-circleci` trusting it, as CircleCI's OIDC
    guide sets them up."""
    from .sts import ISSUER, ORGANIZATION

    iam = client(endpoints, "iam", at)
    provider = f"arn:aws:iam::{at.account}:oidc-provider/{ISSUER.removeprefix('https://')}"
    if provider not in [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]:
        try:
            iam.create_open_id_connect_provider(Url=ISSUER, ClientIDList=[ORGANIZATION], ThumbprintList=["0" * 40])
        except iam.exceptions.EntityAlreadyExistsException:
            pass  # another app's seed made it meanwhile
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {f"{ISSUER.removeprefix('https://')}:aud": ORGANIZATION}},
            }
        ],
    }
    role = ensure_role(iam, f"{app}-circleci", json.dumps(trust))
    # What a deploy does (docs/configuration.md lists it); moto does not enforce IAM, AWS would.
    deploy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "ecr:*",
                    "ecs:*",
                    "events:ListRuleNamesByTarget",
                    "events:ListTargetsByRule",
                    "events:PutTargets",
                    "scheduler:ListSchedules",
                    "scheduler:GetSchedule",
                    "scheduler:UpdateSchedule",
                    "logs:GetLogEvents",
                    "s3:*",
                    "sts:GetCallerIdentity",
                    "tag:GetResources",
                    "iam:PassRole",
                ],
                "Resource": "*",
            }
        ],
    }
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="berth-deploy", PolicyDocument=json.dumps(deploy))
    return role["Arn"]


def web_task_definition(image: str, role_arns: dict, env: str, app: str = APP, at: At = HOME) -> dict:
    log_options = {
        "awslogs-group": f"/ecs/{app}",
        "awslogs-region": at.region,
        "awslogs-stream-prefix": env,
    }
    return {
        "family": f"{app}-{env}-web",
        "taskRoleArn": role_arns["task"],
        "executionRoleArn": role_arns["execution"],
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "512",
        "memory": "1024",
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "ephemeralStorage": {"sizeInGiB": 30},
        "volumes": [
            {
                "name": "data",
                "efsVolumeConfiguration": {
                    "fileSystemId": FILE_SYSTEM,
                    "rootDirectory": f"/{app}-{env}",
                    "transitEncryption": "ENABLED",
                },
            }
        ],
        "tags": [{"key": "app", "value": app}, {"key": "env", "value": env}],
        "containerDefinitions": [
            {
                "name": "app",
                "image": image,
                "essential": True,
                "command": ["bin/rails", "server"],
                "portMappings": [{"containerPort": 3000, "protocol": "tcp", "name": "http"}],
                "environment": [
                    {"name": "RAILS_ENV", "value": "production"},
                    {"name": "RAILS_LOG_TO_STDOUT", "value": "1"},
                ],
                "secrets": [
                    {
                        "name": "SECRET_KEY_BASE",
                        "valueFrom": f"arn:aws:ssm:{at.region}:{at.account}:parameter/{app}/{env}/secret_key_base",
                    }
                ],
                "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": False}],
                "healthCheck": {
                    "command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:3000/version || exit 1"],
                    "interval": 5,
                    "timeout": 2,
                    "retries": 3,
                    "startPeriod": 0,
                },
                "dockerLabels": {"com.datadoghq.tags.service": app},
                "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
                "logConfiguration": {"logDriver": "awslogs", "options": log_options},
            },
            {
                "name": "datadog-agent",
                "image": DATADOG_IMAGE,
                "essential": False,
                "cpu": 64,
                "memoryReservation": 256,
                "environment": [
                    {"name": "ECS_FARGATE", "value": "true"},
                    {"name": "DD_SITE", "value": "datadoghq.com"},
                ],
                "secrets": [
                    {
                        "name": "DD_API_KEY",
                        "valueFrom": f"arn:aws:ssm:{at.region}:{at.account}:parameter/{app}/datadog_api_key",
                    }
                ],
                "logConfiguration": {"logDriver": "awslogs", "options": log_options},
            },
        ],
    }


def devops_task_definition(image: str, role_arns: dict, env: str, app: str = APP, at: At = HOME) -> dict:
    web = web_task_definition(image, role_arns, env, app, at)
    container = dict(web["containerDefinitions"][0])
    container.pop("healthCheck")
    container.pop("portMappings")
    container["command"] = ["bin/rails", "devops"]
    return {**web, "family": f"{app}-{env}-devops", "containerDefinitions": [container]}


def wait_stable(endpoints: Endpoints, cluster: str, services: list[str], timeout: float = 120, at: At = HOME) -> None:
    ecs = client(endpoints, "ecs", at)
    deadline = time.monotonic() + timeout
    while True:
        described = ecs.describe_services(cluster=cluster, services=services)["services"]
        if all(len(s["deployments"]) == 1 and s["deployments"][0]["rolloutState"] == "COMPLETED" for s in described):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"services in {cluster} did not settle within {timeout}s")
        time.sleep(0.5)


def seed(
    endpoints: Endpoints,
    wait: bool = True,
    envs: tuple[str, ...] = ("stg", "prd"),
    app: str = APP,
    reset: bool = True,
    blue_green: bool = False,
    at: At = HOME,
) -> dict:
    """Create the demo account. `app` names a copy of it (repository, clusters, families, log
    group, EFS folder) so that several tests can each deploy their own without `reset`."""
    import requests

    if reset:
        requests.post(f"{endpoints.endpoint_url}/_sandbox/reset", timeout=120).raise_for_status()
    ecr = client(endpoints, "ecr", at)
    ecs = client(endpoints, "ecs", at)
    logs = client(endpoints, "logs", at)
    events = client(endpoints, "events", at)
    net = network(endpoints, app, at)
    role_arns = roles(endpoints, app, at)
    role_arns["circleci"] = circleci_role(endpoints, app, at)
    repository = ecr.create_repository(repositoryName=app)["repository"]
    image = build_initial_image(repository["repositoryUri"], at=at)
    logs.create_log_group(logGroupName=f"/ecs/{app}")
    # The secrets the task definitions name: ECS fails a task whose secret does not exist.
    ssm = client(endpoints, "ssm", at)
    secret_names = [f"/{app}/datadog_api_key"] + [f"/{app}/{env}/secret_key_base" for env in envs]
    for name in secret_names:
        ssm.put_parameter(Name=name, Value=f"sandbox-{uuid.uuid4().hex}", Type="SecureString", Overwrite=True)
    awsvpc = {
        "awsvpcConfiguration": {
            "subnets": net["subnets"],
            "securityGroups": [net["security_group"]],
            "assignPublicIp": "DISABLED",
        }
    }
    summary = {"network": net, "image": image, "clusters": {}, "circleci_role": role_arns["circleci"]}
    # A scheduled task's network, as EventBridge and Scheduler spell it (capitalised keys).
    scheduled_network = {
        "awsvpcConfiguration": {
            "Subnets": net["subnets"],
            "SecurityGroups": [net["security_group"]],
            "AssignPublicIp": "DISABLED",
        }
    }
    for env in envs:
        cluster = cluster_name(app, env)
        cluster_arn = ecs.create_cluster(clusterName=cluster)["cluster"]["clusterArn"]
        web = ecs.register_task_definition(**web_task_definition(image, role_arns, env, app, at))["taskDefinition"]
        devops = ecs.register_task_definition(**devops_task_definition(image, role_arns, env, app, at))[
            "taskDefinition"
        ]
        breaker = {
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        }
        for name, definition, count in (("web", web, 2), ("devops", devops, 1)):
            ecs.create_service(
                cluster=cluster,
                serviceName=name,
                taskDefinition=definition["taskDefinitionArn"],
                desiredCount=count,
                launchType="FARGATE",
                platformVersion="LATEST",
                networkConfiguration=awsvpc,
                deploymentConfiguration=breaker,
                propagateTags="SERVICE",
                tags=[{"key": "app", "value": app}, {"key": "env", "value": env}],
            )
        rule = f"{app}-{env}-nightly"
        events.put_rule(Name=rule, ScheduleExpression="cron(0 3 * * ? *)", State="ENABLED")
        events.put_targets(
            Rule=rule,
            Targets=[
                {
                    "Id": "cleanup",
                    "Arn": cluster_arn,
                    "RoleArn": role_arns["events"],
                    "EcsParameters": {
                        "TaskDefinitionArn": web["taskDefinitionArn"],
                        "TaskCount": 1,
                        "LaunchType": "FARGATE",
                        "NetworkConfiguration": scheduled_network,
                    },
                    "Input": '{"containerOverrides":[{"name":"app","command":["bin/rails","db:migrate"]}]}',
                }
            ],
        )
        # A newer account's batch job: an EventBridge Scheduler schedule, every field set.
        schedule = f"{app}-{env}-hourly"
        client(endpoints, "scheduler", at).create_schedule(
            Name=schedule,
            ScheduleExpression="cron(15 * * * ? *)",
            ScheduleExpressionTimezone="Europe/Berlin",
            FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 10},
            Description="hourly report",
            State="ENABLED",
            StartDate=int(time.time()) + 86400,
            EndDate=int(time.time()) + 365 * 86400,
            ActionAfterCompletion="NONE",
            KmsKeyArn=f"arn:aws:kms:{at.region}:{at.account}:key/0b1e2a7c-0000-4000-8000-9d4f35e61000",
            Target={
                "Arn": cluster_arn,
                "RoleArn": role_arns["events"],
                "EcsParameters": {
                    "TaskDefinitionArn": web["taskDefinitionArn"],
                    "TaskCount": 1,
                    "LaunchType": "FARGATE",
                    "PlatformVersion": "LATEST",
                    "NetworkConfiguration": scheduled_network,
                    "Tags": [{"job": "report"}],
                },
                "Input": '{"containerOverrides":[{"name":"app","command":["bin/rails","runner","Report.hourly"]}]}',
                "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 3},
                "DeadLetterConfig": {"Arn": f"arn:aws:sqs:{at.region}:{at.account}:{app}-dead-letters"},
            },
        )
        if blue_green:
            blue_green_copy(endpoints, net, (app, env, cluster, web["taskDefinitionArn"]), awsvpc, at)
        summary["clusters"][cluster] = {
            "services": ["web", "devops"],
            "task_definitions": [web["taskDefinitionArn"], devops["taskDefinitionArn"]],
            "schedule": rule,
            "scheduler": schedule,
        }
    if wait:
        for env in envs:
            services = ["web", "devops"] + (["web-bg"] if blue_green else [])
            wait_stable(endpoints, cluster_name(app, env), services, at=at)
    return summary


def blue_green_balancer(elbv2, net: dict, name: str, port: int, role: str) -> dict:
    """An Application Load Balancer for ECS blue/green: a blue and a green target group, a
    production (port 80) and a test (port 8080) listener rule; the service's `loadBalancers`
    entry that names them."""
    alb = elbv2.create_load_balancer(Name=f"{name}-lb", Subnets=net["subnets"])["LoadBalancers"][0]
    groups = [
        elbv2.create_target_group(
            Name=f"{name}-{color}", Protocol="HTTP", Port=port, VpcId=net["vpc"], TargetType="ip"
        )["TargetGroups"][0]["TargetGroupArn"]
        for color in ("b", "g")
    ]
    rules = []
    for listener_port in (80, 8080):
        forward = [{"Type": "forward", "TargetGroupArn": groups[0]}]
        listener = elbv2.create_listener(
            LoadBalancerArn=alb["LoadBalancerArn"], Protocol="HTTP", Port=listener_port, DefaultActions=forward
        )["Listeners"][0]["ListenerArn"]
        rule = elbv2.create_rule(
            ListenerArn=listener,
            Priority=1,
            Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
            Actions=forward,
        )
        rules.append(rule["Rules"][0]["RuleArn"])
    return {
        "targetGroupArn": groups[0],
        "containerName": "app",
        "containerPort": port,
        "advancedConfiguration": {
            "alternateTargetGroupArn": groups[1],
            "productionListenerRule": rules[0],
            "testListenerRule": rules[1],
            "roleArn": role,
        },
    }


def blue_green_copy(endpoints: Endpoints, net: dict, names: tuple[str, str, str, str], awsvpc: dict, at: At = HOME):
    """`web-bg`: `web` deployed by ECS blue/green behind its load balancer (`names`: the app,
    the environment, the cluster and the web revision)."""
    app, env, cluster, web = names
    name = f"{app}-{env}"[-26:].strip("-")
    role = f"arn:aws:iam::{at.account}:role/{app}-ecs-infrastructure"
    balancer = blue_green_balancer(client(endpoints, "elbv2", at), net, name, 3000, role)
    alarm = f"{app}-{env}-web-5xx"
    client(endpoints, "cloudwatch", at).put_metric_alarm(
        AlarmName=alarm,
        MetricName="HTTPCode_Target_5XX_Count",
        Namespace="AWS/ApplicationELB",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    ecs = client(endpoints, "ecs", at)
    ecs.create_service(
        cluster=cluster,
        serviceName="web-bg",
        taskDefinition=web,
        desiredCount=1,
        launchType="FARGATE",
        platformVersion="LATEST",
        networkConfiguration=awsvpc,
        loadBalancers=[balancer],
        propagateTags="SERVICE",
    )
    # Blue/green from its next deployment on: changing the strategy starts none, and the first
    # one does not wait out a bake time.
    ecs.update_service(
        cluster=cluster,
        service="web-bg",
        deploymentConfiguration={
            "strategy": "BLUE_GREEN",
            "bakeTimeInMinutes": 1,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "alarms": {"alarmNames": [alarm], "enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        },
    )
