"""The sandbox's single endpoint: moto's AWS APIs behind a middleware that
counts calls, injects faults, syncs ECR with the registry, and serves the
sandbox's own admin API under `/_sandbox/`. The server process also runs the
registry (a child process) and the Docker Engine's TLS front (`dockertls`)."""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

from werkzeug.serving import make_server

from . import ecr, ecs, registries, s3, schedules, strategies, sts, triggers
from .accounts import account_of_key
from .agent import LOCK
from .config import BACKEND_AUTH, Endpoints, Tunables
from .dockertls import DockerTLSFront
from .faults import Faults

log = logging.getLogger("berth_sandbox")

# Operations of JSON-protocol services carry `X-Amz-Target: Prefix.Operation`;
# query-protocol services (STS, EC2, IAM) carry `Action=Operation`.
JSON_CONTENT = ("application/x-amz-json-1.0", "application/x-amz-json-1.1")

ERROR_SHAPES = {
    # error: (status, code, message)
    "throttle": (400, "ThrottlingException", "Rate exceeded"),
    "500": (500, "InternalFailure", "injected internal error"),
    "503": (503, "ServiceUnavailable", "injected service unavailable"),
    # A call signed with session credentials past their `Expiration`.
    "expired": (400, "ExpiredTokenException", "The security token included in the request is expired"),
    # A role without the permission: IAM's words, the action named.
    "denied": (
        400,
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/sandbox/berth is not authorized to perform: "
        "{action} because no identity-based policy allows the {action} action",
    ),
}

# Services whose errors are JSON without an `X-Amz-Target` (REST-JSON), with their status for
# access denied.
REST_JSON = {"scheduler": 403}


def service_of(environ: dict) -> str:
    """The service a request is signed for, from the SigV4 credential scope."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker in auth:
        scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 5:
            return scope[3]
    return "unknown"


# STS calls that carry no signature: the token or assertion is the credential.
UNSIGNED_STS = ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML")


def region_of(environ: dict) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 5:
            return scope[2]
    return "us-east-1"


def caller_account(environ: dict) -> str:
    """The account a request acts in. A second account's sandbox keys
    (`accounts.py`) become moto's account header, which moto reads before the
    access key; other keys are moto's to map."""
    key = sts.access_key_of(environ)
    account = account_of_key(key)
    if account:
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = account
        return account
    from moto.iam.models import get_account_id_from

    return get_account_id_from(key)


def app_of(environ: dict) -> str:
    """The caller's app id: AWS SDKs put `AWS_SDK_UA_APP_ID` in the user agent as `app/<id>`."""
    for part in environ.get("HTTP_USER_AGENT", "").split():
        if part.startswith("app/"):
            return part[4:]
    return ""


def operation_of(environ: dict, body: bytes) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return query["Action"][0]
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    if service_of(environ) == "s3":
        return s3_operation(environ)
    method = environ.get("REQUEST_METHOD", "GET")
    parts = environ.get("PATH_INFO", "/").strip("/").split("/")
    if service_of(environ) == "scheduler":
        return scheduler_operation(method, parts)
    # Other REST protocols: method and first path segment.
    return f"{method} /{parts[0]}"


# EventBridge Scheduler's REST routes (`/schedules/{Name}`, `/schedule-groups/{Name}`,
# `/tags/{ResourceArn}`) and the operation each is, as in its API reference.
SCHEDULER_ROUTES = {
    ("GET", "schedules", False): "ListSchedules",
    ("GET", "schedules", True): "GetSchedule",
    ("POST", "schedules", True): "CreateSchedule",
    ("PUT", "schedules", True): "UpdateSchedule",
    ("DELETE", "schedules", True): "DeleteSchedule",
    ("GET", "schedule-groups", False): "ListScheduleGroups",
    ("GET", "schedule-groups", True): "GetScheduleGroup",
    ("POST", "schedule-groups", True): "CreateScheduleGroup",
    ("DELETE", "schedule-groups", True): "DeleteScheduleGroup",
    ("GET", "tags", True): "ListTagsForResource",
    ("POST", "tags", True): "TagResource",
    ("DELETE", "tags", True): "UntagResource",
}


