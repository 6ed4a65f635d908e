"""Accounts and regions: each has its own ECR registry, a login is its
account's, and another account's repository or bucket answers only what its
resource policy allows (`registries.py`, `policy.py`, `s3.py`)."""

from __future__ import annotations

import base64
import json
import time

import docker.errors
import pytest
import requests
from conftest import BASE_IMAGE, ENDPOINTS, login, unique

from berth_sandbox.accounts import SECOND_ACCOUNT, SECOND_REGION, access_key
from berth_sandbox.config import ACCOUNT_ID, REGION
from berth_sandbox.policy import allows

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def client(service: str, account: str = ACCOUNT_ID, region: str = REGION):
    return ENDPOINTS.client(service, account=account, region=region)


def pushed(engine, ecr, name: str) -> tuple[str, str]:
    """`name` made in `ecr`'s account and region with the base image pushed as `v1`: its URI
    and the manifest's digest."""
    uri = ecr.create_repository(repositoryName=name)["repository"]["repositoryUri"]
    engine.images.get(BASE_IMAGE).tag(uri, tag="v1")
    for line in engine.api.push(uri, tag="v1", stream=True, decode=True, auth_config=login(ecr)):
        assert "error" not in line, line
    [image] = ecr.describe_images(repositoryName=name)["imageDetails"]
    return uri, image["imageDigest"]


def manifest(uri: str, digest: str, ecr_of_caller, method: str = "GET") -> requests.Response:
    host, name = uri.split("/", 1)
    return requests.request(
        method,
        f"http://{host}/v2/{name}/manifests/{digest}",
        headers={"Accept": MANIFEST},
        auth=tuple(login(ecr_of_caller).values()),
        timeout=10,
    )


def test_each_account_and_region_has_its_own_registry(sandbox):
    seen = set()
    for account, region in ((ACCOUNT_ID, REGION), (SECOND_ACCOUNT, REGION), (SECOND_ACCOUNT, SECOND_REGION)):
        ecr = client("ecr", account, region)
        name = unique("own")
        repository = ecr.create_repository(repositoryName=name)["repository"]
        assert repository["registryId"] == account
        host = repository["repositoryUri"].split("/", 1)[0]
        [data] = ecr.get_authorization_token()["authorizationData"]
        assert data["proxyEndpoint"] == f"http://{host}", "the login names the caller's registry"
        assert client("sts", account, region).get_caller_identity()["Account"] == account
        seen.add(host)
    assert len(seen) == 3, seen
    assert access_key(SECOND_ACCOUNT) == f"AKIA{SECOND_ACCOUNT}SBOX"


def test_a_login_reads_another_accounts_repository_only_as_its_policy_allows(sandbox, engine):
    source = client("ecr")
    name = unique("shared")
    uri, digest = pushed(engine, source, name)
    other = client("ecr", SECOND_ACCOUNT)
    assert manifest(uri, digest, source).status_code == 200, "the owner reads its own"

    refused = manifest(uri, digest, other)
    assert refused.status_code == 403
    [error] = refused.json()["errors"]
    assert error["code"] == "DENIED"
    arn = f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{name}"
    assert f"is not authorized to perform: ecr:BatchGetImage on resource: {arn}" in error["message"]
    assert "no resource-based policy allows" in error["message"]

    # A token asked for with the owner's registry id is still the caller's.
    [data] = other.get_authorization_token(registryIds=[ACCOUNT_ID])["authorizationData"]
    assert base64.b64decode(data["authorizationToken"]).decode().endswith(f"{SECOND_ACCOUNT}-{REGION}-auth-token")

    pull = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{SECOND_ACCOUNT}:root"}, "Action": pull}],
    }
    source.set_repository_policy(repositoryName=name, policyText=json.dumps(policy))
    assert manifest(uri, digest, other).status_code == 200, "the policy allows the pull"
    written = manifest(uri, digest, other, method="PUT")
    assert written.status_code == 403, "and nothing more"
    assert "ecr:PutImage" in written.json()["errors"][0]["message"]


def test_a_login_is_for_the_registries_of_its_region(sandbox, engine):
    east = client("ecr", SECOND_ACCOUNT)
    uri, digest = pushed(engine, client("ecr", SECOND_ACCOUNT, SECOND_REGION), unique("west"))
    assert manifest(uri, digest, client("ecr", SECOND_ACCOUNT, SECOND_REGION)).status_code == 200
    assert manifest(uri, digest, east).status_code == 401, "a login of another region"


def test_a_pull_by_another_accounts_engine_is_refused_without_the_policy(sandbox, engine):
    source = client("ecr")
    uri, _ = pushed(engine, source, unique("engine"))
    with pytest.raises(docker.errors.APIError) as refused:
        engine.api.pull(uri, tag="v1", auth_config=login(client("ecr", SECOND_ACCOUNT)))
    assert "denied" in str(refused.value).lower(), refused.value


