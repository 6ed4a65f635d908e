"""STS `AssumeRoleWithWebIdentity` as AWS checks it, and an OIDC issuer shaped
like CircleCI's. moto 5.2.5 hands out credentials for any token and any role;
AWS refuses a token unless every check below passes
(https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc.html):

- the token is a JWT signed by a key its issuer publishes. The sandbox is the
  issuer (`POST /_sandbox/oidc/token` mints a token as CircleCI's
  `CIRCLE_OIDC_TOKEN_V2`) and checks RS256 signatures with its own key, so a
  token it did not sign is `InvalidIdentityToken`, as a forged one is in AWS;
- the token's `iss` names an IAM OIDC identity provider of the role's account
  (`CreateOpenIDConnectProvider`), else `InvalidIdentityToken` "No OpenIDConnect
  provider found in your account for ...";
- its `aud` is one of that provider's client ids, else `InvalidIdentityToken`
  "Incorrect token audience";
- its `exp` has not passed, else `ExpiredTokenException`;
- the role exists and its trust policy allows `sts:AssumeRoleWithWebIdentity`
  to that provider (`Principal.Federated`), else `AccessDenied` (403);
- `DurationSeconds` is between 900 and the role's `MaxSessionDuration` (one
  hour unless raised), else `ValidationError`
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_update-role-settings.html).

The credentials it gives expire at their `Expiration`: a call signed with them
after that gets `ExpiredTokenException` ("The security token included in the
request is expired"), as AWS answers
(https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html). moto
checks no credentials at all. So that a test can outlive a session without
waiting an hour, a role's sessions can be made to pass faster
(`POST /_sandbox/sessions {"role": ARN, "scale": 0.01}`: one hour of session
lasts 36 real seconds); the `Expiration` STS answers is then the real one.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from moto.iam.models import iam_backends
from moto.sts.exceptions import STSClientError
from moto.sts.responses import TokenResponse

# CircleCI's issuer is `https://oidc.circleci.com/org/<organization id>` and its
# audience that organization id.
ORGANIZATION = "7f6b2a3e-0c51-4d5e-9a9e-5a1b2c3d4e5f"
ISSUER = f"https://oidc.circleci.com/org/{ORGANIZATION}"

# Session credentials given out: access key id -> when they expire (epoch seconds).
_SESSIONS: dict[str, float] = {}
# Roles whose sessions pass faster: role ARN -> real seconds per session second.
_SCALES: dict[str, float] = {}
_SESSIONS_LOCK = threading.Lock()

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_moto_assume_role_with_web_identity = TokenResponse.assume_role_with_web_identity


class InvalidIdentityToken(STSClientError):
    code = "InvalidIdentityToken"


class ExpiredToken(STSClientError):
    code = "ExpiredTokenException"


class AccessDenied(STSClientError):
    code = "AccessDenied"


class ValidationError(STSClientError):
    code = "ValidationError"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(data: dict) -> dict:
    """A token as CircleCI mints one for a job: `audience` (default the
    sandbox's organization), `subject`, `ttl` seconds (default 3600; negative
    for one already expired), `issuer` (default the sandbox's)."""
    now = int(time.time())
    claims = {
        "iss": data.get("issuer", ISSUER),
        "aud": data.get("audience", ORGANIZATION),
        "sub": data.get("subject", f"org/{ORGANIZATION}/project/sandbox/user/sandbox"),
        "iat": now,
        "exp": now + int(data.get("ttl", 3600)),
    }
    signing_input = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "sandbox"}).encode())
    signing_input += "." + _b64(json.dumps(claims).encode())
    signature = _KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return {"token": signing_input + "." + _b64(signature), "issuer": claims["iss"], "audience": claims["aud"]}


def _claims(token: str) -> dict:
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidIdentityToken("Couldn't parse the token: not a JWT")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except ValueError as err:
        raise InvalidIdentityToken(f"Couldn't parse the token: {err}") from None
    if header.get("alg") != "RS256":
        raise InvalidIdentityToken("The token's signing algorithm is not supported")
    try:
        _KEY.public_key().verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise InvalidIdentityToken("The token's signature is invalid") from None
    return claims