def scheduler_operation(method: str, parts: list[str]) -> str:
    named = len(parts) > 1 and parts[1] != ""
    return SCHEDULER_ROUTES.get((method, parts[0], named), f"{method} /{parts[0]}")


# S3 bucket subresources (query keys) and the operation each names, by method.
S3_SUBRESOURCES = {
    "versioning": {"PUT": "PutBucketVersioning", "GET": "GetBucketVersioning"},
    "publicAccessBlock": {"PUT": "PutPublicAccessBlock", "GET": "GetPublicAccessBlock"},
    "encryption": {"PUT": "PutBucketEncryption", "GET": "GetBucketEncryption"},
    "tagging": {"PUT": "PutObjectTagging", "GET": "GetObjectTagging"},
}


def s3_operation(environ: dict) -> str:
    """S3's operation name for a path-style request (`/bucket` or `/bucket/key`), as in AWS's
    API reference, so that faults and counters can name `PutObject` apart from `CreateBucket`."""
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/").lstrip("/")
    if path == "":
        return "ListBuckets"
    has_key = "/" in path and path.split("/", 1)[1] != ""
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    for key, names in S3_SUBRESOURCES.items():
        if key in query and method in names:
            return names[method]
    if has_key:
        return {"GET": "GetObject", "PUT": "PutObject", "DELETE": "DeleteObject", "HEAD": "HeadObject"}.get(
            method, f"{method}Object"
        )
    if method == "GET":
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, f"{method}Bucket")


