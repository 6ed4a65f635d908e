"""ECR's data plane is a real registry. Before ECR answers a read, the
repository is synced from the registry, so `DescribeImages` and
`BatchGetImage` give the tags and the registry's real manifest digests of what
`docker push` sent. A tag added through `PutImage` is written to the registry
too, so the data plane never disagrees with the API.

ECR tells clients where its registry is: a repository's `repositoryUri`
(https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_Repository.html)
and GetAuthorizationToken's `proxyEndpoint`
(https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_AuthorizationData.html)
name the sandbox's registry, `127.0.0.1:<port>/<name>` and
`http://127.0.0.1:<port>`, so that no client needs to map ECR's host name.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import requests
from moto.ecr import responses as ecr_responses
from moto.ecr.models import Image, Repository, ecr_backends

from .config import ACCOUNT_ID, REGION, REGISTRY_AUTH, Endpoints

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
    """Name the registry where ECR names its host. Syncing happens around
    each request (`before`, `after`)."""

    def repository_init(self, *args, **kwargs):
        _moto_repository_init(self, *args, **kwargs)
        self.uri = f"{endpoints.registry_addr}/{self.name}"

    def get_authorization_token(self):
        result = _moto_get_authorization_token(self)
        for data in result.result["authorizationData"]:
            data["proxyEndpoint"] = endpoints.registry_url
        return result

    Repository.__init__ = repository_init
    ecr_responses.ECRResponse.get_authorization_token = get_authorization_token


# The registry reads of `sync`: a few threads, each with its own session (`requests` sessions are
# not shared between threads).
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ecr-sync")
_SESSIONS = threading.local()


def _session() -> requests.Session:
    session = getattr(_SESSIONS, "session", None)
    if session is None:
        session = _SESSIONS.session = requests.Session()
    return session


def _backend():
    return ecr_backends[ACCOUNT_ID][REGION]


def before(operation: str, body: bytes, registry) -> None:
    if operation not in READS:
        return
    try:
        name = json.loads(body or b"{}").get("repositoryName")
    except ValueError:
        return
    if name:
        sync(name, registry)


def after(operation: str, body: bytes, registry) -> None:
    if operation != "PutImage":
        return
    data = json.loads(body)
    tag = data.get("imageTag")
    if not tag:
        return
    media_type = data.get("imageManifestMediaType") or json.loads(data["imageManifest"]).get(
        "mediaType", "application/vnd.docker.distribution.manifest.v2+json"
    )
    response = requests.put(
        f"{registry.url}/v2/{data['repositoryName']}/manifests/{tag}",
        data=data["imageManifest"].encode(),
        # The sandbox's own writes are not pushes: the counter skips this user agent.
        headers={"Content-Type": media_type, "User-Agent": SANDBOX_AGENT},
        auth=REGISTRY_AUTH,
        timeout=10,
    )
    if response.status_code >= 300:
        log.warning("registry refused tag %s: %s", tag, response.text)


def sync(name: str, registry) -> None:
    backend = _backend()
    repository = backend.repositories.get(name)
    if repository is None:
        return  # ECR says RepositoryNotFound; the registry's copy does not matter
    try:
        listing = _session().get(f"{registry.url}/v2/{name}/tags/list", auth=REGISTRY_AUTH, timeout=10)
    except requests.RequestException as err:
        log.warning("registry unreachable: %s", err)
        return
    tags = (listing.json().get("tags") or []) if listing.status_code == 200 else []

    def manifest_of(tag: str):
        return _session().get(
            f"{registry.url}/v2/{name}/manifests/{tag}",
            headers={"Accept": MANIFEST_TYPES},
            auth=REGISTRY_AUTH,
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
            image = Image(ACCOUNT_ID, digest_tags[0], manifest, name, media_type, digest)
        image.from_registry = True
        image.image_tags = sorted(digest_tags)
        image.image_tag = image.image_tags[0]
        # Tags live in one place: drop them from API-only images.
        for other in images:
            other.image_tags = [t for t in other.image_tags if t not in digest_tags]
        images.append(image)
    repository.images[:] = images
