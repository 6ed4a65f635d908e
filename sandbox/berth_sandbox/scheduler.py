"""The ECS service scheduler: deployments, rollouts and service events, run
once per agent tick for each ECS backend.

What it adds to moto's services:
- `CreateService` and `UpdateService` starting a new PRIMARY deployment,
  rollouts that complete, fail at the circuit-breaker threshold and roll back
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-circuit-breaker.html);
- a service's tasks started, scaled and replaced to match its `desiredCount`
  and its PRIMARY deployment, through the agent;
- without the circuit breaker, failing tasks replaced for ever: the deployment
  stays IN_PROGRESS while `failedTasks` grows, since only the breaker moves
  it to FAILED
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Deployment.html);
- tasks whose essential containers fail their `healthCheck` replaced: after
  the service's `healthCheckGracePeriodSeconds`, a replacement starts first
  when `maximumPercent` leaves room, and the unhealthy task is stopped
  (ServiceSchedulerInitiated, "Task failed container health checks") once
  the replacement is healthy; without room the unhealthy tasks are stopped
  one by one first. Such a task counts as failed for the circuit breaker
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-type-ecs.html,
  https://docs.aws.amazon.com/AmazonECS/latest/developerguide/healthcheck.html,
  https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_HealthCheck.html);
- service events worded as ECS words them
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-event-messages-list.html).

Only services with the ECS (rolling update) deployment controller are rolled
out. Those with CODE_DEPLOY or EXTERNAL get a PRIMARY deployment without
`rolloutState`, which ECS reports only for the ECS controller
(https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Deployment.html),
and no tasks: CodeDeploy and task sets, which would start them, are not
modelled.
"""

from __future__ import annotations

import math
import random
import uuid

from moto.core.utils import utcnow
from moto.ecs.models import Task

from . import deployments
from .agent import Agent, now
from .strategies import Strategies

SCHEDULER_STOP = "ServiceSchedulerInitiated"
UNHEALTHY_REASON = "Task failed container health checks"


def ecs_controlled(service) -> bool:
    """Does ECS itself roll this service out (the ECS deployment controller)?"""
    return (getattr(service, "deployment_controller", None) or {"type": "ECS"}).get("type", "ECS") == "ECS"


def failed(task: Task) -> bool:
    """Does this stopped task count against its deployment? Every stop but
    the scheduler's own, and the scheduler's for failed health checks."""
    return task.stop_code != SCHEDULER_STOP or task.stopped_reason == UNHEALTHY_REASON


