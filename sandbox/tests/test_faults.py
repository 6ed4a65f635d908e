"""Faults hit exactly the calls they are aimed at; counters count every call."""

from __future__ import annotations

import time

import botocore.config
import botocore.exceptions
import pytest
from conftest import container_def, unique


def no_retries(sandbox, service: str):
    return sandbox.client(service, config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def test_counters_count_each_operation(sandbox, ecs):
    sandbox.admin("DELETE", "counters")
    ecs.list_clusters()
    ecs.list_clusters()
    ecs.describe_clusters(clusters=["default"])
    sandbox.client("sts").get_caller_identity()
    counters = sandbox.admin("GET", "counters")
    assert counters == {
        "ecs:DescribeClusters": 1,
        "ecs:ListClusters": 2,
        "sts:GetCallerIdentity": 1,
    }


@pytest.mark.parametrize(
    ("error", "code"),
    [("throttle", "ThrottlingException"), ("500", "InternalFailure"), ("503", "ServiceUnavailable")],
)
def test_first_k_calls_fail_then_calls_pass(sandbox, error, code):
    ecs = no_retries(sandbox, "ecs")
    rule = sandbox.admin("POST", "faults", {"service": "ecs", "operation": "ListClusters", "error": error, "first": 2})
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            ecs.list_clusters()
        assert caught.value.response["Error"]["Code"] == code
    ecs.list_clusters()  # the third passes
    ecs.describe_clusters(clusters=["default"])  # other operations never failed
    [state] = sandbox.admin("GET", "faults")
    assert state["id"] == rule["id"]
    assert (state["matched"], state["fired"]) == (3, 2)


def test_dropped_connection(sandbox):
    ecs = no_retries(sandbox, "ecs")
    sandbox.admin("POST", "faults", {"service": "ecs", "operation": "ListClusters", "error": "drop", "first": 1})
    with pytest.raises((botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
        ecs.list_clusters()
    ecs.list_clusters()


def test_probability_is_seeded_and_exact(sandbox):
    ecs = no_retries(sandbox, "ecs")
    sandbox.admin(
        "POST", "faults", {"service": "ecs", "operation": "ListClusters", "error": "503", "probability": 0.5, "seed": 7}
    )
    outcomes = []
    for _ in range(20):
        try:
            ecs.list_clusters()
            outcomes.append(True)
        except botocore.exceptions.ClientError:
            outcomes.append(False)
    [state] = sandbox.admin("GET", "faults")
    assert state["fired"] == outcomes.count(False)
    assert 0 < state["fired"] < 20


def test_latency_is_added(sandbox, ecs):
    sandbox.admin("POST", "faults", {"service": "ecs", "operation": "ListClusters", "latency_ms": 400})
    began = time.monotonic()
    ecs.list_clusters()
    assert time.monotonic() - began >= 0.4
    began = time.monotonic()
    ecs.describe_clusters(clusters=["default"])
    assert time.monotonic() - began < 0.4


def test_query_protocol_throttle(sandbox):
    sts = no_retries(sandbox, "sts")
    sandbox.admin(
        "POST", "faults", {"service": "sts", "operation": "GetCallerIdentity", "error": "throttle", "first": 1}
    )
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        sts.get_caller_identity()
    assert caught.value.response["Error"]["Code"] == "Throttling"


def test_bad_fault_rule_is_refused(sandbox):
    import requests

    response = requests.post(f"{sandbox.url}/_sandbox/faults", json={"error": "explode"}, timeout=5)
    assert response.status_code == 400
    assert "error must be one of" in response.json()["error"]


def test_counters_per_app_id(sandbox):
    import botocore.config

    sandbox.admin("DELETE", "counters")
    mine = sandbox.client("ecs", config=botocore.config.Config(user_agent_appid="test-app-1"))
    mine.list_clusters()
    sandbox.client("ecs").list_clusters()
    assert sandbox.admin("GET", "counters?app=test-app-1") == {"ecs:ListClusters": 1}
    assert sandbox.admin("GET", "counters") == {"ecs:ListClusters": 2}


def test_the_trace_shows_one_apps_calls_in_order_with_their_latency(sandbox):
    import botocore.config

    sandbox.admin("DELETE", "counters")
    sandbox.admin("POST", "faults", {"app": "trace-app", "operation": "ListClusters", "latency_ms": 200})
    try:
        mine = sandbox.client("ecs", config=botocore.config.Config(user_agent_appid="trace-app"))
        mine.list_clusters()
        mine.list_task_definitions()
        sandbox.client("ecs").list_clusters()
    finally:
        sandbox.admin("DELETE", "faults?app=trace-app")
    trace = sandbox.admin("GET", "trace?app=trace-app")
    assert [c["call"] for c in trace] == ["ecs:ListClusters", "ecs:ListTaskDefinitions"]
    first, second = trace
    assert first["ended"] - first["started"] >= 0.2
    assert second["started"] >= first["ended"]
    sandbox.admin("DELETE", "counters")
    assert sandbox.admin("GET", "trace?app=trace-app") == []


def test_a_fault_aimed_at_one_app_spares_the_others(sandbox):
    import botocore.config

    mine = sandbox.client(
        "ecs", config=botocore.config.Config(user_agent_appid="app-a", retries={"total_max_attempts": 1})
    )
    other = sandbox.client(
        "ecs", config=botocore.config.Config(user_agent_appid="app-b", retries={"total_max_attempts": 1})
    )
    sandbox.admin("POST", "faults", {"service": "ecs", "operation": "ListClusters", "app": "app-a", "error": "503"})
    other.list_clusters()
    with pytest.raises(botocore.exceptions.ClientError):
        mine.list_clusters()
    [state] = sandbox.admin("GET", "faults")
    assert (state["matched"], state["fired"]) == (1, 1)


def test_a_fault_aimed_at_one_resource_spares_the_others(sandbox):
    ecs = no_retries(sandbox, "ecs")
    sandbox.admin(
        "POST",
        "faults",
        {"service": "ecs", "operation": "DescribeClusters", "body_contains": '"one-cluster"', "error": "denied"},
    )
    ecs.describe_clusters(clusters=["another-cluster"])
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        ecs.describe_clusters(clusters=["one-cluster"])
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    [state] = sandbox.admin("GET", "faults")
    assert (state["matched"], state["fired"]) == (1, 1)


# -- drop and lost: the request is, or is not, applied -------------------------

DEFINITION = {"memory": "512", "containerDefinitions": [container_def("app", ["sleep", "30"])]}


def revisions(ecs, family: str) -> list[str]:
    return ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]


def test_a_dropped_request_is_not_applied(sandbox):
    ecs = no_retries(sandbox, "ecs")
    family = unique("dropped")
    sandbox.admin("POST", "faults", {"service": "ecs", "operation": "RegisterTaskDefinition", "error": "drop"})
    with pytest.raises((botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
        ecs.register_task_definition(family=family, **DEFINITION)
    sandbox.admin("DELETE", "faults")
    assert revisions(ecs, family) == []


def test_a_lost_answer_hides_an_applied_change(sandbox):
    """`lost`: the change happens, the client sees only a closed connection."""
    ecs = no_retries(sandbox, "ecs")
    family = unique("lost")
    sandbox.admin(
        "POST", "faults", {"service": "ecs", "operation": "RegisterTaskDefinition", "error": "lost", "first": 1}
    )
    with pytest.raises((botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
        ecs.register_task_definition(family=family, **DEFINITION)
    [arn] = revisions(ecs, family)
    assert arn.endswith(f"{family}:1")


def test_a_retried_lost_register_leaves_two_revisions(sandbox):
    """The SDK retries a closed connection, so a non-idempotent call runs
    twice: the caller is told of revision 2 and revision 1 exists too."""
    ecs = sandbox.client("ecs", config=botocore.config.Config(retries={"total_max_attempts": 3, "mode": "standard"}))
    family = unique("lost-retried")
    sandbox.admin("DELETE", "counters")
    sandbox.admin(
        "POST", "faults", {"service": "ecs", "operation": "RegisterTaskDefinition", "error": "lost", "first": 1}
    )
    answer = ecs.register_task_definition(family=family, **DEFINITION)
    assert answer["taskDefinition"]["revision"] == 2
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert [arn.rsplit(":", 1)[1] for arn in revisions(ecs, family)] == ["1", "2"]
    assert sandbox.admin("GET", "counters")["ecs:RegisterTaskDefinition"] == 2
    [rule] = sandbox.admin("GET", "faults")
    assert (rule["matched"], rule["fired"]) == (2, 1)


def test_a_retried_lost_run_task_starts_one_task(sandbox, ecs, cluster):
    """The SDK sends RunTask's `clientToken` once per call and keeps it across
    its retries, so the retry of a lost RunTask returns the task the first
    attempt started instead of starting another."""
    family = unique("lost-run")
    ecs.register_task_definition(family=family, **DEFINITION)
    sandbox.admin("POST", "faults", {"service": "ecs", "operation": "RunTask", "error": "lost", "first": 1})
    answer = ecs.run_task(cluster=cluster, taskDefinition=family)
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    [task] = answer["tasks"]
    assert ecs.list_tasks(cluster=cluster, family=family)["taskArns"] == [task["taskArn"]]
    [rule] = sandbox.admin("GET", "faults")
    assert (rule["matched"], rule["fired"]) == (2, 1)


def test_faults_of_one_app_are_forgotten_alone(sandbox):
    sandbox.admin("POST", "faults", {"service": "ecs", "error": "throttle", "app": "one"})
    sandbox.admin("POST", "faults", {"service": "ecs", "error": "throttle", "app": "two"})
    left = sandbox.admin("DELETE", "faults?app=one")
    assert [rule["app"] for rule in left] == ["two"]


@pytest.mark.parametrize(
    ("service", "call", "status"),
    [
        ("events", lambda client: client.list_rules(), 400),
        ("scheduler", lambda client: client.list_schedules(), 403),
        ("s3", lambda client: client.list_buckets(), 403),
    ],
)
def test_denied_answers_as_iam_does_in_each_protocol(sandbox, service, call, status):
    operation = {"events": "ListRules", "scheduler": "ListSchedules", "s3": "ListBuckets"}[service]
    sandbox.admin("POST", "faults", {"service": service, "operation": operation, "error": "denied", "first": 1})
    client = sandbox.client(service, config=botocore.config.Config(retries={"total_max_attempts": 1}))
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(client)
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["Error"]["Code"] in ("AccessDeniedException", "AccessDenied")
    if service != "s3":
        assert f"not authorized to perform: {service}:{operation}" in error["Error"]["Message"]
    call(client)  # the next call passes
    counted = sandbox.admin("GET", "counters")
    assert counted[f"{service}:{operation}"] >= 2