class SandboxApp:
    def __init__(self, moto_app, endpoints: Endpoints, tunables: Tunables, registry: Registry):
        self.moto_app = moto_app
        self.endpoints = endpoints
        self.tunables = tunables
        self.registry = registry
        self.faults = Faults()

    # -- WSGI ------------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_sandbox/"):
            return self.admin(environ, start_response, path[len("/_sandbox/") :])
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        operation = operation_of(environ, body)
        service = service_of(environ)
        if service == "unknown" and operation in UNSIGNED_STS:
            service = "sts"
        started = time.time()
        try:
            return self.serve(environ, start_response, service, operation, body)
        finally:
            self.faults.traced(service, operation, app_of(environ), started)

    def serve(self, environ, start_response, service: str, operation: str, body: bytes):
        """One AWS call: its faults, then moto (with the sandbox's own rules around it)."""
        if sts.expired(sts.access_key_of(environ)):
            return self.error(environ, start_response, "expired", service, operation)
        verdict = self.faults.judge(service, operation, app_of(environ), body)
        if verdict.latency_ms:
            time.sleep(verdict.latency_ms / 1000)
        if verdict.error == "drop":
            return self.drop(environ, start_response)
        if verdict.error in ERROR_SHAPES:
            return self.error(environ, start_response, verdict.error, service, operation)

        account, region = caller_account(environ), region_of(environ)
        if service == "s3" and s3.refused(environ.get("PATH_INFO", "/"), operation, account):
            return self.error(environ, start_response, "denied", service, operation)
        if service == "ecr":
            ecr.before(operation, body, self.registry, account, region)
        status_holder = {}

        def capture(status, headers, exc_info=None):
            status_holder["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        # moto is not thread-safe and the agent mutates the same models: one
        # request at a time touches them.
        with LOCK:
            result = list(self.moto_app(environ, capture))
        if service == "ecr" and status_holder.get("status") == 200:
            ecr.after(operation, body, self.registry, account, region)
        if verdict.error == "lost":
            # Applied, whatever moto answered; the answer never leaves.
            self.close(environ)
            return []
        return result

    def drop(self, environ, start_response):
        """The connection is closed before the request is applied."""
        self.close(environ)
        start_response("500 Internal Server Error", [("Content-Length", "0")])
        return [b""]

    @staticmethod
    def close(environ) -> None:
        """Shut the client's connection without a response: werkzeug's writes
        of the status line fail, and it lets the connection go."""
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def error(self, environ, start_response, kind: str, service: str = "", operation: str = ""):
        status, code, message = ERROR_SHAPES[kind]
        message = message.format(action=f"{service}:{operation}")
        if service == "s3":
            return self.s3_error(start_response, kind)
        if kind in ("denied", "expired") and service in REST_JSON:
            status = REST_JSON[service]
        reason = HTTPStatus(status).phrase
        request_id = str(uuid.uuid4())
        content_type = environ.get("CONTENT_TYPE", "")
        if content_type.startswith(JSON_CONTENT) or environ.get("HTTP_X_AMZ_TARGET") or service in REST_JSON:
            payload = json.dumps({"__type": code, "message": message}).encode()
            headers = [
                ("Content-Type", content_type or "application/json"),
                ("x-amzn-ErrorType", code),
                ("x-amzn-RequestId", request_id),
            ]
        else:
            if kind == "throttle":
                code = "Throttling"
            if kind == "denied":
                code = "AccessDenied"
            if kind == "expired":
                code = "ExpiredToken"
            payload = (
                "<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{code}</Code><Message>{message}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            ).encode()
            headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
        headers.append(("Content-Length", str(len(payload))))
        start_response(f"{status} {reason}", headers)
        return [payload]

    def s3_error(self, start_response, kind: str):
        """S3's own error document (`<Error>` at the root); S3 throttles with 503 `SlowDown`."""
        status, code, message = {
            "throttle": (503, "SlowDown", "Please reduce your request rate."),
            "500": (500, "InternalError", "We encountered an internal error. Please try again."),
            "503": (503, "ServiceUnavailable", "Please reduce your request rate."),
            "denied": (403, "AccessDenied", "Access Denied"),
            "expired": (400, "ExpiredToken", "The provided token has expired."),
        }[kind]
        reason = HTTPStatus(status).phrase
        request_id = uuid.uuid4().hex[:16].upper()
        payload = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers = [
            ("Content-Type", "application/xml"),
            ("x-amz-request-id", request_id),
            ("Content-Length", str(len(payload))),
        ]
        start_response(f"{status} {reason}", headers)
        return [payload]

    # -- admin API ---------------------------------------------------------
    def admin(self, environ, start_response, route: str):
        method = environ.get("REQUEST_METHOD", "GET")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            data = json.loads(raw) if raw else {}
            query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            status, payload = self.route(method, route, data, query)
        except (ValueError, KeyError, TypeError) as err:
            status, payload = 400, {"error": str(err)}
        body = json.dumps(payload, default=str, indent=1).encode()
        start_response(
            f"{status} {'OK' if status == 200 else 'Error'}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def route(self, method: str, route: str, data: dict, query: dict | None = None):
        query = query or {}
        if route == "health":
            return 200, {
                "ok": True,
                "endpoint": self.endpoints.endpoint_url,
                "registry": self.endpoints.registry_addr,
                "registry_ok": self.registry.healthy(),
                "docker_tls": self.endpoints.docker_tls_host,
                "docker_cert_path": str(self.endpoints.docker_cert_path),
                "docker_tls_connections": getattr(getattr(self, "docker_tls", None), "connections", 0),
            }
        if route == "counters":
            if method == "DELETE":
                self.faults.reset_counters()
            return 200, self.faults.counters(query.get("app"))
        if route == "trace":
            # One app's calls with their start and end: what ran in a row, what overlapped.
            return 200, self.faults.trace(query.get("app", ""))
        if route == "faults":
            if method == "POST":
                return 200, self.faults.add(data).public()
            if method == "DELETE":
                self.faults.clear(query.get("app"))
            return 200, self.faults.rules()
        if route == "config":
            if method == "POST":
                self.tunables.update(data)
            return 200, vars(self.tunables)
        if route == "alarm" and method == "POST":
            return 200, strategies.set_alarm(data)
        if route == "hooks":
            # Lifecycle hooks' Lambda answers, scripted per function; their invocations.
            return 200, strategies.admin(method, data)
        if route == "reset" and method == "POST":
            strategies.forget_hooks()
            ecs.AGENT.reset()
            self.registry.wipe()
            self.faults.clear()
            self.faults.reset_counters()
            return 200, {"reset": True}
        if route == "registry-events" and method == "POST":
            # The registry's push notifications: one count per manifest pushed, and
            # one per manifest pushed by tag under the repository and the tag.
            for event in data.get("events", []):
                target = event.get("target", {})
                agent = event.get("request", {}).get("useragent", "")
                if (
                    event.get("action") == "push"
                    and "manifest" in target.get("mediaType", "")
                    and agent != ecr.SANDBOX_AGENT
                ):
                    self.faults.count(f"registry:push:{target.get('repository')}")
                    if target.get("tag"):
                        self.faults.count(f"registry:push:{target.get('repository')}:{target['tag']}")
            return 200, {}
        if route == "fire" and method == "POST":
            return 200, triggers.fire(self.endpoints, data)
        if route == "oidc/token" and method == "POST":
            return 200, sts.mint(data)
        if route == "sessions" and method == "POST":
            return 200, sts.scale(data)
        if route == "tasks":
            return 200, ecs.AGENT.describe()
        return 404, {"error": f"no such sandbox route: {method} /_sandbox/{route}"}


class Registry:
    """Debian's `docker-registry` as a child process: ECR's data plane. Its
    pid is kept in `registry.pid` in the state dir, so that `sandboxctl stop`
    can end it when the server could not."""

    def __init__(self, endpoints: Endpoints):
        self.endpoints = endpoints
        self.storage = endpoints.state_dir / "registry"
        self.config = endpoints.state_dir / "registry.yml"
        self.pidfile = endpoints.state_dir / "registry.pid"
        self.htpasswd = endpoints.state_dir / "registry.htpasswd"
        self.proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.endpoints.registry_backend_port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def start(self) -> None:
        import bcrypt

        self.storage.mkdir(parents=True, exist_ok=True)
        user, password = BACKEND_AUTH
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6, prefix=b"2a"))
        self.htpasswd.write_text(f"{user}:{hashed.decode()}\n")
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            # Upload locations without a host: the fronts hand them on as they are.
            f"http:\n  addr: {self.addr}\n  relativeurls: true\n"
            # The fronts' login and nothing else (see config.BACKEND_AUTH).
            f"auth:\n  htpasswd:\n    realm: ecr\n    path: {self.htpasswd}\n"
            "notifications:\n  endpoints:\n    - name: sandbox\n"
            f"      url: {self.endpoints.endpoint_url}/_sandbox/registry-events\n"
            "      timeout: 2s\n      threshold: 5\n      backoff: 1s\n"
        )
        logfile = open(self.endpoints.state_dir / "registry.log", "ab")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(self.config)],
            stdout=logfile,
            stderr=subprocess.STDOUT,
        )
        self.pidfile.write_text(str(self.proc.pid))
        deadline = time.monotonic() + 15
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"docker-registry did not start on {self.addr}; see {self.endpoints.state_dir / 'registry.log'}"
                )
            time.sleep(0.05)

    def healthy(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.url}/v2/", auth=BACKEND_AUTH, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.pidfile.unlink(missing_ok=True)

    def wipe(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.storage, ignore_errors=True)
        self.start()


