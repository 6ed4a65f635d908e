"""ECS that behaves like ECS: moto's ECS models and responses, patched to hand
tasks to the agent (`agent.py`), which runs them as real containers in the
local Docker Engine, and services to the scheduler (`scheduler.py`), which
drives their deployments. `install` applies the patches and creates both.

What moto 5.2.5 lacks and this module adds:
- RunTask without `memoryReservation` (moto answers 500), and without
  container instances for the EC2 launch type;
- ListTasks filtering on `desiredStatus` RUNNING by default, and on
  `serviceName`;
- StopTask, CreateService and UpdateService going through the agent and the
  scheduler; CreateService keeping the deployment configuration, capacity
  provider strategy, health check grace period and `enableExecuteCommand`.
"""

from __future__ import annotations

from moto.ecs import models as ecs_models
from moto.ecs import responses as ecs_responses
from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.models import EC2ContainerServiceBackend, Task

from .agent import Agent, resource_requirements
from .config import Endpoints, Tunables
from .scheduler import Scheduler

AGENT: Agent
SCHEDULER: Scheduler

DEFAULT_DEPLOYMENT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


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


def _update_service(self, props):
    cluster_str = props.get("cluster", "default")
    name = props["service"].split("/")[-1]
    before = self._get_service(cluster_str, name).task_definition
    # moto "forces" a deployment by renaming the current one; we start a new one.
    force = bool(props.pop("force_new_deployment", False))
    service = _moto_update_service(self, props)
    if service.task_definition:
        service.task_definition = self.describe_task_definition(service.task_definition).arn
    SCHEDULER.service_updated(service, new_revision=service.task_definition != before or force)
    return service


_moto_create_service_response = ecs_responses.EC2ContainerServiceResponse.create_service


def _create_service_response(self):
    result = _moto_create_service_response(self)
    service = self.ecs_backend._get_service(self._get_param("cluster", "default"), self._get_param("serviceName"))
    # moto drops these on CreateService; UpdateService stores what it is given.
    service.deployment_configuration = self._get_param("deploymentConfiguration") or DEFAULT_DEPLOYMENT_CONFIGURATION
    service.capacity_provider_strategy = self._get_param("capacityProviderStrategy")
    service.health_check_grace_period_seconds = self._get_param("healthCheckGracePeriodSeconds")
    service.enable_execute_command = bool(self._get_param("enableExecuteCommand"))
    SCHEDULER.service_created(service)
    return result


def install(endpoints: Endpoints, tunables: Tunables) -> None:
    global AGENT, SCHEDULER
    AGENT = Agent(endpoints, tunables)
    SCHEDULER = Scheduler(AGENT)
    AGENT.schedule_services = SCHEDULER.schedule_services
    Task.last_status = property(_last_status_get, _last_status_set)
    Task.advance = lambda self: None
    EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(resource_requirements)
    EC2ContainerServiceBackend.run_task = _run_task
    EC2ContainerServiceBackend.list_tasks = _list_tasks
    EC2ContainerServiceBackend.stop_task = _stop_task
    EC2ContainerServiceBackend.update_service = _update_service
    ecs_responses.EC2ContainerServiceResponse.create_service = _create_service_response
    assert ecs_models.Task is Task
