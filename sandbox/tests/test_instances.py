"""Two sandboxes on one Docker Engine: each cleans up only its own task
containers, and `sandboxctl stop` leaves nothing of its instance behind, even
when the server is killed before it could clean up. The second sandbox runs on
free ports with its own state dir; the shared one keeps running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
import requests
from conftest import ENDPOINTS, container_def, unique, wait_for

from berth_sandbox.__main__ import alive
from berth_sandbox.config import BASE_IMAGE, SANDBOX_DIR, Endpoints
from berth_sandbox.containers import instance_containers

SLEEP = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SecondSandbox:
    def __init__(self, state_dir):
        self.endpoints = Endpoints(
            port=free_port(), registry_port=free_port(), docker_tls_port=free_port(), state_dir=state_dir
        )

    def ctl(self, command: str) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "BERTH_SANDBOX_PORT": str(self.endpoints.port),
            "BERTH_SANDBOX_REGISTRY_PORT": str(self.endpoints.registry_port),
            "BERTH_SANDBOX_DOCKER_TLS_PORT": str(self.endpoints.docker_tls_port),
            "BERTH_SANDBOX_STATE": str(self.endpoints.state_dir),
        }
        return subprocess.run(
            [sys.executable, "-m", "berth_sandbox", command],
            cwd=SANDBOX_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self) -> None:
        started = self.ctl("start")
        assert started.returncode == 0, started.stderr

    def run_tasks(self, count: int) -> list[str]:
        """`count` long-running tasks, once their containers run."""
        ecs = self.endpoints.client("ecs")
        ecs.create_cluster(clusterName="second")
        ecs.register_task_definition(
            family="sleeper",
            memory="512",
            containerDefinitions=[{"name": "app", "image": BASE_IMAGE, "command": SLEEP}],
        )
        arns = [t["taskArn"] for t in ecs.run_task(cluster="second", taskDefinition="sleeper", count=count)["tasks"]]

        def all_running():
            tasks = ecs.describe_tasks(cluster="second", tasks=arns)["tasks"]
            return all(t["lastStatus"] == "RUNNING" for t in tasks)

        wait_for(all_running, what="the second sandbox's tasks to run")
        return arns

    def registry_pid(self) -> int:
        return int((self.endpoints.state_dir / "registry.pid").read_text())

    def server_pid(self) -> int:
        return int((self.endpoints.state_dir / "server.pid").read_text())

    def docker_tls_listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.endpoints.docker_tls_port), timeout=2).close()
            return True
        except OSError:
            return False


@pytest.fixture
def second(tmp_path):
    sandbox = SecondSandbox(tmp_path / "state")
    yield sandbox
    sandbox.ctl("stop")  # whatever the test left


@pytest.fixture
def survivor(ecs, cluster, engine) -> str:
    """A task of the shared sandbox, running: the second one must not touch it."""
    family = unique("survivor")
    ecs.register_task_definition(family=family, memory="512", containerDefinitions=[container_def("app", SLEEP)])
    arn = ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"][0]["taskArn"]

    def up():
        return ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING"

    wait_for(up, what="the shared sandbox's task to run")
    assert len(instance_containers(engine, ENDPOINTS)) == 1
    return arn


def assert_survived(ecs, cluster, engine, arn: str) -> None:
    assert ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING"
    assert len(instance_containers(engine, ENDPOINTS)) == 1


def test_stop_removes_its_containers_and_registry_and_no_one_elses(ecs, cluster, engine, second, survivor):
    assert second.endpoints.instance_id != ENDPOINTS.instance_id
    second.start()  # its startup cleanup (leftovers) leaves the shared sandbox alone
    second.run_tasks(2)
    # and so does its reset
    requests.post(f"{second.endpoints.endpoint_url}/_sandbox/reset", timeout=120).raise_for_status()
    assert instance_containers(engine, second.endpoints) == []
    assert_survived(ecs, cluster, engine, survivor)

    second.run_tasks(3)
    assert len(instance_containers(engine, second.endpoints)) == 3
    registry = second.registry_pid()
    assert second.docker_tls_listening()
    stopped = second.ctl("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"sandbox: stopped (removed 3 task containers, registry pid {registry})" in stopped.stderr
    assert instance_containers(engine, second.endpoints) == []
    assert not alive(registry)
    assert not second.docker_tls_listening()
    assert_survived(ecs, cluster, engine, survivor)


def test_stop_cleans_up_after_a_killed_server(ecs, cluster, engine, second, survivor):
    second.start()
    second.run_tasks(3)
    registry = second.registry_pid()
    os.kill(second.server_pid(), signal.SIGKILL)  # no cleanup of its own
    wait_for(lambda: not alive(second.server_pid()), what="the server to die")
    assert len(instance_containers(engine, second.endpoints)) == 3
    assert alive(registry)

    stopped = second.ctl("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"sandbox: stopped (removed 3 task containers, registry pid {registry})" in stopped.stderr
    assert instance_containers(engine, second.endpoints) == []
    assert not alive(registry)
    assert not second.docker_tls_listening()  # it lived in the killed server
    assert_survived(ecs, cluster, engine, survivor)
