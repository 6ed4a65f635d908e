"""ECS's own deployment strategies (2025): BLUE_GREEN, LINEAR and CANARY, run
by the scheduler through their lifecycle stages, with bake times, lifecycle
hooks and CloudWatch alarms
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-type-blue-green.html,
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-type-linear.html,
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-type-canary.html).

- Validation, as CreateService and UpdateService apply it: a known strategy;
  `bakeTimeInMinutes` required for BLUE_GREEN; `linearConfiguration` and
  `canaryConfiguration` only with their strategy and within their ranges; a
  load balancer of such a service names its alternate target group,
  production listener rule and role (`advancedConfiguration`), each existing
  in ELBv2; LINEAR and CANARY shift traffic, so they need a load balancer;
  lifecycle hooks only on these strategies, at the stages ECS allows, a
  Lambda hook with its function and role, no pause hook at a traffic shift
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DeploymentConfiguration.html,
  https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_AdvancedConfiguration.html,
  https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DeploymentLifecycleHook.html).
- The stages, in order: PRE_SCALE_UP, SCALE_UP (the green revision's tasks
  start beside the blue ones), POST_SCALE_UP, TEST_TRAFFIC_SHIFT,
  POST_TEST_TRAFFIC_SHIFT, PRODUCTION_TRAFFIC_SHIFT (once for BLUE_GREEN; per
  step for LINEAR and CANARY, each step but the last followed by its step
  bake time), POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME, CLEAN_UP (the blue
  tasks stop). Traffic is bookkeeping: the revisions' requested weights.
  Minutes last `minute_seconds` (a tunable, 60 by default).
- Lifecycle hooks run when their stage's work is done. A Lambda hook's
  answers are scripted through `/_sandbox/hooks` (SUCCEEDED, FAILED, or
  IN_PROGRESS asked again after `callBackDelay` seconds, 30 by default); a
  function without a script, or an answer without a valid `hookStatus`,
  fails the hook. A FAILED hook rolls the deployment back
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/lambda-lifecycle-hooks.html).
  A pause hook waits, AWAITING_ACTION, for ContinueServiceDeployment (CONTINUE
  or ROLLBACK) or its timeout, whose action is ROLLBACK unless set
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/pause-lifecycle-hooks.html).
- A rollback sends the traffic back to the blue revision, which never
  stopped, and stops the green tasks.
- Alarms (`deploymentConfiguration.alarms`, any strategy): an alarm in ALARM
  while the deployment runs, bake time included, fails it, and rolls it back
  when `rollback` is on
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html).
"""

from __future__ import annotations

import json
import math
import secrets
import string
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from moto.cloudwatch.models import cloudwatch_backends
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ecs import responses as ecs_responses
from moto.ecs.exceptions import InvalidParameterException
from moto.elbv2.models import elbv2_backends

from . import deployments

STRATEGIES = ("ROLLING", "BLUE_GREEN", "LINEAR", "CANARY")
HOOK_STAGES = (
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
)
NO_PAUSE_AT = ("TEST_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT")
HOOK_ROLLBACK = "A lifecycle hook initiated the rollback operation."
PAUSE_ROLLBACK = "A user initiated the rollback operation (ContinueServiceDeployment)."


def strategy_of(config: dict | None) -> str:
    return (config or {}).get("strategy") or "ROLLING"


# --- validation ---------------------------------------------------------------


def _refuse(message: str) -> None:
    raise InvalidParameterException(message)


def validate(service_arn_prefix: str, config: dict | None, load_balancers: list | None) -> None:
    """What CreateService and UpdateService refuse in a deployment configuration
    and its load balancers; `service_arn_prefix` is `arn:aws:ecs:REGION:ACCOUNT`."""
    config = config or {}
    strategy = strategy_of(config)
    if strategy not in STRATEGIES:
        _refuse(f"deploymentConfiguration.strategy must be one of {', '.join(STRATEGIES)}.")
    bake = config.get("bakeTimeInMinutes")
    if strategy == "BLUE_GREEN" and bake is None:
        _refuse("bakeTimeInMinutes must be specified for the BLUE_GREEN deployment strategy.")
    if bake is not None and not 0 <= int(bake) <= 1440:
        _refuse("bakeTimeInMinutes must be between 0 and 1440.")
    _check_steps(strategy, config)
    _check_hooks(strategy, config.get("lifecycleHooks") or [])
    if strategy == "ROLLING":
        return
    if strategy in ("LINEAR", "CANARY") and not load_balancers:
        _refuse(f"The {strategy} deployment strategy shifts traffic: the service needs a load balancer.")
    _, _, _, region, account = service_arn_prefix.split(":")[:5]
    for balancer in load_balancers or []:
        _check_balancer(account, region, strategy, balancer)


