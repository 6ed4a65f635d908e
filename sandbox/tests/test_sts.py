"""STS `AssumeRoleWithWebIdentity` refuses what AWS refuses: a token the
issuer did not sign, an issuer with no IAM OIDC provider, a wrong audience, an
expired token, a role that does not trust the provider. A good token gets
credentials that act as the role."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime

import boto3
import botocore.exceptions
import pytest
import requests
from conftest import ACCOUNT_ID, unique

from berth_sandbox.config import SANDBOX_DIR

ISSUER_HOST = "oidc.circleci.com/org/7f6b2a3e-0c51-4d5e-9a9e-5a1b2c3d4e5f"
AUDIENCE = "7f6b2a3e-0c51-4d5e-9a9e-5a1b2c3d4e5f"
PROVIDER = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{ISSUER_HOST}"


@pytest.fixture
def iam(sandbox):
    return sandbox.client("iam")


@pytest.fixture
def role(iam):
    arns = [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
    if PROVIDER not in arns:
        iam.create_open_id_connect_provider(
            Url=f"https://{ISSUER_HOST}", ClientIDList=[AUDIENCE], ThumbprintList=["0" * 40]
        )
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity"}
        ],
    }
    return iam.create_role(RoleName=unique("circleci"), AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def token(sandbox, **claims) -> str:
    return sandbox.admin("POST", "oidc/token", claims)["token"]


def assume(sandbox, role_arn: str, web_token: str, **extra) -> dict:
    return sandbox.client("sts").assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="berth-test", WebIdentityToken=web_token, **extra
    )


def refused(sandbox, role_arn: str, web_token: str) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        assume(sandbox, role_arn, web_token)
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


def test_a_token_of_the_issuer_gets_credentials_that_act_as_the_role(sandbox, role):
    answer = assume(sandbox, role, token(sandbox))
    credentials = answer["Credentials"]
    who = boto3.client(
        "sts",
        endpoint_url=sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    ).get_caller_identity()
    assert who["Arn"].endswith(f":assumed-role/{role.rsplit('/', 1)[1]}/berth-test")


def test_a_token_the_issuer_did_not_sign_is_refused(sandbox, role):
    header, claims, signature = token(sandbox).split(".")
    assert refused(sandbox, role, f"{header}.{claims}.{signature[:-4]}AAAA")[0] == "InvalidIdentityToken"
    assert refused(sandbox, role, "not-a-jwt")[0] == "InvalidIdentityToken"


def test_an_issuer_without_an_oidc_provider_is_refused(sandbox, role):
    code, message = refused(sandbox, role, token(sandbox, issuer="https://oidc.circleci.com/org/other"))
    assert code == "InvalidIdentityToken"
    assert "No OpenIDConnect provider found" in message


def test_a_token_for_another_audience_is_refused(sandbox, role):
    assert refused(sandbox, role, token(sandbox, audience="someone-else")) == (
        "InvalidIdentityToken",
        "Incorrect token audience",
    )


def test_an_expired_token_is_refused(sandbox, role):
    assert refused(sandbox, role, token(sandbox, ttl=-60))[0] == "ExpiredTokenException"


def test_a_role_that_does_not_trust_the_provider_is_refused(sandbox, iam, role):
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    other = iam.create_role(RoleName=unique("ecs"), AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    assert refused(sandbox, other, token(sandbox))[0] == "AccessDenied"
    missing = f"arn:aws:iam::{ACCOUNT_ID}:role/no-such-role"
    assert refused(sandbox, missing, token(sandbox))[0] == "AccessDenied"


def test_a_session_longer_than_the_role_allows_is_refused(sandbox, iam, role):
    name = role.rsplit("/", 1)[1]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        assume(sandbox, role, token(sandbox), DurationSeconds=7200)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "MaxSessionDuration" in caught.value.response["Error"]["Message"]
    iam.update_role(RoleName=name, MaxSessionDuration=7200)
    assert assume(sandbox, role, token(sandbox), DurationSeconds=7200)["Credentials"]["AccessKeyId"]


def session_clients(sandbox, credentials: dict):
    keys = {
        "endpoint_url": sandbox.url,
        "region_name": "us-east-1",
        "aws_access_key_id": credentials["AccessKeyId"],
        "aws_secret_access_key": credentials["SecretAccessKey"],
        "aws_session_token": credentials["SessionToken"],
    }
    return boto3.client("ecs", **keys), boto3.client("s3", **keys)


def test_session_credentials_expire_at_their_expiration(sandbox, role):
    """A role's sessions made to pass fast: 900 s of session last 1.8 s. Calls
    signed with the credentials work until their `Expiration` and are refused
    after it, as AWS refuses them (ExpiredTokenException; S3's ExpiredToken)."""
    sandbox.admin("POST", "sessions", {"role": role, "scale": 0.002})
    answer = assume(sandbox, role, token(sandbox), DurationSeconds=900)
    credentials = answer["Credentials"]
    lasts = (credentials["Expiration"] - datetime.now(UTC)).total_seconds()
    assert 0 < lasts <= 2.5, lasts
    ecs, s3 = session_clients(sandbox, credentials)
    ecs.list_clusters()
    time.sleep(lasts + 0.5)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        ecs.list_clusters()
    assert caught.value.response["Error"]["Code"] == "ExpiredTokenException"
    assert caught.value.response["Error"]["Message"] == "The security token included in the request is expired"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.list_buckets()
    assert caught.value.response["Error"]["Code"] == "ExpiredToken"
    # A new session of the same role works again.
    ecs, _ = session_clients(sandbox, assume(sandbox, role, token(sandbox), DurationSeconds=900)["Credentials"])
    ecs.list_clusters()


def test_sessions_never_pass_slower_than_aws(sandbox, role):
    for scale in (0, 2, -1):
        with pytest.raises(requests.HTTPError):
            sandbox.admin("POST", "sessions", {"role": role, "scale": scale})


def test_the_stand_in_circleci_mints_tokens_sts_takes_and_substitutes_variables(sandbox, role, tmp_path):
    circleci = SANDBOX_DIR / "bin" / "circleci"
    calls = tmp_path / "calls"
    env = {
        "PATH": "/usr/bin:/bin",
        "BERTH_SANDBOX_PORT": sandbox.url.rsplit(":", 1)[1],
        "BERTH_SANDBOX_CIRCLECI_LOG": str(calls),
        "ROLE": "deploy",
    }
    minted = subprocess.run(
        [circleci, "run", "oidc", "get", "--claims", '{"aud":"' + AUDIENCE + '"}'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert assume(sandbox, role, minted)["Credentials"]["AccessKeyId"]
    other = subprocess.run(
        [circleci, "run", "oidc", "get", "--claims", '{"aud":"another"}'], env=env, capture_output=True, text=True
    ).stdout.strip()
    assert refused(sandbox, role, other) == ("InvalidIdentityToken", "Incorrect token audience")
    substituted = subprocess.run(
        [circleci, "env", "subst"], env=env, input="arn:${ROLE}/$ROLE:${UNSET}:$(id)", capture_output=True, text=True
    ).stdout
    assert substituted == "arn:deploy/deploy::$(id)"
    assert calls.read_text().splitlines()[0] == f'run oidc get --claims {{"aud":"{AUDIENCE}"}}'
