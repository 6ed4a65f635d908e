"""Figures for the sandbox itself: RunTask round trip and a rollout to COMPLETED.

Run against a started sandbox: `sandbox/sandboxctl bench`. It resets the
account first. Prints one line per figure (median, min, max of N runs)."""

from __future__ import annotations

import statistics
import time

import requests

from .config import BASE_IMAGE, Endpoints


def _until(predicate, timeout: float = 120, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark step timed out")


def _figure(name: str, samples: list[float]) -> str:
    return (
        f"{name:<34} median {statistics.median(samples):6.2f}s  "
        f"min {min(samples):6.2f}s  max {max(samples):6.2f}s  (n={len(samples)})"
    )


def bench(endpoints: Endpoints, runs: int = 5) -> list[str]:
    requests.post(f"{endpoints.endpoint_url}/_sandbox/reset", timeout=120).raise_for_status()
    settings = requests.get(f"{endpoints.endpoint_url}/_sandbox/config", timeout=5).json()
    ecs = endpoints.client("ecs")
    ecs.create_cluster(clusterName="bench")
    container = {"name": "app", "image": BASE_IMAGE, "essential": True}
    ecs.register_task_definition(
        family="bench-exit", memory="128", containerDefinitions=[{**container, "command": ["true"]}]
    )
    round_trips = []
    for _ in range(runs):
        began = time.monotonic()
        arn = ecs.run_task(cluster="bench", taskDefinition="bench-exit")["tasks"][0]["taskArn"]
        _until(lambda arn=arn: ecs.describe_tasks(cluster="bench", tasks=[arn])["tasks"][0]["lastStatus"] == "STOPPED")
        round_trips.append(time.monotonic() - began)

    up = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    revisions = [
        ecs.register_task_definition(
            family="bench-web",
            memory="128",
            containerDefinitions=[{**container, "command": up, "environment": [{"name": "N", "value": str(n)}]}],
        )["taskDefinition"]["taskDefinitionArn"]
        for n in range(runs + 1)
    ]
    ecs.create_service(cluster="bench", serviceName="web", taskDefinition=revisions[0], desiredCount=2)

    def completed():
        deployments = ecs.describe_services(cluster="bench", services=["web"])["services"][0]["deployments"]
        return len(deployments) == 1 and deployments[0]["rolloutState"] == "COMPLETED"

    _until(completed)
    rollouts = []
    for revision in revisions[1:]:
        began = time.monotonic()
        ecs.update_service(cluster="bench", service="web", taskDefinition=revision)
        _until(completed)
        rollouts.append(time.monotonic() - began)
    return [
        _figure("RunTask round trip (exit 0)", round_trips),
        _figure(
            f"rollout to COMPLETED (2 tasks, settle {settings['settle_seconds']}s)",
            rollouts,
        ),
    ]
