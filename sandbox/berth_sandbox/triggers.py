"""Firing an EventBridge rule or an EventBridge Scheduler schedule on demand
(`POST /_sandbox/fire`), as its schedule would when its time comes: each ECS
target runs its task with ECS `RunTask`, through the sandbox's own endpoint
(so the agent runs it as containers), with the target's parameters as
EventBridge passes them
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-targets.html,
https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-targets-templated.html):

- `TaskDefinitionArn` (a revision, or a family for its latest ACTIVE one),
  `TaskCount`, `LaunchType`, `PlatformVersion`, `CapacityProviderStrategy`,
  `Group`, `NetworkConfiguration.awsvpcConfiguration`, `EnableECSManagedTags`,
  `PropagateTags`, `Tags`;
- the target's `Input`, a JSON `RunTask` overrides document
  (`{"containerOverrides": [...]}`), as `overrides`;
- a rule's tasks are started by `events-rule/<rule name>`, as EventBridge
  starts them.

Nothing else of EventBridge runs here: rules and schedules never fire on
their own, event patterns are not matched, retries and dead-letter queues are
stored only.
"""

from __future__ import annotations

import json

from moto.events.models import events_backends
from moto.scheduler.models import scheduler_backends

from .config import ACCOUNT_ID, REGION, Endpoints


def _run_task_arguments(target: dict) -> dict:
    ecs = target["EcsParameters"]
    arguments: dict = {
        "cluster": target["Arn"],
        "taskDefinition": ecs["TaskDefinitionArn"],
        "count": int(ecs.get("TaskCount", 1)),
    }
    for source, name in (
        ("LaunchType", "launchType"),
        ("PlatformVersion", "platformVersion"),
        ("Group", "group"),
        ("PropagateTags", "propagateTags"),
        ("EnableECSManagedTags", "enableECSManagedTags"),
    ):
        if source in ecs:
            arguments[name] = ecs[source]
    if "CapacityProviderStrategy" in ecs:
        arguments["capacityProviderStrategy"] = [
            {"capacityProvider": item["capacityProvider"], "weight": item.get("weight", 0), "base": item.get("base", 0)}
            for item in ecs["CapacityProviderStrategy"]
        ]
    awsvpc = (ecs.get("NetworkConfiguration") or {}).get("awsvpcConfiguration")
    if awsvpc:
        arguments["networkConfiguration"] = {
            "awsvpcConfiguration": {
                "subnets": awsvpc.get("Subnets", []),
                "securityGroups": awsvpc.get("SecurityGroups", []),
                "assignPublicIp": awsvpc.get("AssignPublicIp", "DISABLED"),
            }
        }
    # EventBridge gives tags as `{"Key", "Value"}`, Scheduler as one-entry maps.
    tags = []
    for tag in ecs.get("Tags") or []:
        if "Key" in tag:
            tags.append({"key": tag["Key"], "value": tag.get("Value", "")})
        else:
            tags += [{"key": key, "value": value} for key, value in tag.items()]
    if tags:
        arguments["tags"] = tags
    if target.get("Input"):
        arguments["overrides"] = json.loads(target["Input"])
    return arguments


def fire(endpoints: Endpoints, data: dict) -> dict:
    """`{"rule": NAME, "event_bus": NAME}` or `{"schedule": NAME, "group": NAME}`:
    runs the ECS targets, answers the tasks started."""
    if "rule" in data:
        bus = data.get("event_bus")
        targets = events_backends[ACCOUNT_ID][REGION].list_targets_by_rule(data["rule"], bus)
        if isinstance(targets, tuple):  # moto's paginator answers (page, next token)
            targets = targets[0]
        started_by = f"events-rule/{data['rule']}"[:128]  # ECS takes up to 128 characters
    elif "schedule" in data:
        schedule = scheduler_backends[ACCOUNT_ID][REGION].get_schedule(data.get("group"), data["schedule"])
        targets = [schedule.target]
        started_by = None
    else:
        raise ValueError("name a `rule` or a `schedule`")
    ecs = endpoints.client("ecs")
    tasks = []
    for target in targets:
        if "EcsParameters" not in target:
            continue
        arguments = _run_task_arguments(target)
        if started_by:
            arguments["startedBy"] = started_by
        answer = ecs.run_task(**arguments)
        tasks += [
            {"taskArn": task["taskArn"], "taskDefinitionArn": task["taskDefinitionArn"]} for task in answer["tasks"]
        ]
    return {"tasks": tasks}
