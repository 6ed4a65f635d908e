"""ECS that behaves like ECS: moto's ECS models and responses, patched to hand
tasks to the agent (`agent.py`), which runs them as real containers in the
local Docker Engine, and services to the scheduler (`scheduler.py`), which
drives their deployments. `install` applies the patches and creates both.

What moto 5.2.5 lacks and this module adds:
- RunTask without `memoryReservation` (moto answers 500), and without
  container instances for the EC2 launch type;
- DescribeTaskDefinition of a family without a revision: its latest ACTIVE
  revision, not the highest one whatever its status;
- RunTask honouring `clientToken` per cluster: the same token with the same
  parameters returns the original tasks, with other parameters it fails with
  ConflictException
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/ECS_Idempotency.html);
- ListTasks filtering on `desiredStatus` RUNNING by default, and on
  `serviceName`; refusing `startedBy` combined with another filter
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ListTasks.html);
- DescribeTasks reporting tasks it does not know (any more) under `failures`
  with reason MISSING
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/api_failures_messages.html);
- StopTask, CreateService and UpdateService going through the agent and the
  scheduler; CreateService keeping the deployment configuration, capacity
  provider strategy, health check grace period and `enableExecuteCommand`;
- UpdateService refusing what only CodeDeploy or task sets may change on a
  service with the CODE_DEPLOY or EXTERNAL deployment controller
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_UpdateService.html).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from moto.core.responses import ActionResult
from moto.ecs import models as ecs_models
from moto.ecs import responses as ecs_responses
from moto.ecs.exceptions import (
    EcsClientException,
    ECSException,
    InvalidParameterException,
    TaskDefinitionNotFoundException,
)
from moto.ecs.models import EC2ContainerServiceBackend, Task

from . import deployments, strategies
from .agent import Agent, resource_requirements
from .config import Endpoints, Tunables
from .scheduler import Scheduler, ecs_controlled

AGENT: Agent
SCHEDULER: Scheduler

DEFAULT_DEPLOYMENT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


class ConflictException(ECSException):
    """RunTask with a client token already used for other parameters."""

    code = "ConflictException"

    def __init__(self, message: str, resource_ids: list[str]):
        super().__init__(message)
        self.resourceIds = resource_ids  # serialized from ECS's error shape


@dataclass
class Issued:
    """What a RunTask client token was first used for."""

    request: str  # the parameters, canonical JSON
    task_arns: list[str]
    at: float  # time.monotonic()

    def live(self) -> bool:
        """Within the time to live, as it is set now (a test may shorten it)."""
        return time.monotonic() - self.at < AGENT.tunables.client_token_ttl_seconds


def client_tokens(backend: EC2ContainerServiceBackend) -> dict[tuple[str, str], Issued]:
    """(cluster name, token) -> Issued. Kept on the backend, so that a reset,
    which replaces every backend, forgets the tokens too."""
    return backend.__dict__.setdefault("_sb_client_tokens", {})


def _last_status_get(self: Task) -> str:
    return self.__dict__.get("_sb_last_status", "PROVISIONING")


def _last_status_set(self: Task, value: str) -> None:
    self.__dict__["_sb_last_status"] = value


def _run_task(
    self: EC2ContainerServiceBackend,
    cluster_str,
    task_definition_str,
    count,
    overrides,
    started_by,
    tags,
    launch_type,
    networking_configuration=None,
    group=None,
    platform_version=None,
    capacity_provider_strategy=None,
):
    if launch_type and launch_type not in ["EC2", "FARGATE", "EXTERNAL"]:
        raise InvalidParameterException("launch type should be one of [EC2,FARGATE,EXTERNAL]")
    if launch_type and capacity_provider_strategy:
        raise InvalidParameterException("Specify either Launch Type or Capacity Provider Strategy, but not both.")
    if not 1 <= count <= 10:
        raise InvalidParameterException("count must be between 1 and 10")
    cluster = self._get_cluster(cluster_str)
    task_definition = self.describe_task_definition(task_definition_str)
    if not capacity_provider_strategy and not launch_type:
        capacity_provider_strategy = cluster.default_capacity_provider_strategy
    provider = capacity_provider_strategy[0]["capacityProvider"] if capacity_provider_strategy else None
    return [
        AGENT.launch(
            self,
            cluster,
            task_definition,
            group=group or f"family:{task_definition.family}",
            overrides=overrides or {},
            started_by=started_by or "",
            tags=tags or [],
            launch_type=launch_type or ("" if provider else "EC2"),
            networking_configuration=networking_configuration,
            platform_version=platform_version,
            capacity_provider_name=provider,
        )
        for _ in range(count)
    ]


_moto_run_task_response = ecs_responses.EC2ContainerServiceResponse.run_task
_moto_describe_task_definition = EC2ContainerServiceBackend.describe_task_definition


def _describe_task_definition(self: EC2ContainerServiceBackend, task_definition_str: str):
    """A family named without a revision is its latest ACTIVE revision, and a
    family with none is not found
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTaskDefinition.html);
    moto takes the highest revision even when it is INACTIVE. A revision
    named outright is described whatever its status, as in ECS."""
    name = task_definition_str.split("/")[-1]
    if ":" in name:
        return _moto_describe_task_definition(self, task_definition_str)
    latest = latest_active(self.task_definitions.get(name, {}))
    if latest is None:
        raise TaskDefinitionNotFoundException()
    return latest


def latest_active(revisions: dict):
    """A family's latest ACTIVE revision (what ECS means by the family alone), if any."""
    active = [d for d in revisions.values() if d.status == "ACTIVE"]
    return max(active, key=lambda d: d.revision) if active else None


