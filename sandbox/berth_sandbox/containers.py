"""Task containers of one sandbox instance. Several sandboxes may share one
Docker Engine (a second one on other ports, with its own state dir, in the
tests): every container carries its instance's id as a label, and every
cleanup (reset, leftovers at startup, shutdown, `sandboxctl stop`) removes
only the containers with this instance's label."""

from __future__ import annotations

import docker
import docker.errors

from .config import Endpoints

LABEL = "berth-sandbox"
INSTANCE_LABEL = f"{LABEL}.instance"
TASK_LABEL = f"{LABEL}.task"


def labels(endpoints: Endpoints, task_arn: str) -> dict[str, str]:
    return {LABEL: "1", INSTANCE_LABEL: endpoints.instance_id, TASK_LABEL: task_arn}


def instance_containers(engine: docker.DockerClient, endpoints: Endpoints) -> list[str]:
    """Ids of this instance's containers, running or not. The low-level
    listing: the high-level one inspects each container and fails on one
    that a task thread removes meanwhile."""
    found = engine.api.containers(all=True, filters={"label": f"{INSTANCE_LABEL}={endpoints.instance_id}"})
    return [c["Id"] for c in found]


def remove_instance_containers(engine: docker.DockerClient, endpoints: Endpoints) -> list[str]:
    """Force-remove this instance's containers; the ids removed."""
    removed = []
    for cid in instance_containers(engine, endpoints):
        try:
            engine.api.remove_container(cid, force=True)
            removed.append(cid)
        except docker.errors.NotFound:
            pass  # gone meanwhile (a task thread removed it)
        except docker.errors.APIError:
            pass  # being removed already; the next cleanup finds it if not
    return removed
