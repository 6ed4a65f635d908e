"""ECR's data plane is a real registry. Before ECR answers a read, the
repository is synced from the registry, so `DescribeImages` and
`BatchGetImage` give the tags and the registry's real manifest digests of what
`docker push` sent. A tag added through `PutImage` is written to the registry
too, so the data plane never disagrees with the API.

ECR tells clients where its registry is: a repository's `repositoryUri`
(https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_Repository.html)
and GetAuthorizationToken's `proxyEndpoint`
(https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_AuthorizationData.html)
name the registry of the repository's (the caller's) account and region,
`127.0.0.1:<port>/<name>` and `http://127.0.0.1:<port>`, so that no client
needs to map ECR's host name (`registries.py`).

GetAuthorizationToken's token is the caller's, whatever `registryIds` asks
for: ECR's token stands for the IAM principal that asked, and another
account's registry takes it only where that repository's policy allows the
principal (https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry_auth.html).
moto would mint a token of any account named in `registryIds`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from moto.ecr import responses as ecr_responses
from moto.ecr.models import Image, Repository, ecr_backends

from . import registries
from .config import BACKEND_AUTH, Endpoints, registry_password

log = logging.getLogger("berth_sandbox.ecr")

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
SANDBOX_AGENT = "berth-sandbox"
READS = {"DescribeImages", "BatchGetImage", "ListImages", "PutImage", "BatchDeleteImage"}


_moto_repository_init = Repository.__init__
_moto_get_authorization_token = ecr_responses.ECRResponse.get_authorization_token


def install(endpoints: Endpoints, registry) -> None:
    """Name the registry of the repository's account and region where ECR
    names its host. Syncing happens around each request (`before`, `after`)."""

    def repository_init(self, *args, **kwargs):
        _moto_repository_init(self, *args, **kwargs)
        self.uri = f"{registries.get().addr_for(self.registry_id, self.region_name)}/{self.name}"

    def get_authorization_token(self):
        self._get_param = _without_registry_ids(self._get_param)
        result = _moto_get_authorization_token(self)
        for data in result.result["authorizationData"]:
            login = f"AWS:{registry_password(self.current_account, self.region)}"
            data["authorizationToken"] = base64.b64encode(login.encode()).decode()
            data["proxyEndpoint"] = f"http://{registries.get().addr_for(self.current_account, self.region)}"
            # ECR's tokens last 12 hours.
            data["expiresAt"] = time.time() + 12 * 3600
        return result

    Repository.__init__ = repository_init
    ecr_responses.ECRResponse.get_authorization_token = get_authorization_token


def _without_registry_ids(get_param):
    def get(name, *args, **kwargs):
        return None if name == "registryIds" else get_param(name, *args, **kwargs)

    return get


# The registry reads of `sync`: a few threads, each with its own session (`requests` sessions are
# not shared between threads).
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ecr-sync")
_SESSIONS = threading.local()


def _session() -> requests.Session:
    session = getattr(_SESSIONS, "session", None)
    if session is None:
        session = _SESSIONS.session = requests.Session()
    return session


def before(operation: str, body: bytes, registry, account: str, region: str) -> None:
    if operation not in READS:
        return
    try:
        name = json.loads(body or b"{}").get("repositoryName")
    except ValueError:
        return
    if name:
        sync(name, registry, account, region)


def after(operation: str, body: bytes, registry, account: str, region: str) -> None:
    if operation == "BatchDeleteImage":
        forget(json.loads(body), registry, account, region)
        return
    if operation != "PutImage":
        return
    data = json.loads(body)
    tag = data.get("imageTag")
    if not tag:
        return
    media_type = data.get("imageManifestMediaType") or json.loads(data["imageManifest"]).get(
        "mediaType", "application/vnd.docker.distribution.manifest.v2+json"
    )
    stored = registries.namespace(account, region) + data["repositoryName"]
    response = requests.put(
        f"{registry.url}/v2/{stored}/manifests/{tag}",
        data=data["imageManifest"].encode(),
        # The sandbox's own writes are not pushes: the counter skips this user agent.
        headers={"Content-Type": media_type, "User-Agent": SANDBOX_AGENT},
        auth=BACKEND_AUTH,
        timeout=10,
    )
    if response.status_code >= 300:
        log.warning("registry refused tag %s: %s", tag, response.text)


def forget(data: dict, registry, account: str, region: str) -> None:
    """After BatchDeleteImage: an image ECR no longer has (deleted by digest, or by its last
    tag) is deleted from the registry too, or the next sync would bring it back. An image that
    keeps other tags stays; the registry's API cannot drop one tag alone."""
    name = data.get("repositoryName", "")
    repository = ecr_backends[account][region].repositories.get(name)
    if repository is None:
        return
    stored = registries.namespace(account, region) + name
    kept = {image.get_image_digest() for image in repository.images}
    for image_id in data.get("imageIds", []):
        digest = image_id.get("imageDigest")
        if digest is None and image_id.get("imageTag"):
            head = _session().head(
                f"{registry.url}/v2/{stored}/manifests/{image_id['imageTag']}",
                headers={"Accept": MANIFEST_TYPES},
                auth=BACKEND_AUTH,
                timeout=10,
            )
            digest = head.headers.get("Docker-Content-Digest") if head.status_code == 200 else None
        if digest and digest not in kept:
            _session().delete(f"{registry.url}/v2/{stored}/manifests/{digest}", auth=BACKEND_AUTH, timeout=10)


def sync(name: str, registry, account: str, region: str) -> None:
    repository = ecr_backends[account][region].repositories.get(name)
    if repository is None:
        return  # ECR says RepositoryNotFound; the registry's copy does not matter
    stored = registries.namespace(account, region) + name
    try:
        listing = _session().get(f"{registry.url}/v2/{stored}/tags/list", auth=BACKEND_AUTH, timeout=10)
    except requests.RequestException as err:
        log.warning("registry unreachable: %s", err)
        return
    tags = (listing.json().get("tags") or []) if listing.status_code == 200 else []

    def manifest_of(tag: str):
        return _session().get(
            f"{registry.url}/v2/{stored}/manifests/{tag}",
            headers={"Accept": MANIFEST_TYPES},
            auth=BACKEND_AUTH,
            timeout=10,
        )

    # Every tag's manifest at once, each thread on its own kept-alive connection: a read of a
    # repository with a few tags costs about one registry round trip, not one per tag.
    manifests = list(_POOL.map(manifest_of, tags))
    by_digest: dict[str, tuple[str, str, list[str]]] = {}
    for tag, manifest in zip(tags, manifests, strict=True):
        if manifest.status_code != 200:
            continue
        digest = manifest.headers["Docker-Content-Digest"]
        media_type = manifest.headers.get("Content-Type", "").split(";")[0]
        entry = by_digest.setdefault(digest, (manifest.text, media_type, []))
        entry[2].append(tag)

    existing = {img.get_image_digest(): img for img in repository.images}
    images = [img for img in repository.images if not getattr(img, "from_registry", False)]
    for digest, (manifest, media_type, digest_tags) in by_digest.items():
        image = existing.get(digest)
        if image is None:
            image = Image(account, digest_tags[0], manifest, name, media_type, digest)
        image.from_registry = True
        image.image_tags = sorted(digest_tags)
        image.image_tag = image.image_tags[0]
        # Tags live in one place: drop them from API-only images.
        for other in images:
            other.image_tags = [t for t in other.image_tags if t not in digest_tags]
        images.append(image)
    repository.images[:] = images