def _runnable(self) -> None:
    """ECS runs no new task of an INACTIVE revision, and a family named without
    a revision means its latest ACTIVE one; moto runs any revision, and takes
    the highest even when it is INACTIVE
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deregister-task-definition-v2.html)."""
    named = self._get_param("taskDefinition") or ""
    last = named.split("/")[-1]
    family, _, revision = last.partition(":")
    revisions = self.ecs_backend.task_definitions.get(family, {})
    if revision:
        definition = revisions.get(int(revision)) if revision.isdigit() else None
        if definition is not None and definition.status == "INACTIVE":
            raise EcsClientException("TaskDefinition is inactive")
        return
    active = latest_active(revisions)
    if active is None:
        if revisions:
            raise EcsClientException("TaskDefinition is inactive")
        return
    latest = active.arn
    if self.automated_parameter_parsing:
        self.params["taskDefinition"] = latest
    else:
        body = json.loads(self.body)
        body["taskDefinition"] = latest
        self.body = json.dumps(body)


def _run_task_response(self):
    """RunTask with its client token (every AWS SDK sends one): a retry with
    the same token and parameters in the same cluster returns the original
    tasks and starts none; other parameters are a conflict."""
    _runnable(self)
    token = self._get_param("clientToken")
    if not token:
        return _moto_run_task_response(self)
    backend = self.ecs_backend
    key = (backend._get_cluster(self._get_param("cluster", "default")).name, token)
    params = {k: v for k, v in self._get_params().items() if k not in ("clientToken", "cluster")}
    params.setdefault("count", 1)
    request = json.dumps(params, sort_keys=True, default=str)
    tokens = client_tokens(backend)
    issued = tokens.get(key)
    if issued and issued.live():
        if issued.request != request:
            raise ConflictException(
                f"The clientToken {token} was already used in this cluster with different parameters.",
                issued.task_arns,
            )
        return ActionResult(_original_tasks(backend, key[0], issued.task_arns))
    result = _moto_run_task_response(self)
    # SDKs send a fresh token with every RunTask: drop those past their time.
    for old in [k for k, v in tokens.items() if not v.live()]:
        del tokens[old]
    tokens[key] = Issued(request, [t.task_arn for t in result.result["tasks"]], time.monotonic())
    return result


def _original_tasks(backend, cluster_name: str, task_arns: list[str]) -> dict:
    """The tasks a client token started, as they are now; those already
    forgotten (stopped longer than the retention time) as MISSING."""
    known = backend.tasks.get(cluster_name, {})
    return {
        "tasks": [known[arn] for arn in task_arns if arn in known],
        "failures": [{"arn": arn, "reason": "MISSING"} for arn in task_arns if arn not in known],
    }