def serve() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    endpoints = Endpoints()
    endpoints.state_dir.mkdir(parents=True, exist_ok=True)
    tunables = Tunables()

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    # First: when its port is taken the server fails before it starts the registry.
    docker_tls = DockerTLSFront(endpoints)
    docker_tls.start()
    registry = Registry(endpoints)
    registry.start()
    fronts = registries.start(endpoints)
    ecs.install(endpoints, tunables)
    ecr.install(endpoints, registry)
    s3.install()
    sts.install()
    schedules.install()
    app = SandboxApp(DomainDispatcherApplication(create_backend_app), endpoints, tunables, registry)
    fronts.faults = app.faults
    for front in fronts.fronts.values():
        front.faults = app.faults
    app.docker_tls = docker_tls
    server = make_server("127.0.0.1", endpoints.port, app, threaded=True, request_handler=MotoRequestHandler)

    def shutdown(*_):
        log.info("stopping")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    ecs.AGENT.start()
    log.info(
        "listening on %s, registry on %s, Docker TLS front on %s",
        endpoints.endpoint_url,
        endpoints.registry_addr,
        endpoints.docker_tls_host,
    )
    try:
        server.serve_forever()
    finally:
        docker_tls.stop()
        fronts.stop()
        ecs.AGENT.shutdown()
        registry.stop()
        Path(endpoints.state_dir / "server.pid").unlink(missing_ok=True)
        sys.exit(0)
