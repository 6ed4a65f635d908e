"""Service deployments and service revisions, the resources ECS has kept of
every deployment since October 2024
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-deployment.html,
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-revision.html).
moto 5.2.5 has neither; the scheduler (`scheduler.py`) drives them beside
each service's `deployments[]`, which stay as the rolling-update view of them.

- CreateService, and an UpdateService that starts a deployment, make a
  service deployment (PENDING, then IN_PROGRESS) and a service revision of
  the new configuration; the service names it in `currentServiceDeployment`.
- A deployment in flight when the next one starts is STOPPED: the
  superseded deployment ends with its `finishedAt` at the newer one's start.
  ECS documents no `statusReason` for it; the sandbox's is its own wording.
- A ROLLING deployment ends SUCCESSFUL when its tasks reach a steady state;
  the circuit breaker moves it to ROLLBACK_IN_PROGRESS, then
  ROLLBACK_SUCCESSFUL or ROLLBACK_FAILED, with `rollback` naming why and the
  revision it returns to (the last successful one: a rollback makes no new
  revision); without the breaker's rollback it is STOPPED, with `stoppedAt`
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ServiceDeployment.html).
- `deploymentCircuitBreaker` reports `failureCount` against the threshold ECS
  computes, MONITORING while the deployment runs, TRIGGERED once the breaker
  fires and MONITORING_COMPLETE after success; DISABLED without it
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ServiceDeploymentCircuitBreaker.html).
- A ROLLING deployment reports no `lifecycleStage`.
"""

from __future__ import annotations

import random
import secrets
import string
from datetime import UTC, datetime

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ecs import responses as ecs_responses
from moto.ecs.exceptions import ECSException, InvalidParameterException, ServiceNotFoundException