def _check_steps(strategy: str, config: dict) -> None:
    linear, canary = config.get("linearConfiguration"), config.get("canaryConfiguration")
    if linear and strategy != "LINEAR":
        _refuse("linearConfiguration is valid only with the LINEAR deployment strategy.")
    if canary and strategy != "CANARY":
        _refuse("canaryConfiguration is valid only with the CANARY deployment strategy.")
    if linear:
        step = float(linear.get("stepPercent", 10.0))
        if not 3.0 <= step <= 100.0 or abs(step * 10 - round(step * 10)) > 1e-9:
            _refuse("linearConfiguration.stepPercent must be a multiple of 0.1 from 3.0 to 100.0.")
        if not 0 <= int(linear.get("stepBakeTimeInMinutes", 6)) <= 1440:
            _refuse("linearConfiguration.stepBakeTimeInMinutes must be between 0 and 1440.")
    if canary:
        percent = float(canary.get("canaryPercent", 5.0))
        if not 0.1 <= percent <= 100.0 or abs(percent * 10 - round(percent * 10)) > 1e-9:
            _refuse("canaryConfiguration.canaryPercent must be a multiple of 0.1 from 0.1 to 100.0.")
        if not 0 <= int(canary.get("canaryBakeTimeInMinutes", 10)) <= 1440:
            _refuse("canaryConfiguration.canaryBakeTimeInMinutes must be between 0 and 1440.")


def _check_hooks(strategy: str, hooks: list) -> None:
    if hooks and strategy == "ROLLING":
        _refuse("lifecycleHooks are valid only with the BLUE_GREEN, LINEAR and CANARY deployment strategies.")
    for hook in hooks:
        kind = hook.get("targetType") or "AWS_LAMBDA"
        stages = hook.get("lifecycleStages") or []
        if not stages:
            _refuse("A lifecycle hook must name its lifecycleStages.")
        for stage in stages:
            if stage not in HOOK_STAGES:
                _refuse(f"{stage} is not a lifecycle stage a hook can run at.")
            if kind == "PAUSE" and stage in NO_PAUSE_AT:
                _refuse(f"A PAUSE lifecycle hook cannot run at {stage}.")
        if kind == "AWS_LAMBDA" and not (hook.get("hookTargetArn") and hook.get("roleArn")):
            _refuse("An AWS_LAMBDA lifecycle hook needs its hookTargetArn and roleArn.")
        timeout = (hook.get("timeoutConfiguration") or {}).get("timeoutInMinutes", 1440)
        if not 1 <= int(timeout) <= 20160:
            _refuse("timeoutConfiguration.timeoutInMinutes must be between 1 and 20160.")


def _check_balancer(account: str, region: str, strategy: str, balancer: dict) -> None:
    advanced = balancer.get("advancedConfiguration") or {}
    for key in ("alternateTargetGroupArn", "productionListenerRule", "roleArn"):
        if not advanced.get(key):
            _refuse(f"The {strategy} deployment strategy needs loadBalancers[].advancedConfiguration.{key}.")
    elbv2 = elbv2_backends[account][region]
    for key in ("targetGroupArn", "alternateTargetGroupArn"):
        arn = balancer.get(key) if key == "targetGroupArn" else advanced[key]
        if arn and arn not in elbv2.target_groups:
            _refuse(f"The target group {arn} does not exist.")
    for key in ("productionListenerRule", "testListenerRule"):
        arn = advanced.get(key)
        if arn and not _listener_or_rule(elbv2, arn):
            _refuse(f"The listener or listener rule {arn} does not exist.")


