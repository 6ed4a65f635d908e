"""Where the sandbox listens and keeps its state. Every knob is an environment
variable so that tests and CI can move it without editing files."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_DIR = Path(__file__).resolve().parent.parent

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
# ECR's registry login: GetAuthorizationToken's token decodes to `AWS:<password>`
# (moto's password for the account). The registry takes nothing else, as ECR's
# does not: every push and pull, the sandbox's own included, logs in.
REGISTRY_USER = "AWS"
REGISTRY_PASSWORD = f"{ACCOUNT_ID}-{REGION}-auth-token"
REGISTRY_AUTH = (REGISTRY_USER, REGISTRY_PASSWORD)
REGISTRY_AUTH_CONFIG = {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}
# The docker-registry behind the fronts (`registries.py`) takes only the
# sandbox's own login: a client reaches it through a front, with ECR's.
BACKEND_AUTH = ("sandbox", "sandbox-backend")


def registry_password(account: str, region: str) -> str:
    """The password of `account`'s ECR login in `region`: a token ECR signs for its region."""
    return f"{account}-{region}-auth-token"


def registry_auth_config(account: str, region: str = REGION) -> dict:
    """ECR's registry login of `account` in `region`, as the Docker SDK takes it."""
    return {"username": REGISTRY_USER, "password": registry_password(account, region)}


BASE_IMAGE = "berth-sandbox/base:latest"
# Images that are not ours get local stand-ins under their real names, which
# the agent uses because the engine already has them (as ECS does with a
# cached image).
STAND_IN_IMAGES = {
    "public.ecr.aws/datadog/agent:7": "datadog-agent stand-in",
}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Endpoints:
    # BERTH_SANDBOX_PORT: the AWS API endpoint (loopback only).
    port: int = field(default_factory=lambda: _env_int("BERTH_SANDBOX_PORT", 4566))
    # BERTH_SANDBOX_REGISTRY_PORT: the default account's registry in the
    # default region, ECR's data plane; other accounts' and regions' registries
    # listen from this port plus 10 (`registries.py`).
    registry_port: int = field(default_factory=lambda: _env_int("BERTH_SANDBOX_REGISTRY_PORT", 5055))
    # BERTH_SANDBOX_DOCKER_TLS_PORT: the local Docker Engine behind mutual TLS,
    # as CI services with a remote Docker (CircleCI's) offer it.
    docker_tls_port: int = field(default_factory=lambda: _env_int("BERTH_SANDBOX_DOCKER_TLS_PORT", 5056))
    # BERTH_SANDBOX_STATE: registry storage, EFS folders, logs and pid files.
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get("BERTH_SANDBOX_STATE", SANDBOX_DIR / ".state")))

    @property
    def instance_id(self) -> str:
        """Names this sandbox among others on the same Docker Engine: its
        containers carry it as a label, and every cleanup removes only those."""
        key = f"{self.state_dir.resolve()}:{self.port}"
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def registry_backend_port(self) -> int:
        """BERTH_SANDBOX_REGISTRY_BACKEND_PORT, else the registry's port plus 2: the
        docker-registry behind the registries' fronts."""
        return _env_int("BERTH_SANDBOX_REGISTRY_BACKEND_PORT", self.registry_port + 2)

    @property
    def registry_addr(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def registry_url(self) -> str:
        """ECR's `proxyEndpoint`: the registry speaks plain HTTP, which Docker
        allows without configuration for registries on 127.0.0.0/8."""
        return f"http://{self.registry_addr}"

    @property
    def ecr_host(self) -> str:
        """ECR's real host name for this account, which task definitions
        written for AWS name; the agent maps it to the registry."""
        return f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com"

    @property
    def docker_tls_host(self) -> str:
        return f"tcp://127.0.0.1:{self.docker_tls_port}"

    @property
    def docker_tls_dir(self) -> Path:
        """The TLS front's certificates: `ca/` (the CA's key), `server/`, `client/`."""
        return self.state_dir / "docker-tls"

    @property
    def docker_cert_path(self) -> Path:
        """What DOCKER_CERT_PATH names: ca.pem, cert.pem and key.pem of a client."""
        return self.docker_tls_dir / "client"

    def client(self, service: str, account: str = ACCOUNT_ID, region: str = REGION, **kwargs):
        """A boto3 client for the sandbox, with the dummy credentials of `account`."""
        import boto3

        from .accounts import access_key

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=region,
            aws_access_key_id=access_key(account),
            aws_secret_access_key="testing",
            **kwargs,
        )


@dataclass
class Tunables:
    """Agent timings and ECS's retention times, changeable at runtime through
    `/_sandbox/config`."""

    # How long a task without a health check must stay up to count as healthy.
    settle_seconds: float = field(default_factory=lambda: _env_float("BERTH_SANDBOX_SETTLE_SECONDS", 3.0))
    # How often the agent looks at containers and services.
    tick_seconds: float = field(default_factory=lambda: _env_float("BERTH_SANDBOX_TICK_SECONDS", 0.25))
    # Grace period between SIGTERM and SIGKILL when the agent stops a container
    # (ECS's default `stopTimeout` is 30 s; a container definition may set its own).
    stop_timeout_seconds: int = field(default_factory=lambda: _env_int("BERTH_SANDBOX_STOP_TIMEOUT_SECONDS", 2))
    # How long a stopped task stays visible to DescribeTasks and ListTasks
    # (ECS keeps them for at least an hour); after it, the task is forgotten.
    stopped_task_retention_seconds: float = field(
        default_factory=lambda: _env_float("BERTH_SANDBOX_STOPPED_TASK_RETENTION_SECONDS", 3600.0)
    )
    # How long a RunTask `clientToken` is remembered per cluster (ECS: 24 hours).
    client_token_ttl_seconds: float = field(
        default_factory=lambda: _env_float("BERTH_SANDBOX_CLIENT_TOKEN_TTL_SECONDS", 86400.0)
    )

    # How long a minute of a deployment's bake times and hook timeouts lasts
    # (ECS counts them in minutes; tests shorten them).
    minute_seconds: float = field(default_factory=lambda: _env_float("BERTH_SANDBOX_MINUTE_SECONDS", 60.0))

    def update(self, values: dict) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise KeyError(key)
            setattr(self, key, type(getattr(self, key))(value))