def test_a_repository_ecr_does_not_have_is_name_unknown(sandbox):
    ecr = client("ecr")
    host = ecr.get_authorization_token()["authorizationData"][0]["proxyEndpoint"]
    answer = requests.get(f"{host}/v2/nowhere-{unique('x')}/tags/list", auth=tuple(login(ecr).values()), timeout=10)
    assert answer.status_code == 404
    assert answer.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    assert requests.get(f"{host}/v2/", timeout=10).status_code == 401, "no login, no answer"


def test_another_accounts_bucket_answers_only_what_its_policy_allows(sandbox):
    owner = client("s3")
    bucket = unique("state")
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="app/stg/images/a.json", Body=b"{}")
    reader = client("s3", SECOND_ACCOUNT)
    with pytest.raises(reader.exceptions.ClientError) as refused:
        reader.get_object(Bucket=bucket, Key="app/stg/images/a.json")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{SECOND_ACCOUNT}:root"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/app/stg/*",
            }
        ],
    }
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert reader.get_object(Bucket=bucket, Key="app/stg/images/a.json")["Body"].read() == b"{}"
    with pytest.raises(reader.exceptions.ClientError) as missing:
        reader.get_object(Bucket=bucket, Key="app/stg/images/b.json")
    assert missing.value.response["Error"]["Code"] == "AccessDenied", "403, not 404, without s3:ListBucket"
    with pytest.raises(reader.exceptions.ClientError) as written:
        reader.put_object(Bucket=bucket, Key="app/stg/lock.json", Body=b"{}")
    assert written.value.response["Error"]["Code"] == "AccessDenied"


@pytest.mark.parametrize(
    ("case", "statement", "allowed"),
    [
        ("the account's root", {"Principal": {"AWS": f"arn:aws:iam::{SECOND_ACCOUNT}:root"}}, True),
        ("the account id", {"Principal": {"AWS": SECOND_ACCOUNT}}, True),
        ("anyone", {"Principal": "*"}, True),
        ("another account", {"Principal": {"AWS": "arn:aws:iam::999999999999:root"}}, False),
        (
            "a role of the account, not the caller",
            {"Principal": {"AWS": f"arn:aws:iam::{SECOND_ACCOUNT}:role/x"}},
            False,
        ),
        ("a wildcard action", {"Action": "ecr:*"}, True),
        ("another action", {"Action": "ecr:PutImage"}, False),
        ("not the action", {"NotAction": "ecr:PutImage", "Action": None}, True),
        ("a condition the sandbox cannot judge", {"Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}}, False),
        ("another resource", {"Resource": "arn:aws:ecr:us-east-1:123456789012:repository/other"}, False),
    ],
)
def test_a_resource_policy_allows_as_iam_evaluates_it(case, statement, allowed):
    base = {"Effect": "Allow", "Principal": {"AWS": SECOND_ACCOUNT}, "Action": "ecr:BatchGetImage"}
    merged = {k: v for k, v in {**base, **statement}.items() if v is not None}
    policy = json.dumps({"Statement": [merged]})
    arn = "arn:aws:ecr:us-east-1:123456789012:repository/app"
    caller = f"arn:aws:iam::{SECOND_ACCOUNT}:user/sandbox"
    assert allows(policy, SECOND_ACCOUNT, caller, "ecr:BatchGetImage", arn) is allowed, case


def test_a_deny_wins_over_an_allow():
    allow = {"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}
    deny = {"Effect": "Deny", "Principal": {"AWS": SECOND_ACCOUNT}, "Action": "ecr:BatchGetImage"}
    policy = json.dumps({"Statement": [allow, deny]})
    assert not allows(policy, SECOND_ACCOUNT, "x", "ecr:BatchGetImage", "arn:aws:ecr:r:a:repository/app")
    assert allows(policy, SECOND_ACCOUNT, "x", "ecr:PutImage", "arn:aws:ecr:r:a:repository/app")


def test_registry_requests_take_faults_and_are_counted_for_the_repositorys_app(sandbox, engine):
    ecr = client("ecr")
    name = unique("faulty")
    uri, digest = pushed(engine, ecr, name)
    sandbox.admin("POST", "faults", {"service": "*", "app": name, "error": "500"})
    assert manifest(uri, digest, ecr).status_code == 200, "a rule for every service leaves the registry alone"
    sandbox.admin("DELETE", f"faults?app={name}")
    sandbox.admin("POST", "faults", {"service": "registry", "operation": "GetManifest", "app": name, "latency_ms": 300})
    started = time.monotonic()
    assert manifest(uri, digest, ecr).status_code == 200
    assert time.monotonic() - started >= 0.3, "held by the latency fault"
    assert sandbox.admin("GET", f"counters?app={name}")["registry:GetManifest"] == 2, "both reads counted"
    sandbox.admin("POST", "faults", {"service": "registry", "operation": "PutManifest", "app": name, "error": "drop"})
    with pytest.raises(requests.ConnectionError):
        manifest(uri, digest, ecr, method="PUT")