class Scheduler:
    """Keeps each ACTIVE service's tasks in line with its deployments; the
    agent runs the tasks. Every method runs under `agent.LOCK`: from the
    agent's tick or from a request."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.strategies = Strategies(self)

    def new_deployment(self, service, task_definition: str) -> dict:
        deployment_id = f"ecs-svc/{random.randint(10**18, 10**19 - 1)}"
        stamp = utcnow()
        deployment = {
            "id": deployment_id,
            "status": "PRIMARY",
            "taskDefinition": task_definition,
            "desiredCount": service.desired_count,
            "pendingCount": 0,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": stamp,
            "updatedAt": stamp,
            "launchType": service.launch_type,
            "capacityProviderStrategy": getattr(service, "capacity_provider_strategy", None),
            "platformVersion": service.platform_version,
            "platformFamily": "Linux",
            "networkConfiguration": service.network_configuration or None,
        }
        if ecs_controlled(service):
            deployment["rolloutState"] = "IN_PROGRESS"
            deployment["rolloutStateReason"] = f"ECS deployment {deployment_id} in progress."
        return deployment

    def event(self, service, message: str) -> None:
        # DescribeServices lists events newest first and keeps the last 100.
        service.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": utcnow(), "message": message})
        del service.events[100:]

    def service_created(self, backend, service) -> None:
        service.deployments = [self.new_deployment(service, service.task_definition)]
        service.running_count = 0
        service.pending_count = 0
        if ecs_controlled(service):
            deployments.start(service, backend, service.deployments[0], self.threshold(service))

    def service_updated(self, backend, service, new_revision: bool) -> None:
        if not ecs_controlled(service):
            # No rollout and no tasks; moto counts the desired tasks as running.
            service.deployments[0]["desiredCount"] = service.desired_count
            service.running_count = 0
            service.pending_count = 0
            return
        if new_revision or not service.deployments:
            for deployment in service.deployments:
                deployment["status"] = "ACTIVE"
            service.deployments.insert(0, self.new_deployment(service, service.task_definition))
            deployments.start(service, backend, service.deployments[0], self.threshold(service))
        else:
            service.deployments[0]["desiredCount"] = service.desired_count

    def threshold(self, service) -> int:
        """The failed tasks at which the circuit breaker fires: by default half the
        desired count, at least 3 and at most 200; `thresholdConfiguration` sets
        it as a COUNT, or a BOUNDED_PERCENT (kept within 3 to 200) or
        UNBOUNDED_PERCENT of the desired count
        (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ServiceDeploymentCircuitBreaker.html,
        https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ThresholdConfiguration.html)."""
        breaker = (getattr(service, "deployment_configuration", None) or {}).get("deploymentCircuitBreaker") or {}
        config = breaker.get("thresholdConfiguration") or {}
        kind, value = config.get("type", "BOUNDED_PERCENT"), int(config.get("value", 50))
        if kind == "COUNT":
            return max(1, value)
        count = math.ceil(value / 100 * service.desired_count)
        return max(1, count) if kind == "UNBOUNDED_PERCENT" else min(200, max(3, count))

    def tasks_by_deployment(self, backend, service) -> dict[str, list[Task]]:
        """The service's tasks, grouped by the deployment that started them."""
        grouped: dict[str, list[Task]] = {}
        for task in backend.tasks.get(service.cluster_name, {}).values():
            if task.group == f"service:{service.name}":
                grouped.setdefault(task.started_by, []).append(task)
        return grouped

    def start_service_tasks(self, backend, service, deployment: dict, count: int) -> list[Task]:
        cluster = backend._get_cluster(service.cluster_name)
        definition = backend.describe_task_definition(deployment["taskDefinition"])
        started = [
            self.agent.launch(
                backend,
                cluster,
                definition,
                group=f"service:{service.name}",
                launch_type=service.launch_type or "",
                overrides={},
                started_by=deployment["id"],
                tags=service.tags if service.propagate_tags == "SERVICE" else [],
                networking_configuration=service.network_configuration or None,
                platform_version=service.platform_version,
            )
            for _ in range(count)
        ]
        ids = " ".join(f"(task {t.id})" for t in started)
        self.event(service, f"(service {service.name}) has started {len(started)} tasks: {ids}.")
        return started

    def stop_service_tasks(self, service, tasks: list[Task], reason: str) -> None:
        if not tasks:
            return
        for task in tasks:
            self.agent.request_stop(task, SCHEDULER_STOP, reason)
        ids = " ".join(f"(task {t.id})" for t in tasks)
        self.event(service, f"(service {service.name}) has stopped {len(tasks)} running tasks: {ids}.")

    def schedule_services(self, backend) -> None:
        services = list(backend.services.values())
        # A service is named within its cluster: `web` of one cluster says nothing of another's.
        active = {(s.cluster_name, s.name) for s in services if s.status == "ACTIVE"}
        for tasks in backend.tasks.values():
            for task in tasks.values():
                if (
                    task.group.startswith("service:")
                    and (task.cluster_name, task.group[len("service:") :]) not in active
                    and task.desired_status == "RUNNING"
                ):
                    self.agent.request_stop(task, SCHEDULER_STOP, "Service deleted")
        for service in services:
            if service.status == "ACTIVE" and service.deployments and ecs_controlled(service):
                self.schedule_service(backend, service)

    def schedule_service(self, backend, service) -> None:
        for requested in deployments.rollbacks_requested(service):
            self.roll_back(service, requested)
        by_deployment = self.tasks_by_deployment(backend, service)
        primary = service.deployments[0]
        mine = by_deployment.get(primary["id"], [])
        self.count_failures(primary, mine)
        staged = self.strategies.staged(service, primary)
        failure = self.failure(service, primary)
        if failure is not None:
            cause, rollback = failure
            if staged is not None:
                self.strategies.fail(service, staged, primary, cause, rollback)
            else:
                self.fail_deployment(service, primary, mine, rollback, cause)
            primary = service.deployments[0]
            mine = by_deployment.get(primary["id"], [])
            staged = self.strategies.staged(service, primary)
        if staged is not None:
            self.strategies.drive(backend, service, staged, primary, mine)
        else:
            self.roll(backend, service, primary, mine, by_deployment)
        self.strategies.settle_rollbacks(backend, service)
        self.count(backend, service)

    def count_failures(self, primary: dict, mine: list[Task]) -> None:
        seen = primary.setdefault("_seen_stopped", set())
        for task in mine:
            if task.last_status == "STOPPED" and task.task_arn not in seen:
                seen.add(task.task_arn)
                if failed(task) and primary["rolloutState"] == "IN_PROGRESS":
                    primary["failedTasks"] += 1
                    primary["updatedAt"] = utcnow()

    def failure(self, service, primary: dict) -> tuple[dict, bool] | None:
        """What fails the PRIMARY deployment now, if anything, and whether to roll
        it back: the circuit breaker at its threshold, or an alarm in ALARM."""
        if primary["rolloutState"] != "IN_PROGRESS":
            return None
        config = getattr(service, "deployment_configuration", None) or {}
        breaker = config.get("deploymentCircuitBreaker") or {}
        if breaker.get("enable") and primary["failedTasks"] >= self.threshold(service):
            return {"kind": "breaker", "failed": primary["failedTasks"]}, bool(breaker.get("rollback"))
        in_alarm = self.strategies.alarms_in_alarm(service)
        if in_alarm:
            return {"kind": "alarm", "names": in_alarm}, bool((config.get("alarms") or {}).get("rollback"))
        return None

    def roll(self, backend, service, primary: dict, mine: list[Task], by_deployment: dict) -> None:
        """A rolling update: the PRIMARY deployment's tasks towards the desired
        count; once they are healthy it completes and the others' tasks stop."""
        live = [t for t in mine if t.desired_status == "RUNNING"]
        if primary["rolloutState"] != "FAILED":
            live = self.keep_count(backend, service, primary, live)
            healthy = [t for t in live if self.agent.healthy(t)]
            if (
                primary["rolloutState"] == "IN_PROGRESS"
                and len(live) == service.desired_count
                and len(healthy) == service.desired_count
            ):
                primary["rolloutState"] = "COMPLETED"
                primary["rolloutStateReason"] = f"ECS deployment {primary['id']} completed."
                primary["updatedAt"] = utcnow()
                self.event(service, f"(service {service.name}) (deployment {primary['id']}) deployment completed.")
                self.event(service, f"(service {service.name}) has reached a steady state.")
                deployments.completed(service, primary)

        if primary["rolloutState"] == "COMPLETED":
            current = {d["id"] for d in service.deployments}
            for deployment in service.deployments[1:]:
                old = by_deployment.get(deployment["id"], [])
                self.stop_service_tasks(
                    service,
                    [t for t in old if t.desired_status == "RUNNING"],
                    f"Scaling activity initiated by (deployment {primary['id']})",
                )
            strays = [
                t
                for deployment_id, tasks in by_deployment.items()
                if deployment_id not in current
                for t in tasks
                if t.desired_status == "RUNNING"
            ]
            self.stop_service_tasks(service, strays, f"Scaling activity initiated by (deployment {primary['id']})")
            service.deployments[1:] = [
                d
                for d in service.deployments[1:]
                if any(t.last_status != "STOPPED" for t in by_deployment.get(d["id"], []))
            ]

    def count(self, backend, service) -> None:
        """Each deployment's and the service's task counts; tasks started this tick count too."""
        by_deployment = self.tasks_by_deployment(backend, service)
        running = pending = 0
        for deployment in service.deployments:
            dtasks = by_deployment.get(deployment["id"], [])
            deployment["runningCount"] = sum(
                1 for t in dtasks if t.last_status == "RUNNING" and t.desired_status == "RUNNING"
            )
            deployment["pendingCount"] = sum(
                1 for t in dtasks if t.last_status in ("PROVISIONING", "PENDING", "ACTIVATING")
            )
            if deployment is service.deployments[0]:
                deployment["desiredCount"] = service.desired_count
            running += deployment["runningCount"]
            pending += deployment["pendingCount"]
        service.running_count = running
        service.pending_count = pending
        deployments.refresh(service, self.threshold(service))

    def keep_count(self, backend, service, primary: dict, live: list[Task]) -> list[Task]:
        """Start, stop and replace the PRIMARY deployment's tasks towards
        `desiredCount` healthy ones; the tasks still meant to run."""
        unhealthy = [t for t in live if self.unhealthy(service, t)]
        sound = self.scale_down(service, [t for t in live if t not in unhealthy])
        missing = service.desired_count - len(sound)
        done = self.unhealthy_to_stop(service, sound, unhealthy, missing)
        self.stop_unhealthy(service, done)
        unhealthy = [t for t in unhealthy if t not in done]
        if missing > 0 and unhealthy:
            # Replacements beside the unhealthy tasks, up to maximumPercent.
            missing = min(missing, self.max_tasks(service) - len(sound) - len(unhealthy))
        if missing > 0:
            sound += self.start_service_tasks(backend, service, primary, missing)
        return sound + unhealthy

    def scale_down(self, service, sound: list[Task]) -> list[Task]:
        """Stop the newest tasks beyond the desired count; those left."""
        extra = len(sound) - service.desired_count
        if extra <= 0:
            return sound
        newest = sorted(sound, key=lambda t: t.created_at)[-extra:]
        self.stop_service_tasks(service, newest, "Scaling activity initiated by (service)")
        return [t for t in sound if t not in newest]

    def unhealthy_to_stop(self, service, sound: list[Task], unhealthy: list[Task], missing: int) -> list[Task]:
        """Unhealthy tasks go as their replacements become healthy; without
        room under maximumPercent for replacements, they go first, one at a
        time."""
        healthy = sum(1 for t in sound if self.agent.healthy(t))
        done = unhealthy[: max(0, healthy + len(unhealthy) - service.desired_count)]
        if not done and unhealthy and missing > 0 and len(sound) + len(unhealthy) >= self.max_tasks(service):
            done = unhealthy[:1]
        return done

    def unhealthy(self, service, task: Task) -> bool:
        """Failing its container health checks, after the grace period in
        which the scheduler ignores them."""
        if task.health_status != "UNHEALTHY" or task.last_status != "RUNNING":
            return False
        grace = getattr(service, "health_check_grace_period_seconds", None) or 0
        started = getattr(task, "started_at", None)
        return started is not None and (now() - started).total_seconds() >= grace

    def max_tasks(self, service) -> int:
        """`maximumPercent` of the desired count (rounded down), at least the desired count."""
        percent = (getattr(service, "deployment_configuration", None) or {}).get("maximumPercent") or 200
        return max(service.desired_count, math.floor(service.desired_count * int(percent) / 100))

    def stop_unhealthy(self, service, tasks: list[Task]) -> None:
        for task in tasks:
            self.event(service, f"(service {service.name}) (task {task.id}) failed container health checks")
        self.stop_service_tasks(service, tasks, UNHEALTHY_REASON)

    def fail_deployment(self, service, primary: dict, tasks: list[Task], rollback: bool, cause: dict) -> None:
        primary["rolloutState"] = "FAILED"
        primary["updatedAt"] = utcnow()
        if cause["kind"] == "alarm":
            primary["rolloutStateReason"] = f"ECS deployment failed: alarm {', '.join(cause['names'])} in ALARM."
            failure = f"alarm {', '.join(cause['names'])} in ALARM"
        else:
            primary["rolloutStateReason"] = "ECS deployment circuit breaker: tasks failed to start."
            failure = "tasks failed to start"
        self.event(service, f"(service {service.name}) (deployment {primary['id']}) deployment failed: {failure}.")
        self.stop_service_tasks(
            service,
            [t for t in tasks if t.desired_status == "RUNNING"],
            f"Deployment {primary['id']} failed",
        )
        previous = next(
            (d for d in service.deployments[1:] if d["rolloutState"] == "COMPLETED"),
            service.deployments[1] if len(service.deployments) > 1 else None,
        )
        target = None
        if rollback and previous is not None:
            target = self.new_deployment(service, previous["taskDefinition"])
            target["_revision"] = previous.get("_revision")
        deployments.failed(service, primary, target, rollback, cause)
        if target is not None:
            self.start_rollback(service, target)

    def start_rollback(self, service, target: dict) -> None:
        """`target`, a deployment of an earlier revision, becomes PRIMARY."""
        service.deployments[0]["status"] = "ACTIVE"
        service.deployments.insert(0, target)
        service.task_definition = target["taskDefinition"]
        self.event(service, f"(service {service.name}) rolling back to deployment {target['id']}.")

    def roll_back(self, service, requested: dict) -> None:
        """A service deployment that StopServiceDeployment asked to roll back:
        its source revision goes back as PRIMARY, and the new tasks go once
        it is steady."""
        if requested.get("_strategy", "ROLLING") != "ROLLING":
            green = next((d for d in service.deployments if d["id"] == requested["_legacy"]), None)
            if green is not None:
                self.strategies.roll_back(service, requested, green, deployments.USER_ROLLBACK)
                return
        revision = deployments.revisions_of(service).get(requested.get("_rollback_to") or "")
        if revision is None:
            deployments.finish(requested, "ROLLBACK_FAILED", deployments.NO_ROLLBACK_TARGET, utcnow())
            return
        for deployment in service.deployments:
            deployment["status"] = "ACTIVE"
        target = self.new_deployment(service, revision["taskDefinition"])
        target["_revision"] = revision["serviceRevisionArn"]
        deployments.roll_back(requested, target, deployments.USER_ROLLBACK, utcnow())
        self.start_rollback(service, target)
