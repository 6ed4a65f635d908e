"""STS `AssumeRoleWithWebIdentity` refuses what AWS refuses: a token the
issuer did not sign, an issuer with no IAM OIDC provider, a wrong audience, an
expired token, a role that does not trust the provider. A good token gets
credentials that act as the role."""

from __future__ import annotations

import json

import boto3
import botocore.exceptions
import pytest
from conftest import ACCOUNT_ID, unique

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
