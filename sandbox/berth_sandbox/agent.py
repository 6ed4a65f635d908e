"""The ECS agent: runs every ECS task as real containers in the local Docker
Engine and reports on them as ECS does.

What it adds to moto's task model:
- every container of a task listed, each with its real exit code;
- task lifecycle PROVISIONING -> PENDING -> RUNNING -> STOPPING -> STOPPED with
  `stopCode`, `stoppedReason`, `stoppedAt` as ECS reports them
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-lifecycle-explanation.html);
- container output copied to the CloudWatch Logs stream that the `awslogs`
  driver would write (`<prefix>/<container>/<task-id>`)
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using_awslogs.html);
- images of our ECR pulled from the registry, named by `repositoryUri` or by
  ECR's real host name;
- an image whose platform is not the task definition's `runtimePlatform`
  (X86_64 unless it says otherwise) failing to start with
  CannotPullContainerError, as ECS pulls only the image for that platform
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html#runtime-platform,
  https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_cannot_pull_image.html);
- when an essential container exits, the others stopped with SIGTERM and,
  after their `stopTimeout` (capped by `stop_timeout_seconds`), SIGKILL
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html);
- EFS volumes mapped to host folders;
- task health from the containers' `healthCheck`, else time alive;
- stopped tasks forgotten after the retention time (DescribeTasks: stopped
  tasks stay in the results for at least an hour, then answer `MISSING`)
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html);
- containers labelled with this sandbox's instance id, so that cleanups leave
  other sandboxes' containers alone (`containers.py`).

Each tick it first hands every ECS backend to its `schedule_services` hook
(the service scheduler, wired in by `ecs.install`) and forgets stopped tasks
past their retention, then starts new tasks, watches running ones and stops
those asked to stop.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import docker.errors
from moto.ecs.models import EC2ContainerServiceBackend, Task, ecs_backends
from moto.logs.models import logs_backends

from . import containers, registries
from .config import BASE_IMAGE, STAND_IN_IMAGES, Endpoints, Tunables, registry_auth_config

log = logging.getLogger("berth_sandbox.agent")

# moto is not thread-safe; every request and every agent mutation holds this.
LOCK = threading.RLock()


def now() -> datetime:
    return datetime.now(UTC)


def resource_requirements(task_definition) -> dict[str, Any]:
    # moto sums memory and fails (HTTP 500) when a container has neither
    # `memory` nor `memoryReservation`; Fargate tasks set memory at task level.
    total = {"CPU": 0, "MEMORY": 0, "PORTS": [], "PORTS_UDP": []}
    for cdef in task_definition.container_definitions:
        total["CPU"] += int(cdef.get("cpu") or 0)
        total["MEMORY"] += int(cdef.get("memory") or cdef.get("memoryReservation") or 0)
    return total


class Reset(Exception):
    """The account was reset under a task that was starting."""


class StartError(Exception):
    """A task could not start; `reason` is ECS's stoppedReason."""

    def __init__(self, reason: str, container: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.container = container


PULL_RETRIED = "CannotPullContainerError: pull image manifest has been retried 1 time(s)"
# runtimePlatform's cpuArchitecture and operatingSystemFamily as Docker names them.
ARCHITECTURES = {"X86_64": "amd64", "ARM64": "arm64"}
# Our stand-ins for public images that are published for several platforms:
# they match any platform a task definition asks for.
MULTI_PLATFORM = {BASE_IMAGE, *STAND_IN_IMAGES}


def account_of(task: Task) -> str:
    """The account a task runs in, as its ARN names it."""
    return task.task_arn.split(":")[4]


def pull_error(image: str, container: str, platform: str, err: docker.errors.APIError) -> StartError:
    """A pull that failed, in the words ECS uses for it."""
    explanation = str(err.explanation or err)
    if "no matching manifest" in explanation:  # an image index without the task's platform
        return StartError(platform_reason(platform), container)
    return StartError(f"{PULL_RETRIED}: failed to resolve ref {image}: {explanation}", container)


def missing_secret(value_from: str, account: str, region: str) -> str | None:
    """How ECS fails to read a `secrets` `valueFrom` that does not exist: an SSM parameter (its
    ARN, or its name in the task's region) or a Secrets Manager secret (its ARN, perhaps with a
    JSON key, version stage and version id after it); `None` when it exists."""
    from moto.secretsmanager.models import secretsmanager_backends
    from moto.ssm.models import ssm_backends

    parts = value_from.split(":")
    if value_from.startswith("arn:") and len(parts) >= 7 and parts[2] == "secretsmanager":
        arn = ":".join(parts[:7])
        backend = secretsmanager_backends[parts[4] or account][parts[3] or region]
        with LOCK:
            found = backend._is_valid_identifier(arn)
        if found:
            return None
        return (
            "unable to retrieve secret from asm: service call has been retried 1 time(s): "
            f"failed to fetch secret {arn} from secrets manager: ResourceNotFoundException: "
            "Secrets Manager can't find the specified secret."
        )
    if value_from.startswith("arn:") and len(parts) >= 6 and parts[2] == "ssm":
        # `parameter/app/stg/key` names `/app/stg/key`; `parameter/key` names `key`.
        rest = parts[5].removeprefix("parameter")
        name = rest if "/" in rest[1:] else rest[1:]
        account, region = parts[4] or account, parts[3] or region
    else:
        name = value_from
    backend = ssm_backends[account][region]
    with LOCK:
        found = backend.get_parameter(name) is not None
    if found:
        return None
    return (
        f"unable to retrieve secrets from ssm: service call has been retried 1 time(s): invalid ssm parameters: {name}"
    )


def platform_reason(platform: str) -> str:
    """What ECS (Fargate) says when an image has no variant for the task's platform."""
    return f"{PULL_RETRIED}: image Manifest does not contain descriptor matching platform '{platform}'"


def task_platform(definition) -> str:
    """The task definition's `runtimePlatform` as `os/arch`; ECS assumes
    LINUX on X86_64 when it names none."""
    runtime = getattr(definition, "runtime_platform", None) or {}
    architecture = runtime.get("cpuArchitecture") or "X86_64"
    family = runtime.get("operatingSystemFamily") or "LINUX"
    os_name = "linux" if family == "LINUX" else "windows"
    return f"{os_name}/{ARCHITECTURES.get(architecture, architecture.lower())}"


@dataclass
class Runtime:
    """What the agent knows about one task beyond moto's model."""

    task: Task
    backend: EC2ContainerServiceBackend
    definition: Any
    generation: int
    phase: str = "new"  # new, starting, running, stopping, stopped
    containers: dict[str, str] = field(default_factory=dict)  # name -> docker id
    log_threads: list[threading.Thread] = field(default_factory=list)
    running_since: float | None = None
    scratch: Path | None = None

    def cdef(self, name: str) -> dict:
        return next(c for c in self.definition.container_definitions if c["name"] == name)


class Agent:
    def __init__(self, endpoints: Endpoints, tunables: Tunables):
        self.endpoints = endpoints
        self.tunables = tunables
        self.docker = docker.from_env(timeout=300)
        self.runtimes: dict[str, Runtime] = {}
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="task")
        self.stopping = threading.Event()
        self.generation = 0
        # Called each tick, under LOCK, for every ECS backend before the agent
        # looks at its tasks: `ecs.install` plugs the service scheduler in here.
        self.schedule_services: Callable[[EC2ContainerServiceBackend], None] = lambda backend: None
        self.thread = threading.Thread(target=self.run, name="agent", daemon=True)
        self.remove_leftovers()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.stopping.set()
        with LOCK:
            # Like a reset for tasks still starting: they remove what they made.
            self.generation += 1
        self.remove_leftovers()

    def remove_leftovers(self) -> None:
        containers.remove_instance_containers(self.docker, self.endpoints)

    def reset(self) -> None:
        from moto.moto_api._internal.models import moto_api_backend

        with LOCK:
            self.generation += 1
            self.runtimes.clear()
            moto_api_backend.reset()
        self.remove_leftovers()
        shutil.rmtree(self.endpoints.state_dir / "efs", ignore_errors=True)
        shutil.rmtree(self.endpoints.state_dir / "scratch", ignore_errors=True)

    def describe(self) -> list[dict]:
        with LOCK:
            return [
                {
                    "taskArn": rt.task.task_arn,
                    "phase": rt.phase,
                    "containers": rt.containers,
                    "lastStatus": rt.task.last_status,
                }
                for rt in self.runtimes.values()
            ]

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception:  # the agent must outlive any one bad tick
                log.exception("agent tick failed")
            self.stopping.wait(self.tunables.tick_seconds)

    def tick(self) -> None:
        with LOCK:
            for backend in self.backends():
                self.schedule_services(backend)
                # After the scheduler, which has seen every task stop at least once.
                self.forget_stopped(backend)
            runtimes = list(self.runtimes.values())
        for rt in runtimes:
            if rt.phase == "new" and rt.task.desired_status == "STOPPED":
                # Stopped before it started: nothing to run.
                rt.phase = "stopping"
                self.pool.submit(self.guard, self.finish, rt, rt.task.stop_code, rt.task.stopped_reason)
            elif rt.phase == "new":
                rt.phase = "starting"
                self.pool.submit(self.guard, self.start_task, rt)
            elif rt.phase == "running":
                self.watch(rt)

    def guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s failed", fn.__name__)

    def forget_stopped(self, backend: EC2ContainerServiceBackend) -> None:
        """Drop tasks stopped longer than the retention time from moto and
        from the agent: ECS, too, stops reporting them after a while."""
        cutoff = now() - timedelta(seconds=self.tunables.stopped_task_retention_seconds)
        for tasks in backend.tasks.values():
            for arn, task in list(tasks.items()):
                stopped_at = getattr(task, "stopped_at", None)
                if task.last_status == "STOPPED" and stopped_at and stopped_at <= cutoff:
                    del tasks[arn]
                    self.runtimes.pop(arn, None)

    @staticmethod
    def backends() -> list[EC2ContainerServiceBackend]:
        found = []
        for account in list(ecs_backends.values()):
            found.extend(list(account.values()))
        return found

    # -- tasks -------------------------------------------------------------
    def launch(self, backend, cluster, definition, **fields) -> Task:
        """A new task of `definition` in `cluster`: known to moto, run by this agent."""
        task = Task(
            cluster=cluster,
            task_definition=definition,
            container_instance_arn=None,
            resource_requirements=resource_requirements(definition),
            backend=backend,
            **fields,
        )
        backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
        self.adopt(backend, task, definition)
        return task

    def adopt(self, backend, task: Task, definition) -> None:
        """Give a freshly created task ECS's initial state and queue it."""
        task.last_status = "PROVISIONING"
        task.desired_status = "RUNNING"
        task.created_at = now()
        task.version = 1
        task.cpu = definition.cpu
        task.memory = definition.memory
        task.health_status = "UNKNOWN"
        task.availability_zone = f"{task.region_name}a"
        task.stop_code = None
        task.containers = [
            {
                "containerArn": f"arn:aws:ecs:{task.region_name}:{account_of(task)}:container/"
                f"{task.cluster_name}/{task.id}/{uuid.uuid4()}",
                "taskArn": task.task_arn,
                "name": cdef["name"],
                "image": cdef.get("image"),
                "lastStatus": "PENDING",
                "networkInterfaces": [],
                "healthStatus": "UNKNOWN",
                "cpu": str(cdef.get("cpu", 0)),
                **({"memory": str(cdef["memory"])} if cdef.get("memory") else {}),
                **({"memoryReservation": str(cdef["memoryReservation"])} if cdef.get("memoryReservation") else {}),
            }
            for cdef in definition.container_definitions
        ]
        self.runtimes[task.task_arn] = Runtime(task, backend, definition, self.generation)

    def container_state(self, task: Task, name: str) -> dict:
        return next(c for c in task.containers if c["name"] == name)

    def request_stop(self, task: Task, stop_code: str, reason: str) -> None:
        task.desired_status = "STOPPED"
        task.stop_code = stop_code
        task.stopped_reason = reason
        task.stopping_at = now()

    def start_task(self, rt: Runtime) -> None:
        task = rt.task
        with LOCK:
            if rt.generation != self.generation:
                return
            task.last_status = "PENDING"
        try:
            self.check_secrets(rt)
            with LOCK:
                task.pull_started_at = now()
            platform = task_platform(rt.definition)
            images = {
                cdef["name"]: self.ensure_image(cdef["name"], cdef["image"], platform, account_of(task))
                for cdef in rt.definition.container_definitions
            }
            with LOCK:
                task.pull_stopped_at = now()
                for name, (_, digest) in images.items():
                    if digest:
                        self.container_state(task, name)["imageDigest"] = digest
            self.check_log_groups(rt)
            binds = self.volume_binds(rt)
            for cdef in rt.definition.container_definitions:
                self.check_generation(rt)
                rt.containers[cdef["name"]] = self.create_container(rt, cdef, images[cdef["name"]][0], binds)
            for cdef in rt.definition.container_definitions:
                self.check_generation(rt)
                cid = rt.containers[cdef["name"]]
                try:
                    self.docker.api.start(cid)
                except docker.errors.APIError as err:
                    raise StartError(f"CannotStartContainerError: {err.explanation or err}", cdef["name"]) from err
                self.ship_logs(rt, cdef)
        except Reset:
            self.remove_containers(rt)
            return
        except StartError as err:
            # Containers that did start are stopped, so their exit codes are real.
            self.stop_containers(rt, timeout=1)
            self.finish(rt, "TaskFailedToStart", err.reason, failed_container=err.container)
            return
        with LOCK:
            if rt.generation != self.generation:
                return
            task.last_status = "RUNNING"
            task.started_at = now()
            task.connectivity = "CONNECTED"
            task.connectivity_at = task.started_at
            for state in task.containers:
                state["lastStatus"] = "RUNNING"
                state["runtimeId"] = rt.containers[state["name"]]
            rt.running_since = time.monotonic()
            rt.phase = "running"

    def check_generation(self, rt: Runtime) -> None:
        """A reset while the task was starting: its containers must not outlive it."""
        if rt.generation != self.generation:
            raise Reset

    def stop_containers(self, rt: Runtime, timeout: int) -> None:
        for cid in rt.containers.values():
            try:
                self.docker.api.stop(cid, timeout=timeout)
            except docker.errors.APIError:
                pass

    def remove_containers(self, rt: Runtime) -> None:
        for cid in rt.containers.values():
            try:
                self.docker.api.remove_container(cid, force=True)
            except docker.errors.APIError:
                pass

    @staticmethod
    def registry_ref(image: str) -> str | None:
        """The registry's name for an image of an ECR registry: named by its
        `repositoryUri` (the registry's front itself) or by ECR's real host
        name, as task definitions written for AWS name it. None for other
        images."""
        fronts = registries.get()
        host, _, rest = image.partition("/")
        if not rest:
            return None
        if fronts.of_addr(host):
            return image
        addr = fronts.ecr_host(host)
        return f"{addr}/{rest}" if addr else None

    def ensure_image(self, container: str, image: str, platform: str, account: str) -> tuple[str, str | None]:
        """The local reference to run, and its registry digest when it came
        from an ECR registry. Images in ECR are always pulled from their
        registry, for the task's platform, with the login of the task's
        account (its execution role's): another account's repository lets the
        pull through only where its policy allows that account. Others are
        used when the engine has them cached, else pulled (which fails here:
        there is no other registry). Either way the image must be built for
        the task's platform."""
        local = self.registry_ref(image)
        if local:
            _, region = registries.get().of_addr(local.split("/", 1)[0])
            try:
                # With the execution role's ECR login in the registry's region, as ECS's agent pulls.
                login = registry_auth_config(account, region)
                self.docker.api.pull(local, platform=platform, auth_config=login)
            except docker.errors.APIError as err:
                raise pull_error(image, container, platform, err) from err
            self.check_platform(container, local, platform)
            digests = self.docker.api.inspect_image(local).get("RepoDigests") or []
            host = local.split("/", 1)[0]
            digest = next((d.split("@", 1)[1] for d in digests if d.startswith(f"{host}/")), None)
            return local, digest
        try:
            self.docker.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            try:
                self.docker.api.pull(image, platform=platform)
            except docker.errors.APIError as err:
                raise pull_error(image, container, platform, err) from err
        self.check_platform(container, image, platform)
        return image, None

    def check_platform(self, container: str, image: str, platform: str) -> None:
        """ECS pulls only the image for the task's platform; an image built
        for another one (an arm64 build from a laptop for an X86_64 task) is
        not found. The engine pulls what it has and says where it was built."""
        if image in MULTI_PLATFORM:
            return
        config = self.docker.api.inspect_image(image)
        if f"{config.get('Os')}/{config.get('Architecture')}" != platform:
            raise StartError(platform_reason(platform), container)

    def check_secrets(self, rt: Runtime) -> None:
        """ECS reads each container's `secrets` with the task execution role before it pulls
        anything; one that does not exist fails the task's start with ECS's words
        (https://repost.aws/knowledge-center/ecs-unable-to-pull-secrets)."""
        account = account_of(rt.task)
        task_region = rt.task.task_arn.split(":")[3]
        for cdef in rt.definition.container_definitions:
            for secret in cdef.get("secrets") or []:
                value_from = secret.get("valueFrom", "")
                problem = missing_secret(value_from, account, task_region)
                if problem:
                    raise StartError(
                        "ResourceInitializationError: unable to pull secrets or registry auth: "
                        f"execution resource retrieval failed: {problem}",
                        cdef["name"],
                    )

    def check_log_groups(self, rt: Runtime) -> None:
        task = rt.task
        for cdef in rt.definition.container_definitions:
            target = self.log_target(rt, cdef)
            if not target:
                continue
            account, region, group, stream = target
            with LOCK:
                logs = logs_backends[account][region]
                if group not in logs.groups:
                    options = cdef["logConfiguration"].get("options", {})
                    if options.get("awslogs-create-group") == "true":
                        logs.create_log_group(group, {})
                    else:
                        raise StartError(
                            "ResourceInitializationError: failed to validate logger args: "
                            f"The specified log group does not exist. : ResourceNotFoundException: "
                            f"log group `{group}` for container `{cdef['name']}`",
                            cdef["name"],
                        )
                group_model = logs.groups[group]
                if stream not in group_model.streams:
                    logs.create_log_stream(group, stream)
        del task

    def log_target(self, rt: Runtime, cdef: dict) -> tuple[str, str, str, str] | None:
        """The task's account, and the log group's region, name and stream."""
        config = cdef.get("logConfiguration") or {}
        if config.get("logDriver") != "awslogs":
            return None
        options = config.get("options", {})
        prefix = options.get("awslogs-stream-prefix")
        stream = f"{prefix}/{cdef['name']}/{rt.task.id}" if prefix else rt.task.id
        region = options.get("awslogs-region", rt.task.region_name)
        return account_of(rt.task), region, options.get("awslogs-group", ""), stream

    def volume_binds(self, rt: Runtime) -> dict[str, str]:
        """Host folder for each task volume: EFS file systems map to a folder
        shared by every task; host volumes to their source path; others to a
        scratch folder shared by the task's containers."""
        binds = {}
        for volume in rt.definition.volumes or []:
            name = volume["name"]
            if "efsVolumeConfiguration" in volume:
                efs = volume["efsVolumeConfiguration"]
                root = efs.get("rootDirectory", "/").strip("/")
                path = self.endpoints.state_dir / "efs" / efs["fileSystemId"] / root
            elif (volume.get("host") or {}).get("sourcePath"):
                path = Path(volume["host"]["sourcePath"])
            else:
                path = self.endpoints.state_dir / "scratch" / rt.task.id / name
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)
            binds[name] = str(path)
        return binds

    def create_container(self, rt: Runtime, cdef: dict, image: str, binds: dict[str, str]) -> str:
        override = next(
            (o for o in (rt.task.overrides or {}).get("containerOverrides", []) or [] if o.get("name") == cdef["name"]),
            {},
        )
        environment = {e["name"]: e["value"] for e in cdef.get("environment") or []}
        environment.update({e["name"]: e["value"] for e in override.get("environment") or []})
        for secret in cdef.get("secrets") or []:
            # No secret store behind the sandbox: the container sees that the
            # variable is set, never a real secret.
            environment.setdefault(secret["name"], f"sandbox-secret:{secret['valueFrom']}")
        volume_binds = {}
        for mount in cdef.get("mountPoints") or []:
            source = binds.get(mount.get("sourceVolume"))
            if source:
                volume_binds[source] = {
                    "bind": mount["containerPath"],
                    "mode": "ro" if mount.get("readOnly") else "rw",
                }
        healthcheck = None
        if cdef.get("healthCheck"):
            hc = cdef["healthCheck"]
            seconds = 1_000_000_000
            healthcheck = {
                "test": hc["command"],
                "interval": int(hc.get("interval", 30)) * seconds,
                "timeout": int(hc.get("timeout", 5)) * seconds,
                "retries": int(hc.get("retries", 3)),
                "start_period": int(hc.get("startPeriod", 0)) * seconds,
            }
        command = override.get("command") or cdef.get("command")
        try:
            created = self.docker.api.create_container(
                image=image,
                command=command,
                entrypoint=cdef.get("entryPoint"),
                environment=environment,
                working_dir=cdef.get("workingDirectory"),
                user=cdef.get("user"),
                labels=containers.labels(self.endpoints, rt.task.task_arn),
                healthcheck=healthcheck,
                name=f"berth-sb-{rt.task.id[:12]}-{cdef['name']}",
                host_config=self.docker.api.create_host_config(network_mode="none", binds=volume_binds),
            )
        except docker.errors.APIError as err:
            raise StartError(f"CannotCreateContainerError: {err.explanation or err}", cdef["name"]) from err
        return created["Id"]

    def ship_logs(self, rt: Runtime, cdef: dict) -> None:
        target = self.log_target(rt, cdef)
        if not target:
            return
        cid = rt.containers[cdef["name"]]
        thread = threading.Thread(target=self.guard, args=(self.copy_logs, cid, *target), daemon=True)
        thread.start()
        rt.log_threads.append(thread)

    def copy_logs(self, cid: str, account: str, region: str, group: str, stream: str) -> None:
        pending = b""
        for chunk in self.docker.api.logs(cid, stream=True, follow=True, timestamps=True):
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                self.put_log(account, region, group, stream, line)
        if pending:
            self.put_log(account, region, group, stream, pending)

    def put_log(self, account: str, region: str, group: str, stream: str, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        stamp, _, message = text.partition(" ")
        try:
            whole, _, fraction = stamp.rstrip("Z").partition(".")
            parsed = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
            millis = int(parsed.timestamp() * 1000) + int((fraction + "000")[:3])
        except ValueError:
            millis, message = int(time.time() * 1000), text
        with LOCK:
            try:
                logs_backends[account][region].put_log_events(
                    group, stream, [{"timestamp": millis, "message": message}]
                )
            except Exception:  # group deleted under us: the line is lost, as in ECS
                log.debug("dropped log line for %s/%s", group, stream)

    def watch(self, rt: Runtime) -> None:
        task = rt.task
        if task.desired_status == "STOPPED":
            rt.phase = "stopping"
            self.pool.submit(self.guard, self.stop_task, rt)
            return
        states = {}
        for name, cid in rt.containers.items():
            try:
                states[name] = self.docker.api.inspect_container(cid)["State"]
            except docker.errors.NotFound:
                states[name] = {"Status": "exited", "ExitCode": 137}
        essential_exit = None
        with LOCK:
            if rt.generation != self.generation:
                return
            health = []
            for name, state in states.items():
                container = self.container_state(task, name)
                cdef = rt.cdef(name)
                if "Health" in state:
                    status = {"healthy": "HEALTHY", "unhealthy": "UNHEALTHY"}.get(state["Health"]["Status"], "UNKNOWN")
                    container["healthStatus"] = status
                    if cdef.get("essential", True):
                        health.append(status)
                if state["Status"] in ("exited", "dead"):
                    container["lastStatus"] = "STOPPED"
                    container["exitCode"] = state["ExitCode"]
                    if cdef.get("essential", True) and essential_exit is None:
                        essential_exit = name
            if "UNHEALTHY" in health:
                task.health_status = "UNHEALTHY"
            elif health and all(h == "HEALTHY" for h in health):
                task.health_status = "HEALTHY"
            else:
                task.health_status = "UNKNOWN"
            if essential_exit:
                self.request_stop(task, "EssentialContainerExited", "Essential container in task exited")
        if essential_exit:
            rt.phase = "stopping"
            self.pool.submit(self.guard, self.stop_task, rt)

    def stop_task(self, rt: Runtime) -> None:
        with LOCK:
            rt.task.last_status = "STOPPING" if rt.task.last_status == "RUNNING" else rt.task.last_status
        for name, cid in rt.containers.items():
            try:
                self.docker.api.stop(cid, timeout=self.stop_timeout(rt.cdef(name)))
            except docker.errors.APIError:
                pass
        self.finish(rt, rt.task.stop_code or "UserInitiated", rt.task.stopped_reason)

    def stop_timeout(self, cdef: dict) -> int:
        """Seconds from SIGTERM to SIGKILL: the container's `stopTimeout`
        (ECS's default is 30), capped by the `stop_timeout_seconds` tunable."""
        cap = self.tunables.stop_timeout_seconds
        own = cdef.get("stopTimeout")
        return cap if own is None else min(int(own), cap)

    def finish(self, rt: Runtime, stop_code: str, reason: str, failed_container: str | None = None) -> None:
        """Record the stopped task: every container's exit code, after its
        output reached CloudWatch Logs."""
        for thread in rt.log_threads:
            thread.join(timeout=10)
        exits = {}
        for name, cid in rt.containers.items():
            try:
                exits[name] = self.docker.api.inspect_container(cid)["State"]
            except docker.errors.NotFound:
                pass
        with LOCK:
            if rt.generation != self.generation:
                return
            task = rt.task
            stamp = now()
            for container in task.containers:
                container["lastStatus"] = "STOPPED"
                state = exits.get(container["name"])
                if state and not state.get("StartedAt", "").startswith("0001"):
                    container["exitCode"] = state["ExitCode"]
                if container["name"] == failed_container:
                    container["reason"] = reason
            task.desired_status = "STOPPED"
            task.stop_code = stop_code
            task.stopped_reason = reason
            task.stopping_at = getattr(task, "stopping_at", None) or stamp
            task.execution_stopped_at = stamp
            task.stopped_at = stamp
            task.last_status = "STOPPED"
            task.connectivity = "DISCONNECTED"
            rt.phase = "stopped"
        self.remove_containers(rt)

    def healthy(self, task: Task) -> bool:
        rt = self.runtimes.get(task.task_arn)
        if rt is None or task.last_status != "RUNNING" or rt.running_since is None:
            return False
        checked = [c for c in rt.definition.container_definitions if c.get("healthCheck")]
        if checked:
            return task.health_status == "HEALTHY"
        return time.monotonic() - rt.running_since >= self.tunables.settle_seconds
