"""Fixtures for the sandbox's own tests. They expect a running sandbox
(`sandboxctl start`); each test starts from a reset account."""

from __future__ import annotations

import time
import uuid

import docker
import pytest
import requests

from berth_sandbox.config import ACCOUNT_ID, BASE_IMAGE, REGION, Endpoints

ENDPOINTS = Endpoints()


class Sandbox:
    def __init__(self):
        self.url = ENDPOINTS.endpoint_url
        self.registry = ENDPOINTS.registry_addr
        self.ecr_host = ENDPOINTS.ecr_host

    def admin(self, method: str, route: str, payload=None):
        response = requests.request(method, f"{self.url}/_sandbox/{route}", json=payload, timeout=120)
        response.raise_for_status()
        return response.json()

    def client(self, service: str, **kwargs):
        return ENDPOINTS.client(service, **kwargs)


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    sb = Sandbox()
    try:
        sb.admin("GET", "health")
    except requests.RequestException as err:
        pytest.exit(f"the sandbox is not running on {sb.url}: run `sandbox/sandboxctl start` ({err})", 2)
    return sb


@pytest.fixture(autouse=True)
def fresh(sandbox):
    sandbox.admin("POST", "reset")
    sandbox.admin(
        "POST",
        "config",
        {
            "settle_seconds": 1.0,
            "tick_seconds": 0.1,
            "stop_timeout_seconds": 2,
            "stopped_task_retention_seconds": 3600,
            "client_token_ttl_seconds": 86400,
            "minute_seconds": 60.0,
        },
    )
    yield
    sandbox.admin("DELETE", "faults")


@pytest.fixture
def ecs(sandbox):
    return sandbox.client("ecs")


@pytest.fixture
def logs(sandbox):
    return sandbox.client("logs")


@pytest.fixture
def ecr(sandbox):
    return sandbox.client("ecr")


@pytest.fixture(scope="session")
def engine():
    return docker.from_env()


def login(ecr) -> dict:
    """The registry login a client gets from ECR's GetAuthorizationToken."""
    import base64

    [data] = ecr.get_authorization_token()["authorizationData"]
    username, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    return {"username": username, "password": password}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def container_def(name: str, command: list[str] | None = None, **extra) -> dict:
    """A container without memoryReservation: real ECS accepts that on Fargate."""
    definition = {
        "name": name,
        "image": BASE_IMAGE,
        "essential": True,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": "/ecs/sandbox-tests",
                "awslogs-region": REGION,
                "awslogs-stream-prefix": "tests",
            },
        },
    }
    if command is not None:
        definition["command"] = command
    definition.update(extra)
    return definition


@pytest.fixture
def cluster(ecs, logs):
    name = unique("tests")
    ecs.create_cluster(clusterName=name)
    logs.create_log_group(logGroupName="/ecs/sandbox-tests")
    return name


def stopped(ecs, cluster: str, task_arn: str, timeout: float = 60) -> dict:
    def check():
        task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
        return task if task["lastStatus"] == "STOPPED" else None

    return wait_for(check, timeout=timeout, what=f"task {task_arn} to stop")


def log_lines(logs, container: str, task_arn: str) -> list[str]:
    stream = f"tests/{container}/{task_arn.split('/')[-1]}"
    events = logs.get_log_events(logGroupName="/ecs/sandbox-tests", logStreamName=stream)["events"]
    return [e["message"] for e in events]


__all__ = ["ACCOUNT_ID", "REGION", "container_def", "log_lines", "stopped", "unique", "wait_for"]