_moto_list_tasks = EC2ContainerServiceBackend.list_tasks


def _list_tasks(
    self,
    cluster_str=None,
    container_instance=None,
    family=None,
    started_by=None,
    service_name=None,
    desiredStatus=None,
):
    # ECS filters on desiredStatus RUNNING unless told otherwise, and moto
    # ignores `serviceName`.
    tasks = _moto_list_tasks(
        self, cluster_str, container_instance, family, started_by, None, desiredStatus or "RUNNING"
    )
    if service_name:
        name = service_name.split("/")[-1]
        tasks = [t for t in tasks if t.group == f"service:{name}"]
    return tasks


_moto_list_tasks_response = ecs_responses.EC2ContainerServiceResponse.list_tasks

# Filters that ListTasks refuses next to `startedBy`: "when you specify
# startedBy as the filter, it must be the only filter that you use".
NOT_WITH_STARTED_BY = ("containerInstance", "family", "serviceName", "desiredStatus", "launchType")


def _list_tasks_response(self):
    if self._get_param("startedBy"):
        others = [name for name in NOT_WITH_STARTED_BY if self._get_param(name)]
        if others:
            raise InvalidParameterException(
                f"startedBy must be the only filter; it cannot be combined with {', '.join(others)}."
            )
    return _moto_list_tasks_response(self)


_moto_describe_tasks_response = ecs_responses.EC2ContainerServiceResponse.describe_tasks


def _describe_tasks_response(self):
    """moto answers only with the tasks it has; ECS lists each task it does
    not know under `failures` with reason MISSING."""
    result = _moto_describe_tasks_response(self)
    # moto looks in every cluster; ECS only in the one asked about.
    cluster = self.ecs_backend._get_cluster(self._get_param("cluster", "default"))
    result.result["tasks"] = [t for t in result.result["tasks"] if t.cluster_name == cluster.name]
    found = {t.task_arn.split("/")[-1] for t in result.result["tasks"]}
    asked = self._get_param("tasks", [])
    result.result["failures"] = [
        {"arn": name, "reason": "MISSING"} for name in asked if name.split("/")[-1] not in found
    ]
    return result


def _stop_task(self, cluster_str, task_str, reason):
    cluster = self._get_cluster(cluster_str)
    task_id = task_str.split("/")[-1]
    for arn, task in self.tasks.get(cluster.name, {}).items():
        if arn.endswith(task_id):
            if task.desired_status != "STOPPED":
                AGENT.request_stop(task, "UserInitiated", reason or "Task stopped by user")
            return task
    raise InvalidParameterException("The referenced task was not found.")


_moto_update_service = EC2ContainerServiceBackend.update_service

# What UpdateService may not change on a service whose deployments CodeDeploy
# or task sets make (CODE_DEPLOY and EXTERNAL deployment controllers).
NOT_WITHOUT_ECS_CONTROLLER = {
    "task_definition": "taskDefinition",
    "network_configuration": "networkConfiguration",
    "platform_version": "platformVersion",
    "load_balancers": "loadBalancers",
}


def check_controller(service, props: dict) -> None:
    """UpdateService changes on a CODE_DEPLOY or EXTERNAL service only what
    ECS lets it change; moto would take anything."""
    if ecs_controlled(service):
        return
    refused = [api_name for key, api_name in NOT_WITHOUT_ECS_CONTROLLER.items() if props.get(key) is not None]
    if refused:
        kind = service.deployment_controller["type"]
        raise InvalidParameterException(
            f"Unable to update {', '.join(refused)} on a service with the {kind} deployment controller: "
            + ("create a CodeDeploy deployment." if kind == "CODE_DEPLOY" else "create a task set.")
        )