ONGOING = ("PENDING", "IN_PROGRESS", "STOP_REQUESTED", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
FINAL = ("SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED")
# Not documented by ECS (a superseded deployment is STOPPED, its reason unknown): the sandbox's words.
SUPERSEDED = "Service deployment stopped: a newer service deployment of the service started."
BREAKER_REASON = "Service deployment failed: the deployment circuit breaker detected failed tasks."
BREAKER_ROLLBACK = "The deployment circuit breaker initiated the rollback operation."
ALARM_REASON = "Service deployment failed: a CloudWatch alarm of the deployment went into ALARM."
ALARM_ROLLBACK = "A CloudWatch alarm initiated the rollback operation."
USER_ROLLBACK = "A user initiated the rollback operation (StopServiceDeployment)."
NO_ROLLBACK_TARGET = "Service deployment rollback failed: no earlier service revision to roll back to."

_ID_ALPHABET = string.ascii_letters + string.digits + "_-"


def deployments_of(service) -> dict[str, dict]:
    """The service's deployments by ARN, oldest first. Kept on the service:
    ECS deletes them with it."""
    return service.__dict__.setdefault("_sb_service_deployments", {})


def revisions_of(service) -> dict[str, dict]:
    """The service's revisions by ARN."""
    return service.__dict__.setdefault("_sb_service_revisions", {})


def _arn(service, kind: str, ident: str) -> str:
    prefix = service.cluster_arn.split(":cluster/")[0]
    return f"{prefix}:{kind}/{service.cluster_name}/{service.name}/{ident}"


def names_of(arn: str) -> tuple[str, str] | None:
    """(cluster, service) named by a service-deployment or service-revision ARN."""
    parts = arn.split(":", 5)
    if len(parts) != 6:
        return None
    path = parts[5].split("/")
    if len(path) != 4 or path[0] not in ("service-deployment", "service-revision"):
        return None
    return path[1], path[2]


def new_revision(service, backend, task_definition: str) -> str:
    """A service revision of the service's configuration now, running `task_definition`."""
    ident = str(random.randint(10**18, 2**63 - 1))
    arn = _arn(service, "service-revision", ident)
    definition = backend.describe_task_definition(task_definition)
    images = []
    for container in definition.container_definitions:
        image = container.get("image", "")
        entry = {"containerName": container.get("name"), "image": image}
        if "@sha256:" in image:
            entry["imageDigest"] = image.split("@", 1)[1]
        images.append(entry)
    revision = {
        "serviceRevisionArn": arn,
        "serviceArn": service.arn,
        "clusterArn": service.cluster_arn,
        "taskDefinition": task_definition,
        "launchType": service.launch_type or None,
        "capacityProviderStrategy": getattr(service, "capacity_provider_strategy", None),
        "platformVersion": service.platform_version,
        "platformFamily": "Linux",
        "loadBalancers": service.load_balancers or [],
        "networkConfiguration": service.network_configuration or None,
        "containerImages": images,
        "createdAt": utcnow(),
    }
    revisions_of(service)[arn] = revision
    return arn


def _summary(revision_arn: str, legacy: dict | None, requested: int | None = None) -> dict:
    return {
        "arn": revision_arn,
        "requestedTaskCount": requested if requested is not None else (legacy or {}).get("desiredCount", 0),
        "runningTaskCount": (legacy or {}).get("runningCount", 0),
        "pendingTaskCount": (legacy or {}).get("pendingCount", 0),
    }


def _breaker(service, threshold: int) -> dict:
    config = (getattr(service, "deployment_configuration", None) or {}).get("deploymentCircuitBreaker") or {}
    if not config.get("enable"):
        return {"status": "DISABLED"}
    return {"status": "MONITORING", "failureCount": 0, "threshold": threshold}


def _alarms(service) -> dict:
    config = (getattr(service, "deployment_configuration", None) or {}).get("alarms") or {}
    if not config.get("enable"):
        return {"status": "DISABLED"}
    return {"status": "MONITORING", "alarmNames": list(config.get("alarmNames") or []), "triggeredAlarmNames": []}


def start(service, backend, legacy: dict, threshold: int) -> dict:
    """The service deployment of `legacy`, the PRIMARY deployment just made by
    CreateService or UpdateService; any still in flight are superseded."""
    now = utcnow()
    for earlier in deployments_of(service).values():
        if earlier["status"] in ONGOING:
            finish(earlier, "STOPPED", SUPERSEDED, now)
            earlier["stoppedAt"] = now
    revision = new_revision(service, backend, legacy["taskDefinition"])
    legacy["_revision"] = revision
    sources = [d for d in service.deployments if d is not legacy and d.get("_revision")]
    arn = _arn(service, "service-deployment", "".join(secrets.choice(_ID_ALPHABET) for _ in range(21)))
    deployment = {
        "serviceDeploymentArn": arn,
        "serviceArn": service.arn,
        "clusterArn": service.cluster_arn,
        "createdAt": now,
        "updatedAt": now,
        "sourceServiceRevisions": [_summary(d["_revision"], d) for d in sources],
        "targetServiceRevision": _summary(revision, legacy, service.desired_count),
        "status": "PENDING",
        "deploymentConfiguration": getattr(service, "deployment_configuration", None),
        "deploymentCircuitBreaker": _breaker(service, threshold),
        "alarms": _alarms(service),
        "_legacy": legacy["id"],
        "_strategy": (getattr(service, "deployment_configuration", None) or {}).get("strategy") or "ROLLING",
        # What a rollback returns to: the last successful revision, else the newest before.
        "_rollback_to": next(
            (d["_revision"] for d in sources if d.get("rolloutState") == "COMPLETED"),
            sources[0]["_revision"] if sources else None,
        ),
    }
    deployments_of(service)[arn] = deployment
    service.current_service_deployment = arn
    return deployment


def finish(deployment: dict, status: str, reason: str | None, now) -> None:
    deployment["status"] = status
    if reason:
        deployment["statusReason"] = reason
    deployment["finishedAt"] = now
    deployment["updatedAt"] = now
    breaker = deployment["deploymentCircuitBreaker"]
    if breaker["status"] == "MONITORING":
        breaker["status"] = "MONITORING_COMPLETE"
    alarms = deployment["alarms"]
    if alarms["status"] == "MONITORING":
        alarms["status"] = "MONITORING_COMPLETE"


def of_legacy(service, legacy_id: str, key: str = "_legacy") -> dict | None:
    """The service deployment whose deployment (or, `_rollback`, rollback) is `legacy_id`."""
    for deployment in deployments_of(service).values():
        if deployment.get(key) == legacy_id:
            return deployment
    return None


def completed(service, legacy: dict) -> None:
    """`legacy` reached a steady state: its service deployment succeeded, or
    the rollback it carries out did."""
    now = utcnow()
    ours = of_legacy(service, legacy["id"])
    # A service scaled to zero is steady in the tick its deployment was made, still PENDING.
    if ours is not None and ours["status"] in ("PENDING", "IN_PROGRESS"):
        ours.setdefault("startedAt", now)
        finish(ours, "SUCCESSFUL", None, now)
    rolling_back = of_legacy(service, legacy["id"], "_rollback")
    if rolling_back is not None and rolling_back["status"] in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"):
        finish(rolling_back, "ROLLBACK_SUCCESSFUL", rolling_back.get("statusReason"), now)


def mark_cause(deployment: dict, cause: dict) -> str:
    """Notes what failed the deployment (the circuit breaker, or alarms in
    ALARM) on it; the reason to roll it back."""
    if cause["kind"] == "alarm":
        deployment["alarms"].update(status="TRIGGERED", triggeredAlarmNames=list(cause["names"]))
        deployment["statusReason"] = ALARM_REASON
        return ALARM_ROLLBACK
    deployment["deploymentCircuitBreaker"].update(status="TRIGGERED", failureCount=cause["failed"])
    deployment["statusReason"] = BREAKER_REASON
    return BREAKER_ROLLBACK


def failed(service, legacy: dict, rollback: dict | None, rollback_on: bool, cause: dict) -> None:
    """The circuit breaker or an alarm failed `legacy`: its service deployment
    rolls back to `rollback` (the legacy deployment that carries the rollback
    out) or, without rollback, stops. A rollback that itself fails fails its
    service deployment's rollback."""
    now = utcnow()
    failing_rollback = of_legacy(service, legacy["id"], "_rollback")
    if failing_rollback is not None and failing_rollback["status"] in ONGOING:
        finish(failing_rollback, "ROLLBACK_FAILED", BREAKER_REASON, now)
    ours = of_legacy(service, legacy["id"])
    if ours is None or ours["status"] not in ONGOING:
        return
    why = mark_cause(ours, cause)
    ours["updatedAt"] = now
    if not rollback_on:
        stop(ours, now)
    elif rollback is None:
        finish(ours, "ROLLBACK_FAILED", NO_ROLLBACK_TARGET, now)
    else:
        roll_back(ours, rollback, why, now)


def stop(deployment: dict, now) -> None:
    """Failed without rollback: STOPPED where it is."""
    finish(deployment, "STOPPED", deployment.get("statusReason"), now)
    deployment["stoppedAt"] = now


def roll_back(deployment: dict, rollback: dict, reason: str, now) -> None:
    deployment["status"] = "ROLLBACK_IN_PROGRESS"
    deployment["updatedAt"] = now
    deployment["rollback"] = {"reason": reason, "startedAt": now, "serviceRevisionArn": rollback.get("_revision")}
    deployment["_rollback"] = rollback["id"]


def refresh(service, threshold: int) -> None:
    """Once per scheduler tick: PENDING deployments start, and the counts of
    every deployment in flight follow the tasks; the service's current
    revisions with them."""
    now = utcnow()
    legacy = {d["id"]: d for d in service.deployments}
    for deployment in deployments_of(service).values():
        if deployment["status"] not in ONGOING:
            continue
        if deployment["status"] == "PENDING":
            deployment["status"] = "IN_PROGRESS"
            deployment["startedAt"] = now
            deployment["updatedAt"] = now
        mine = legacy.get(deployment["_legacy"])
        target = deployment["targetServiceRevision"]
        counts = {
            **target,
            "runningTaskCount": mine.get("runningCount", 0) if mine else 0,
            "pendingTaskCount": mine.get("pendingCount", 0) if mine else 0,
        }
        if counts != target:
            deployment["targetServiceRevision"] = counts
            deployment["updatedAt"] = now
        for source in deployment["sourceServiceRevisions"]:
            running = [d for d in service.deployments if d.get("_revision") == source["arn"]]
            source["runningTaskCount"] = sum(d.get("runningCount", 0) for d in running)
            source["pendingTaskCount"] = sum(d.get("pendingCount", 0) for d in running)
        breaker = deployment["deploymentCircuitBreaker"]
        if breaker["status"] == "MONITORING" and mine is not None:
            breaker["failureCount"] = mine.get("failedTasks", 0)
            breaker["threshold"] = threshold
    service.current_service_revisions = [_summary(d["_revision"], d) for d in service.deployments if d.get("_revision")]


def rollbacks_requested(service) -> list[dict]:
    """Deployments that StopServiceDeployment asked to roll back, not begun yet."""
    return [d for d in deployments_of(service).values() if d["status"] == "ROLLBACK_REQUESTED"]


def request_stop(deployment: dict, stop_type: str) -> None:
    """StopServiceDeployment: PENDING and IN_PROGRESS move to ROLLBACK_REQUESTED
    (the scheduler's next tick begins the rollback); a stop or rollback under
    way goes on (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stop-service-deployment.html)."""
    if deployment["status"] in ("PENDING", "IN_PROGRESS") and stop_type == "ROLLBACK":
        deployment["status"] = "ROLLBACK_REQUESTED"
        deployment["updatedAt"] = utcnow()


# The read and stop calls, as responses of moto's ECS.


class ServiceDeploymentNotFoundException(ECSException):
    code = "ServiceDeploymentNotFoundException"


class ConflictException(ECSException):
    code = "ConflictException"


def _service_named(backend, cluster_str: str, service_str: str):
    """The ACTIVE service, or ECS's errors for a cluster or service it does not know."""
    cluster = backend._get_cluster(cluster_str)  # ClusterNotFoundException
    name = service_str.split("/")[-1]
    service = backend.services.get(f"{cluster.name}:{name}")
    if service is None or service.status != "ACTIVE":
        raise ServiceNotFoundException()
    return service


def _by_arn(backend, arn: str, kind: str) -> dict | None:
    names = names_of(arn)
    if names is None:
        return None
    service = backend.services.get(f"{names[0]}:{names[1]}")
    if service is None:
        return None
    found = (deployments_of if kind == "deployment" else revisions_of)(service)
    return found.get(arn)


def _epoch(value) -> float | None:
    """Seconds since the epoch of a request's timestamp (as moto parsed it) or
    of a stored one (naive, UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def list_service_deployments(self) -> ActionResult:
    """Newest first, filtered by status and `createdAt`, `maxResults` (1-100,
    20 when unset) per page
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ListServiceDeployments.html)."""
    if not self._get_param("service"):
        raise InvalidParameterException("service must be specified.")
    service = _service_named(self.ecs_backend, self._get_param("cluster", "default"), self._get_param("service"))
    limit = self._get_param("maxResults") or 20
    if not 1 <= int(limit) <= 100:
        raise InvalidParameterException("maxResults must be between 1 and 100.")
    statuses = self._get_param("status") or []
    created = self._get_param("createdAt") or {}
    after, before = _epoch(created.get("after")), _epoch(created.get("before"))
    found = [
        d
        for d in deployments_of(service).values()
        if (not statuses or d["status"] in statuses)
        and (after is None or _epoch(d["createdAt"]) >= after)
        and (before is None or _epoch(d["createdAt"]) <= before)
    ]
    found.sort(key=lambda d: d["createdAt"], reverse=True)
    start = int(self._get_param("nextToken") or 0)
    page = found[start : start + int(limit)]
    result = {
        "serviceDeployments": [
            {
                **{key: d.get(key) for key in BRIEF if d.get(key) is not None},
                "targetServiceRevisionArn": d["targetServiceRevision"]["arn"],
            }
            for d in page
        ]
    }
    if start + int(limit) < len(found):
        result["nextToken"] = str(start + int(limit))
    return ActionResult(result)


BRIEF = (
    "serviceDeploymentArn",
    "serviceArn",
    "clusterArn",
    "startedAt",
    "createdAt",
    "finishedAt",
    "status",
    "statusReason",
)


def _described(self, param: str, kind: str, key: str) -> ActionResult:
    """Up to 20 ARNs; those it does not know under `failures`, MISSING."""
    arns = self._get_param(param) or []
    if not 1 <= len(arns) <= 20:
        raise InvalidParameterException(f"{param} must name between 1 and 20 ARNs.")
    found, failures = [], []
    for arn in arns:
        item = _by_arn(self.ecs_backend, arn, kind)
        if item is None:
            failures.append({"arn": arn, "reason": "MISSING"})
        else:
            found.append({k: v for k, v in item.items() if not k.startswith("_")})
    return ActionResult({key: found, "failures": failures})


def describe_service_deployments(self) -> ActionResult:
    return _described(self, "serviceDeploymentArns", "deployment", "serviceDeployments")


def describe_service_revisions(self) -> ActionResult:
    return _described(self, "serviceRevisionArns", "revision", "serviceRevisions")


def stop_service_deployment(self) -> ActionResult:
    """ROLLBACK, the only stop type ECS documents as valid, of a deployment in
    flight; a finished one is a conflict
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_StopServiceDeployment.html)."""
    arn = self._get_param("serviceDeploymentArn") or ""
    stop_type = self._get_param("stopType") or "ROLLBACK"
    if stop_type != "ROLLBACK":
        raise InvalidParameterException(f"stopType {stop_type} is not supported: the valid value is ROLLBACK.")
    deployment = _by_arn(self.ecs_backend, arn, "deployment")
    if deployment is None:
        raise ServiceDeploymentNotFoundException(f"The service deployment {arn} was not found.")
    if deployment["status"] in FINAL:
        raise ConflictException(
            f"The service deployment is {deployment['status']}: a finished service deployment cannot be stopped."
        )
    request_stop(deployment, stop_type)
    return ActionResult({"serviceDeploymentArn": arn})


def install() -> None:
    responses = ecs_responses.EC2ContainerServiceResponse
    responses.list_service_deployments = list_service_deployments
    responses.describe_service_deployments = describe_service_deployments
    responses.describe_service_revisions = describe_service_revisions
    responses.stop_service_deployment = stop_service_deployment
