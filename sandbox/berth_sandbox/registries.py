"""ECR's data plane: one registry per account and region, as in AWS, where
each account and region has its own registry
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/Registries.html).

Each is a front on a port of its own (the default account's in the default
region on `BERTH_SANDBOX_REGISTRY_PORT`, others from that port plus 10, in the
order they are first named) in front of one docker-registry, where another
account's or region's repositories live under `<account>/<region>/`. A front
does what ECR does before a push or a pull:

- it takes ECR's login only: Basic auth `AWS:<token>`, the token of the
  account whose credentials called GetAuthorizationToken in the registry's
  region (a token is signed for the region it came from, and each region's
  registry is logged in to on its own); anything else is 401 with ECR's
  challenge;
- a repository that ECR does not have is 404 NAME_UNKNOWN, in ECR's words;
- a caller of another account needs the repository's policy to allow the
  ECR action the request is
  (https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-policies.html,
  https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html):
  a manifest read is `ecr:BatchGetImage`, a layer read
  `ecr:GetDownloadUrlForLayer`, a layer check
  `ecr:BatchCheckLayerAvailability`, an upload `ecr:InitiateLayerUpload`,
  `ecr:UploadLayerPart` and `ecr:CompleteLayerUpload`, a manifest write
  `ecr:PutImage`; without it, 403 DENIED with IAM's words.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode

from .accounts import caller_arn
from .config import ACCOUNT_ID, BACKEND_AUTH, REGION, Endpoints
from .policy import allows

log = logging.getLogger("berth_sandbox.registries")

ROUTE = re.compile(r"^/v2/(?P<name>.+?)/(?P<rest>manifests/[^/]+|blobs/uploads/?[^/]*|blobs/[^/]+|tags/list)$")
CHUNK = 1 << 16
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


def operation(method: str, rest: str) -> str:
    """The registry request as the faults and counters name it: `GetManifest`, `PutManifest`,
    `HeadBlob`, `GetBlob`, `UploadBlob` (each request of an upload), `ListTags`."""
    if rest.startswith("manifests/"):
        return {"PUT": "PutManifest", "DELETE": "DeleteManifest", "HEAD": "HeadManifest"}.get(method, "GetManifest")
    if rest.startswith("blobs/uploads"):
        return "UploadBlob"
    if rest.startswith("blobs/"):
        return "HeadBlob" if method == "HEAD" else "GetBlob"
    return "ListTags"


def ecr_action(method: str, rest: str) -> str:
    """The ECR action a registry request is, as IAM names it."""
    if rest.startswith("manifests/"):
        return {"PUT": "ecr:PutImage", "DELETE": "ecr:BatchDeleteImage"}.get(method, "ecr:BatchGetImage")
    if rest.startswith("blobs/uploads"):
        uploads = {"POST": "ecr:InitiateLayerUpload", "PATCH": "ecr:UploadLayerPart"}
        return uploads.get(method, "ecr:CompleteLayerUpload")
    if rest.startswith("blobs/"):
        return "ecr:BatchCheckLayerAvailability" if method == "HEAD" else "ecr:GetDownloadUrlForLayer"
    return "ecr:ListImages"


def token_account(authorization: str | None, region: str) -> str | None:
    """The account whose ECR login in `region` `authorization` is (`Basic
    AWS:<account>-<region>-auth-token`); None for a login of another region."""
    if not authorization or not authorization.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    found = re.fullmatch(r"(\d{12})-([a-z0-9-]+)-auth-token", password)
    return found.group(1) if user == "AWS" and found and found.group(2) == region else None


def namespace(account: str, region: str) -> str:
    """Where an account's repositories in a region live in the one docker-registry."""
    return "" if (account, region) == (ACCOUNT_ID, REGION) else f"{account}/{region}/"


# The server's fronts, once it started them (`start`).
REGISTRIES: Registries | None = None


def start(endpoints: Endpoints, faults=None) -> Registries:
    """The fronts, the default account's in the default region listening already. `faults`
    judges each request as the API's calls are judged (`registry:<operation>`)."""
    global REGISTRIES
    REGISTRIES = Registries(endpoints, faults)
    REGISTRIES.addr_for(ACCOUNT_ID, REGION)
    return REGISTRIES


def get() -> Registries:
    if REGISTRIES is None:
        raise RuntimeError("the registries are not started")
    return REGISTRIES