def _update_service(self, props):
    cluster_str = props.get("cluster", "default")
    name = props["service"].split("/")[-1]
    current = self._get_service(cluster_str, name)
    check_controller(current, props)
    strategies.validate(
        f"arn:aws:ecs:{self.region_name}:{self.account_id}",
        props.get("deployment_configuration") or getattr(current, "deployment_configuration", None),
        props.get("load_balancers") or current.load_balancers,
    )
    before = current.task_definition
    # moto "forces" a deployment by renaming the current one; we start a new one.
    force = bool(props.pop("force_new_deployment", False))
    service = _moto_update_service(self, props)
    if service.task_definition:
        service.task_definition = self.describe_task_definition(service.task_definition).arn
    SCHEDULER.service_updated(self, service, new_revision=service.task_definition != before or force)
    return service


_moto_create_service_response = ecs_responses.EC2ContainerServiceResponse.create_service


def _create_service_response(self):
    backend = self.ecs_backend
    strategies.validate(
        f"arn:aws:ecs:{backend.region_name}:{backend.account_id}",
        self._get_param("deploymentConfiguration"),
        self._get_param("loadBalancers"),
    )
    result = _moto_create_service_response(self)
    service = self.ecs_backend._get_service(self._get_param("cluster", "default"), self._get_param("serviceName"))
    # moto drops these on CreateService; UpdateService stores what it is given.
    service.deployment_configuration = self._get_param("deploymentConfiguration") or DEFAULT_DEPLOYMENT_CONFIGURATION
    service.capacity_provider_strategy = self._get_param("capacityProviderStrategy")
    service.health_check_grace_period_seconds = self._get_param("healthCheckGracePeriodSeconds")
    service.enable_execute_command = bool(self._get_param("enableExecuteCommand"))
    SCHEDULER.service_created(self.ecs_backend, service)
    return result


def _list_task_definitions_response(self) -> ActionResult:
    """ListTaskDefinitions as ECS pages it: sorted by family, then revision (`sort`
    ASC by default, DESC reverses), at most `maxResults` (1-100, default 100) per
    page with a `nextToken` for the rest. moto answers every match in insertion
    order, ignoring all three."""
    status = self._get_param("status", "ACTIVE")
    family = self._get_param("familyPrefix")
    limit = self._get_param("maxResults") or 100
    if not 1 <= int(limit) <= 100:
        raise InvalidParameterException("maxResults must be between 1 and 100.")
    found = [
        definition
        for revisions in self.ecs_backend.task_definitions.values()
        for definition in revisions.values()
        if definition.status == status and (family is None or definition.family == family)
    ]
    found.sort(key=lambda d: (d.family, d.revision), reverse=self._get_param("sort") == "DESC")
    start = int(self._get_param("nextToken") or 0)
    page = found[start : start + int(limit)]
    result = {"taskDefinitionArns": [d.arn for d in page]}
    if start + int(limit) < len(found):
        result["nextToken"] = str(start + int(limit))
    return ActionResult(result)


def install(endpoints: Endpoints, tunables: Tunables) -> None:
    global AGENT, SCHEDULER
    AGENT = Agent(endpoints, tunables)
    SCHEDULER = Scheduler(AGENT)
    AGENT.schedule_services = SCHEDULER.schedule_services
    Task.last_status = property(_last_status_get, _last_status_set)
    Task.advance = lambda self: None
    EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(resource_requirements)
    EC2ContainerServiceBackend.run_task = _run_task
    EC2ContainerServiceBackend.describe_task_definition = _describe_task_definition
    EC2ContainerServiceBackend.list_tasks = _list_tasks
    EC2ContainerServiceBackend.stop_task = _stop_task
    EC2ContainerServiceBackend.update_service = _update_service
    ecs_responses.EC2ContainerServiceResponse.create_service = _create_service_response
    ecs_responses.EC2ContainerServiceResponse.run_task = _run_task_response
    ecs_responses.EC2ContainerServiceResponse.list_tasks = _list_tasks_response
    ecs_responses.EC2ContainerServiceResponse.describe_tasks = _describe_tasks_response
    ecs_responses.EC2ContainerServiceResponse.list_task_definitions = _list_task_definitions_response
    deployments.install()
    strategies.install(SCHEDULER.strategies)
    assert ecs_models.Task is Task