def _listener_or_rule(elbv2, arn: str) -> bool:
    for balancer in elbv2.load_balancers.values():
        for listener in balancer.listeners.values():
            if listener.arn == arn or arn in listener._non_default_rules:
                return True
    return False


# --- lifecycle hooks' answers (the admin API) -----------------------------------

_HOOKS_LOCK = threading.Lock()
_ANSWERS: dict[str, list[dict]] = {}
_INVOCATIONS: dict[str, list[dict]] = {}


def script(function_arn: str, answers: list[dict]) -> None:
    """What the function answers, one per invocation; the last one repeats."""
    with _HOOKS_LOCK:
        _ANSWERS[function_arn] = list(answers)


def invocations() -> dict[str, list[dict]]:
    with _HOOKS_LOCK:
        return {arn: list(calls) for arn, calls in _INVOCATIONS.items()}


def forget_hooks() -> None:
    with _HOOKS_LOCK:
        _ANSWERS.clear()
        _INVOCATIONS.clear()


def _invoke(function_arn: str, payload: dict) -> dict | None:
    """The function's answer to one invocation, or None: no such function."""
    with _HOOKS_LOCK:
        answers = _ANSWERS.get(function_arn)
        _INVOCATIONS.setdefault(function_arn, []).append(payload)
        if not answers:
            return None
        return answers.pop(0) if len(answers) > 1 else answers[0]


# --- the stages -----------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    name: str
    # The production traffic on the green revision once the stage is done.
    weight: float
    # How long the stage waits once its work is done (bake times), in minutes.
    minutes: float = 0.0


def plan(config: dict) -> list[Stage]:
    strategy = strategy_of(config)
    stages = [
        Stage("PRE_SCALE_UP", 0),
        Stage("SCALE_UP", 0),
        Stage("POST_SCALE_UP", 0),
        Stage("TEST_TRAFFIC_SHIFT", 0),
        Stage("POST_TEST_TRAFFIC_SHIFT", 0),
    ]
    if strategy == "LINEAR":
        linear = config.get("linearConfiguration") or {}
        step = float(linear.get("stepPercent", 10.0))
        bake = float(linear.get("stepBakeTimeInMinutes", 6))
        weights = [min(100.0, round(step * k, 1)) for k in range(1, math.ceil(100.0 / step) + 1)]
        stages += [Stage("PRODUCTION_TRAFFIC_SHIFT", w, bake if w < 100 else 0) for w in weights]
    elif strategy == "CANARY":
        canary = config.get("canaryConfiguration") or {}
        percent = float(canary.get("canaryPercent", 5.0))
        bake = float(canary.get("canaryBakeTimeInMinutes", 10))
        stages += [Stage("PRODUCTION_TRAFFIC_SHIFT", percent, bake), Stage("PRODUCTION_TRAFFIC_SHIFT", 100.0)]
    else:
        stages.append(Stage("PRODUCTION_TRAFFIC_SHIFT", 100.0))
    return stages + [
        Stage("POST_PRODUCTION_TRAFFIC_SHIFT", 100.0),
        Stage("BAKE_TIME", 100.0, float(config.get("bakeTimeInMinutes") or 0)),
        Stage("CLEAN_UP", 100.0),
    ]


_PAUSE_ALPHABET = string.ascii_letters + string.digits + "_-"