def _trusts(role, provider_arn: str) -> bool:
    document = role.assume_role_policy_document
    policy = json.loads(document) if isinstance(document, str) else document
    statements = policy.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action", [])
        actions = actions if isinstance(actions, list) else [actions]
        federated = statement.get("Principal", {}).get("Federated", [])
        federated = federated if isinstance(federated, list) else [federated]
        if (
            statement.get("Effect") == "Allow"
            and "sts:AssumeRoleWithWebIdentity" in actions
            and provider_arn in federated
        ):
            return True
    return False


def _assume_role_with_web_identity(self: TokenResponse):
    claims = _claims(self._get_param("WebIdentityToken") or "")
    role_arn = self._get_param("RoleArn") or ""
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    iam = iam_backends[account or "123456789012"]["global"]
    issuer = str(claims.get("iss", ""))
    provider_arn = f"arn:aws:iam::{account}:oidc-provider/{issuer.removeprefix('https://')}"
    provider = iam.open_id_providers.get(provider_arn)
    if provider is None:
        raise InvalidIdentityToken(f"No OpenIDConnect provider found in your account for {issuer}")
    audiences = claims.get("aud", [])
    audiences = audiences if isinstance(audiences, list) else [audiences]
    if not set(audiences) & set(provider.client_id_list):
        raise InvalidIdentityToken("Incorrect token audience")
    now = int(time.time())
    if int(claims.get("exp", 0)) <= now:
        raise ExpiredToken(
            f"Token expired: current date/time {now} must be before the expiration date/time {claims.get('exp')}"
        )
    try:
        role = iam.get_role_by_arn(role_arn)
    except Exception:  # moto's IAMNotFoundException; AWS answers AccessDenied
        role = None
    if role is None or not _trusts(role, provider_arn):
        raise AccessDenied("Not authorized to perform sts:AssumeRoleWithWebIdentity")
    duration = int(self._get_param("DurationSeconds") or 3600)
    if duration < 900:
        raise ValidationError(
            f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: "
            "Member must have value greater than or equal to 900"
        )
    if duration > int(getattr(role, "max_session_duration", 3600) or 3600):
        raise ValidationError("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
    return _session(_moto_assume_role_with_web_identity(self), role_arn, duration)


def _session(answer, role_arn: str, duration: int):
    """Keeps the session's expiry, `duration` seconds of the role's (scaled)
    time from now, and answers it as the credentials' `Expiration`."""
    credentials = answer.result["Credentials"]
    expires = time.time() + duration * _SCALES.get(role_arn, 1.0)
    credentials.expiration = datetime.fromtimestamp(int(expires), UTC).replace(tzinfo=None)
    with _SESSIONS_LOCK:
        _SESSIONS[credentials.access_key_id] = int(expires)
    return answer


def scale(data: dict) -> dict:
    """`{"role": ARN, "scale": S}`: the role's later sessions last S times as
    long as asked (1 is AWS's)."""
    factor = float(data["scale"])
    if not 0 < factor <= 1:
        raise ValueError("scale must be more than 0 and at most 1: sessions never last longer than asked")
    _SCALES[str(data["role"])] = factor
    return {"role": data["role"], "scale": factor}


def expired(access_key: str) -> bool:
    """Whether `access_key` is a session's whose credentials have expired."""
    with _SESSIONS_LOCK:
        expires = _SESSIONS.get(access_key)
    return expires is not None and time.time() >= expires


def access_key_of(environ: dict) -> str:
    """The access key a request is signed with (SigV4 header or presigned query)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        return auth.split("Credential=", 1)[1].split("/", 1)[0]
    found = re.search(r"X-Amz-Credential=([^%/&]+)", environ.get("QUERY_STRING", ""))
    return found.group(1) if found else ""


def install() -> None:
    TokenResponse.assume_role_with_web_identity = _assume_role_with_web_identity