class Registries:
    """The fronts, made when an account and region is first named."""

    def __init__(self, endpoints: Endpoints, faults=None):
        self.endpoints = endpoints
        self.faults = faults
        self.fronts: dict[tuple[str, str], Front] = {}
        self.lock = threading.Lock()

    def addr_for(self, account: str, region: str) -> str:
        """`127.0.0.1:<port>` of the registry of `account` in `region`, started if need be."""
        key = (account, region)
        with self.lock:
            front = self.fronts.get(key)
            if front is None:
                if key == (ACCOUNT_ID, REGION):
                    port = self.endpoints.registry_port
                else:
                    port = self.endpoints.registry_port + 10 + sum(1 for k in self.fronts if k != (ACCOUNT_ID, REGION))
                front = self.fronts[key] = Front(self.endpoints, account, region, port)
                front.faults = self.faults
            return front.addr

    def of_addr(self, addr: str) -> tuple[str, str] | None:
        with self.lock:
            return next((key for key, front in self.fronts.items() if front.addr == addr), None)

    def ecr_host(self, host: str) -> str | None:
        """The front of ECR's real host name (`<account>.dkr.ecr.<region>.amazonaws.com`)."""
        found = re.fullmatch(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com", host)
        return self.addr_for(found.group(1), found.group(2)) if found else None

    def stop(self) -> None:
        with self.lock:
            for front in self.fronts.values():
                front.shutdown()
                front.server_close()


class Front(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, endpoints: Endpoints, account: str, region: str, port: int):
        self.endpoints = endpoints
        self.account = account
        self.region = region
        self.namespace = namespace(account, region)
        self.addr = f"127.0.0.1:{port}"
        self.faults = None
        super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, name=f"registry-{account}-{region}", daemon=True).start()

    def repository(self, name: str):
        from moto.ecr.models import ecr_backends

        from .agent import LOCK

        with LOCK:
            return ecr_backends[self.account][self.region].repositories.get(name)

    def refusal(self, caller: str, name: str, action: str) -> tuple[int, str, str] | None:
        """Why ECR refuses `caller` `action` on repository `name`; None: it does not."""
        repository = self.repository(name)
        if repository is None:
            return (
                404,
                "NAME_UNKNOWN",
                f"The repository with name '{name}' does not exist in the registry with id '{self.account}'",
            )
        if caller == self.account:
            return None
        who = caller_arn(caller)
        if allows(repository.policy, caller, who, action, repository.arn):
            return None
        return (
            403,
            "DENIED",
            f"User: {who} is not authorized to perform: {action} on resource: {repository.arn} "
            f"because no resource-based policy allows the {action} action",
        )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Front

    def log_message(self, format, *args):  # noqa: A002 - the base class names it so
        log.debug(format, *args)

    def do_GET(self):
        self.proxy()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def proxy(self) -> None:
        front = self.server
        caller = token_account(self.headers.get("Authorization"), front.region)
        if caller is None:
            return self.error(401, "UNAUTHORIZED", "authentication required", challenge=True)
        path, _, query = self.path.partition("?")
        if path in ("/v2", "/v2/"):
            return self.forward("/v2/")
        route = ROUTE.match(path)
        if route is None:
            return self.error(404, "UNSUPPORTED", "The operation is unsupported.")
        name, rest = route.group("name"), route.group("rest")
        if front.faults is not None:
            # The caller is the repository's app, as tests name their apps and repositories.
            app = name.rsplit("/", 1)[-1]
            verdict = front.faults.judge("registry", operation(self.command, rest), app, named_only=True)
            if verdict.latency_ms:
                time.sleep(verdict.latency_ms / 1000)
            if verdict.error == "drop":
                # Closed before the request reaches the registry: nothing applied.
                self.close_connection = True
                return None
            if verdict.error in ("500", "503"):
                return self.error(int(verdict.error), "UNKNOWN", "injected registry error")
        refused = front.refusal(caller, name, ecr_action(self.command, rest))
        if refused:
            return self.error(*refused)
        params = parse_qsl(query, keep_blank_values=True)
        mount = dict(params).get("from")
        if mount is not None:
            # A mount reads the other repository: without the right to, an upload instead.
            if front.refusal(caller, mount, "ecr:BatchGetImage"):
                params = [(k, v) for k, v in params if k not in ("from", "mount")]
            else:
                params = [(k, front.namespace + v if k == "from" else v) for k, v in params]
        backend = f"/v2/{front.namespace}{name}/{rest}"
        return self.forward(backend + (f"?{urlencode(params)}" if params else ""))

    def forward(self, target: str) -> None:
        front = self.server
        connection = http.client.HTTPConnection("127.0.0.1", front.endpoints.registry_backend_port, timeout=60)
        try:
            connection.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() in HOP or key.lower() in ("authorization", "host"):
                    continue
                connection.putheader(key, value)
            connection.putheader("Host", f"127.0.0.1:{front.endpoints.registry_backend_port}")
            auth = base64.b64encode(":".join(BACKEND_AUTH).encode()).decode()
            connection.putheader("Authorization", f"Basic {auth}")
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            if chunked:
                connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            self.send_body(connection, chunked)
            self.relay(connection.getresponse())
        finally:
            connection.close()

    def send_body(self, connection: http.client.HTTPConnection, chunked: bool) -> None:
        if chunked:
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    connection.send(b"0\r\n\r\n")
                    return
                data = self.rfile.read(size)
                self.rfile.readline()
                connection.send(b"%x\r\n%s\r\n" % (len(data), data))
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self.rfile.read(min(CHUNK, remaining))
            if not data:
                break
            connection.send(data)
            remaining -= len(data)

    def relay(self, response: http.client.HTTPResponse) -> None:
        namespace = self.server.namespace
        length = response.getheader("Content-Length")
        body = None if length is not None or self.command == "HEAD" else response.read()
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() in HOP or (body is not None and key.lower() == "content-length"):
                continue
            if key.lower() == "location" and namespace and value.startswith(f"/v2/{namespace}"):
                value = "/v2/" + value[len(f"/v2/{namespace}") :]
            self.send_header(key, value)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if body is not None:
            self.wfile.write(body)
            return
        remaining = int(length or 0)
        while remaining > 0:
            data = response.read(min(CHUNK, remaining))
            if not data:
                break
            self.wfile.write(data)
            remaining -= len(data)

    def error(self, status: int, code: str, message: str, challenge: bool = False) -> None:
        body = b"" if self.command == "HEAD" else json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self.drain()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        if challenge:
            host = f"{self.server.account}.dkr.ecr.{self.server.region}.amazonaws.com"
            self.send_header("WWW-Authenticate", f'Basic realm="https://{host}/",service="ecr.amazonaws.com"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drain(self) -> None:
        """Read a refused request's body, so that the connection stays usable."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self.rfile.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