class Strategies:
    """Drives the service deployments of BLUE_GREEN, LINEAR and CANARY services,
    and the alarms of every service deployment; called by the scheduler, under
    the agent's lock, once per tick for each service."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def minute(self) -> float:
        return self.scheduler.agent.tunables.minute_seconds

    def staged(self, service, primary: dict) -> dict | None:
        """The staged service deployment in flight that `primary` carries out."""
        ours = deployments.of_legacy(service, primary["id"])
        if ours is None or ours.get("_strategy", "ROLLING") == "ROLLING":
            return None
        return ours if ours["status"] in ("PENDING", "IN_PROGRESS") else None

    def alarms_in_alarm(self, service) -> list[str]:
        config = (getattr(service, "deployment_configuration", None) or {}).get("alarms") or {}
        if not config.get("enable"):
            return []
        _, _, _, region, account = service.cluster_arn.split(":")[:5]
        alarms = cloudwatch_backends[account][region].alarms
        return [n for n in config.get("alarmNames") or [] if n in alarms and alarms[n].state_value == "ALARM"]

    # The stage machine.

    def drive(self, backend, service, ours: dict, green: dict, tasks: list) -> None:
        stages = ours.setdefault("_stages", plan(ours.get("deploymentConfiguration") or {}))
        if "_at" not in ours:
            self.enter(service, ours, 0)
        stage = stages[ours["_at"]]
        if not self.work(backend, service, ours, stage, green, tasks):
            return
        if not self.hooks_done(service, ours, green):
            return
        if ours["_at"] + 1 < len(stages):
            self.enter(service, ours, ours["_at"] + 1)
            return
        self.succeed(service, ours, green)

    def enter(self, service, ours: dict, index: int) -> None:
        stage = ours["_stages"][index]
        now = utcnow()
        ours["_at"] = index
        ours["_since"] = time.monotonic()
        ours["_done_at"] = None
        ours["lifecycleStage"] = stage.name
        ours["updatedAt"] = now
        # A traffic shift moves the traffic as it begins.
        if stage.name == "TEST_TRAFFIC_SHIFT":
            self.weigh(ours, "requestedTestTrafficWeight", 100.0)
        if stage.name == "PRODUCTION_TRAFFIC_SHIFT":
            self.weigh(ours, "requestedProductionTrafficWeight", stage.weight)
        config = ours.get("deploymentConfiguration") or {}
        hooks = [h for h in config.get("lifecycleHooks") or [] if stage.name in (h.get("lifecycleStages") or [])]
        ours["_hooks"] = [self.start_hook(h) for h in hooks]
        ours["lifecycleHookDetails"] = [self.public(h) for h in ours["_hooks"]]

    def work(self, backend, service, ours: dict, stage: Stage, green: dict, tasks: list) -> bool:
        """Does the stage's work; whether it is done (bake time waited out)."""
        if stage.name == "SCALE_UP":
            live = [t for t in tasks if t.desired_status == "RUNNING"]
            live = self.scheduler.keep_count(backend, service, green, live)
            healthy = [t for t in live if self.scheduler.agent.healthy(t)]
            if len(live) < service.desired_count or len(healthy) < service.desired_count:
                return False
        if stage.name == "CLEAN_UP":
            blue = [d for d in service.deployments if d is not green]
            by = self.scheduler.tasks_by_deployment(backend, service)
            running = [t for d in blue for t in by.get(d["id"], []) if t.desired_status == "RUNNING"]
            reason = f"Scaling activity initiated by (deployment {green['id']})"
            self.scheduler.stop_service_tasks(service, running, reason)
            if any(t.last_status != "STOPPED" for d in blue for t in by.get(d["id"], [])):
                return False
        if ours["_done_at"] is None:
            ours["_done_at"] = time.monotonic()
        return time.monotonic() - ours["_done_at"] >= stage.minutes * self.minute()

    def weigh(self, ours: dict, key: str, weight: float) -> None:
        if ours["targetServiceRevision"].get(key) == weight:
            return
        ours["targetServiceRevision"][key] = weight
        for source in ours["sourceServiceRevisions"]:
            source[key] = round(100.0 - weight, 1)
        ours["updatedAt"] = utcnow()

    def succeed(self, service, ours: dict, green: dict) -> None:
        green["rolloutState"] = "COMPLETED"
        green["rolloutStateReason"] = f"ECS deployment {green['id']} completed."
        green["updatedAt"] = utcnow()
        self.scheduler.event(service, f"(service {service.name}) (deployment {green['id']}) deployment completed.")
        self.scheduler.event(service, f"(service {service.name}) has reached a steady state.")
        ours["lifecycleHookDetails"] = []
        deployments.finish(ours, "SUCCESSFUL", None, utcnow())

    # Hooks.

    def start_hook(self, hook: dict) -> dict:
        timeout = hook.get("timeoutConfiguration") or {}
        minutes = float(timeout.get("timeoutInMinutes", 1440))
        kind = hook.get("targetType") or "AWS_LAMBDA"
        running = {
            "hookId": (
                "ecs-pause-" + "".join(secrets.choice(_PAUSE_ALPHABET) for _ in range(43))
                if kind == "PAUSE"
                else "ecs-hook-" + secrets.token_hex(8)
            ),
            "targetType": kind,
            "status": "AWAITING_ACTION" if kind == "PAUSE" else "IN_PROGRESS",
            "expiresAt": utcnow() + timedelta(seconds=minutes * self.minute()),
            "timeoutAction": timeout.get("action") or "ROLLBACK",
            "_expires": time.monotonic() + minutes * self.minute(),
            "_next": time.monotonic(),
            "_details": hook.get("hookDetails"),
        }
        if kind == "AWS_LAMBDA":
            running["targetArn"] = hook["hookTargetArn"]
        return running

    @staticmethod
    def public(hook: dict) -> dict:
        return {k: v for k, v in hook.items() if not k.startswith("_")}

    def hooks_done(self, service, ours: dict, green: dict) -> bool:
        """Asks each hook of the stage that is due; whether all let the deployment go on. A
        failed one rolls it back."""
        now = time.monotonic()
        for hook in ours["_hooks"]:
            if hook["status"] in ("IN_PROGRESS", "AWAITING_ACTION") and now >= hook["_expires"]:
                hook["status"] = "TIMED_OUT"
            elif hook["status"] == "IN_PROGRESS" and now >= hook["_next"]:
                self.ask(ours, hook)
        ours["lifecycleHookDetails"] = [self.public(h) for h in ours["_hooks"]]
        for hook in ours["_hooks"]:
            failed = hook["status"] == "FAILED" or (
                hook["status"] == "TIMED_OUT" and hook["timeoutAction"] != "CONTINUE"
            )
            if failed or hook.get("_rollback"):
                reason = PAUSE_ROLLBACK if hook.get("_rollback") else HOOK_ROLLBACK
                self.roll_back(service, ours, green, reason)
                return False
        return all(h["status"] in ("SUCCEEDED", "TIMED_OUT") for h in ours["_hooks"])

    def ask(self, ours: dict, hook: dict) -> None:
        target = ours["targetServiceRevision"]
        payload = {
            "executionDetails": {
                "testTrafficWeights": {target["arn"]: target.get("requestedTestTrafficWeight", 0.0)},
                "productionTrafficWeights": {target["arn"]: target.get("requestedProductionTrafficWeight", 0.0)},
                "serviceArn": ours["serviceArn"],
                "targetServiceRevisionArn": target["arn"],
            },
            "executionId": hook["hookId"],
            "lifecycleStage": ours["lifecycleStage"],
            "resourceArn": ours["serviceDeploymentArn"],
            "hookDetails": hook.get("_details"),
        }
        answer = _invoke(hook["targetArn"], payload)
        status = (answer or {}).get("hookStatus")
        if status == "IN_PROGRESS":
            hook["_next"] = time.monotonic() + float(answer.get("callBackDelay", 30))
            hook["_details"] = answer.get("hookDetails", hook.get("_details"))
        elif status == "SUCCEEDED":
            hook["status"] = "SUCCEEDED"
        else:
            # FAILED, an answer without a valid hookStatus, or no function to ask.
            hook["status"] = "FAILED"

    def continue_hook(self, ours: dict, hook_id: str, action: str) -> None:
        """ContinueServiceDeployment: only a pause hook AWAITING_ACTION of a
        deployment IN_PROGRESS (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/continue-service-deployment.html)."""
        if ours["status"] != "IN_PROGRESS":
            _refuse(f"The service deployment is {ours['status']}: only one IN_PROGRESS can be continued.")
        hook = next((h for h in ours.get("_hooks") or [] if h["hookId"] == hook_id), None)
        if hook is None or hook["status"] != "AWAITING_ACTION":
            _refuse(f"No lifecycle hook {hook_id} is awaiting action in the service deployment.")
        hook["status"] = "SUCCEEDED" if action == "CONTINUE" else "FAILED"
        hook["_rollback"] = action == "ROLLBACK"

    # Failure.

    def fail(self, service, ours: dict, green: dict, cause: dict, rollback_on: bool) -> None:
        """The circuit breaker or an alarm failed the deployment."""
        why = deployments.mark_cause(ours, cause)
        if rollback_on:
            self.roll_back(service, ours, green, why)
            return
        green["rolloutState"] = "FAILED"
        green["rolloutStateReason"] = ours["statusReason"]
        deployments.stop(ours, utcnow())

    def roll_back(self, service, ours: dict, green: dict, reason: str) -> None:
        """Traffic back to the blue revision, which still runs; the green tasks stop."""
        now = utcnow()
        blue = next((d for d in service.deployments if d is not green and d.get("_revision")), None)
        green["rolloutState"] = "FAILED"
        green["rolloutStateReason"] = reason
        green["updatedAt"] = now
        if blue is None:
            deployments.finish(ours, "ROLLBACK_FAILED", deployments.NO_ROLLBACK_TARGET, now)
            return
        self.weigh(ours, "requestedProductionTrafficWeight", 0.0)
        self.weigh(ours, "requestedTestTrafficWeight", 0.0)
        ours["status"] = "ROLLBACK_IN_PROGRESS"
        ours["updatedAt"] = now
        ours["rollback"] = {"reason": reason, "startedAt": now, "serviceRevisionArn": blue["_revision"]}
        ours["_rollback"] = blue["id"]
        service.deployments.remove(blue)
        green["status"] = "ACTIVE"
        blue["status"] = "PRIMARY"
        service.deployments.insert(0, blue)
        service.task_definition = blue["taskDefinition"]
        self.scheduler.event(service, f"(service {service.name}) rolling back to deployment {blue['id']}.")

    def settle_rollbacks(self, backend, service) -> None:
        """A staged rollback is done once the green tasks stopped."""
        by = self.scheduler.tasks_by_deployment(backend, service)
        for ours in deployments.deployments_of(service).values():
            if ours["status"] != "ROLLBACK_IN_PROGRESS" or ours.get("_strategy", "ROLLING") == "ROLLING":
                continue
            green = by.get(_legacy_id(ours), [])
            if all(t.last_status == "STOPPED" for t in green):
                deployments.finish(ours, "ROLLBACK_SUCCESSFUL", ours.get("statusReason"), utcnow())


def _legacy_id(ours: dict) -> str:
    return ours["_legacy"]


# --- the admin API and ContinueServiceDeployment ----------------------------------


def continue_service_deployment(self) -> ActionResult:
    arn = self._get_param("serviceDeploymentArn") or ""
    hook_id = self._get_param("hookId") or ""
    action = self._get_param("action") or "CONTINUE"
    if action not in ("CONTINUE", "ROLLBACK"):
        _refuse("action must be CONTINUE or ROLLBACK.")
    ours = deployments._by_arn(self.ecs_backend, arn, "deployment")
    if ours is None:
        raise deployments.ServiceDeploymentNotFoundException(f"The service deployment {arn} was not found.")
    STRATEGIES_DRIVER.continue_hook(ours, hook_id, action)
    return ActionResult({"serviceDeploymentArn": arn})


STRATEGIES_DRIVER: Strategies


def install(driver: Strategies) -> None:
    global STRATEGIES_DRIVER
    STRATEGIES_DRIVER = driver
    ecs_responses.EC2ContainerServiceResponse.continue_service_deployment = continue_service_deployment


def set_alarm(data: dict) -> dict:
    """`/_sandbox/alarm`: POST {"name", "state"} sets a CloudWatch alarm's state
    as SetAlarmState does (in `account` and `region`, the sandbox's own by default)."""
    from .config import ACCOUNT_ID, REGION

    backend = cloudwatch_backends[data.get("account", ACCOUNT_ID)][data.get("region", REGION)]
    backend.set_alarm_state(data["name"], data.get("reason", "set by the sandbox"), None, data["state"])
    return {"name": data["name"], "state": backend.alarms[data["name"]].state_value}


def admin(method: str, data: dict) -> dict:
    """`/_sandbox/hooks`: POST {"function": ARN, "answers": [...]} scripts a
    Lambda hook; GET lists each function's invocations."""
    if method == "POST":
        script(data["function"], data.get("answers") or [])
    return json.loads(json.dumps(invocations(), default=str))
