"""ECR's data plane is a real registry: what `docker push` sends is what ECR
describes, digest for digest."""

from __future__ import annotations

import base64
import json

import docker.errors
import requests
from conftest import BASE_IMAGE, login, unique, wait_for


def push(engine, ecr, registry: str, repository: str, tag: str) -> str:
    """Push the base image, logged in with ECR's token, and return the digest
    the daemon reported."""
    image = engine.images.get(BASE_IMAGE)
    image.tag(f"{registry}/{repository}", tag=tag)
    digest = None
    auth = login(ecr)
    for line in engine.api.push(f"{registry}/{repository}", tag=tag, stream=True, decode=True, auth_config=auth):
        assert "error" not in line, line
        digest = (line.get("aux") or {}).get("Digest", digest)
    assert digest, "the daemon reported no digest"
    return digest


def test_docker_push_shows_up_in_describe_images(sandbox, ecr, engine):
    name = unique("app")
    ecr.create_repository(repositoryName=name)
    digest = push(engine, ecr, sandbox.registry, name, "abc123")

    [image] = ecr.describe_images(repositoryName=name)["imageDetails"]
    assert image["imageDigest"] == digest
    assert image["imageTags"] == ["abc123"]
    # The registry's push notification is counted, once per manifest.
    wait_for(
        lambda: sandbox.admin("GET", "counters").get(f"registry:push:{name}") == 1,
        timeout=10,
        what="the registry's push notification",
    )
    by_tag = ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": "abc123"}])
    assert by_tag["imageDetails"][0]["imageDigest"] == digest

    manifest = requests.get(
        f"http://{sandbox.registry}/v2/{name}/manifests/abc123",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        auth=tuple(login(ecr).values()),
        timeout=10,
    )
    assert manifest.headers["Docker-Content-Digest"] == digest
    got = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "abc123"}])["images"][0]
    assert got["imageId"]["imageDigest"] == digest
    assert got["imageManifest"] == manifest.text


def test_put_image_moves_a_tag_in_the_registry_too(sandbox, ecr, engine):
    name = unique("app")
    ecr.create_repository(repositoryName=name)
    digest = push(engine, ecr, sandbox.registry, name, "abc123")
    manifest = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "abc123"}])["images"][0]
    ecr.put_image(repositoryName=name, imageManifest=manifest["imageManifest"], imageTag="stg-latest")

    [image] = ecr.describe_images(repositoryName=name)["imageDetails"]
    assert sorted(image["imageTags"]) == ["abc123", "stg-latest"]
    head = requests.head(
        f"http://{sandbox.registry}/v2/{name}/manifests/stg-latest",
        headers={"Accept": json.loads(manifest["imageManifest"])["mediaType"]},
        auth=tuple(login(ecr).values()),
        timeout=10,
    )
    assert head.headers["Docker-Content-Digest"] == digest


def test_the_registry_takes_only_ecrs_login(sandbox, ecr, engine):
    """ECR's registry answers nobody without GetAuthorizationToken's login:
    not a pull, not a push, not the API root."""
    name = unique("app")
    uri = ecr.create_repository(repositoryName=name)["repository"]["repositoryUri"]
    root = f"http://{sandbox.registry}/v2/"
    assert requests.get(root, timeout=10).status_code == 401
    assert requests.get(root, auth=("AWS", "not-the-token"), timeout=10).status_code == 401
    assert requests.get(root, auth=tuple(login(ecr).values()), timeout=10).status_code == 200

    engine.images.get(BASE_IMAGE).tag(uri, tag="anonymous")
    lines = list(engine.api.push(uri, tag="anonymous", stream=True, decode=True, auth_config={}))
    assert any("error" in line for line in lines), lines
    assert ecr.describe_images(repositoryName=name)["imageDetails"] == []

    push(engine, ecr, sandbox.registry, name, "v1")
    engine.api.remove_image(f"{uri}:v1")
    try:
        engine.api.pull(uri, tag="v1", auth_config={"username": "AWS", "password": "wrong"})
    except docker.errors.APIError as err:
        assert "401" in str(err) or "unauthorized" in str(err).lower() or "no basic auth" in str(err), err
    else:
        raise AssertionError("a pull with a wrong password must be refused")


def test_unknown_repository_is_not_found(ecr):
    try:
        ecr.describe_images(repositoryName="nope")
    except ecr.exceptions.RepositoryNotFoundException:
        return
    raise AssertionError("DescribeImages on a missing repository must fail")


def test_repository_uri_and_proxy_endpoint_name_the_registry(sandbox, ecr, engine):
    name = unique("app")
    created = ecr.create_repository(repositoryName=name)["repository"]
    assert created["repositoryUri"] == f"{sandbox.registry}/{name}"
    [described] = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert described["repositoryUri"] == created["repositoryUri"]
    [auth] = ecr.get_authorization_token()["authorizationData"]
    assert auth["proxyEndpoint"] == f"http://{sandbox.registry}"

    # What a client does with them, with no mapping of ECR's host name.
    username, password = base64.b64decode(auth["authorizationToken"]).decode().split(":", 1)
    login = engine.login(username=username, password=password, registry=auth["proxyEndpoint"], reauth=True)
    assert login["Status"] == "Login Succeeded"
    engine.images.get(BASE_IMAGE).tag(created["repositoryUri"], tag="v1")
    for line in engine.api.push(created["repositoryUri"], tag="v1", stream=True, decode=True):
        assert "error" not in line, line
    [image] = ecr.describe_images(repositoryName=name)["imageDetails"]
    assert image["imageTags"] == ["v1"]


def test_ecs_task_pulls_our_image_by_its_repository_uri(sandbox, ecr, ecs, engine, cluster):
    from conftest import container_def, stopped

    name = unique("app")
    uri = ecr.create_repository(repositoryName=name)["repository"]["repositoryUri"]
    digest = push(engine, ecr, sandbox.registry, name, "v1")
    engine.api.remove_image(f"{uri}:v1")  # the agent pulls it from the registry
    ecs.register_task_definition(
        family="pull", memory="512", containerDefinitions=[container_def("app", ["true"], image=f"{uri}@{digest}")]
    )
    arn = ecs.run_task(cluster=cluster, taskDefinition="pull")["tasks"][0]["taskArn"]
    task = stopped(ecs, cluster, arn)
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["containers"][0]["exitCode"] == 0
    assert task["containers"][0]["imageDigest"] == digest


def test_ecs_task_pulls_our_image_by_ecr_s_real_host_name(sandbox, ecr, ecs, engine, cluster):
    """Task definitions written for AWS name ECR's host; they run too."""
    from conftest import container_def, stopped

    name = unique("app")
    ecr.create_repository(repositoryName=name)
    digest = push(engine, ecr, sandbox.registry, name, "v1")
    image = f"{sandbox.ecr_host}/{name}@{digest}"
    ecs.register_task_definition(
        family="pull", memory="512", containerDefinitions=[container_def("app", ["true"], image=image)]
    )
    arn = ecs.run_task(cluster=cluster, taskDefinition="pull")["tasks"][0]["taskArn"]
    task = stopped(ecs, cluster, arn)
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["containers"][0]["exitCode"] == 0
    assert task["containers"][0]["imageDigest"] == digest


def test_an_image_deleted_from_ecr_is_gone_from_the_registry_too(sandbox, ecr, engine):
    name = unique("deleted")
    ecr.create_repository(repositoryName=name)
    digest = push(engine, ecr, sandbox.registry, name, "v1")
    assert ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])["imageIds"]
    assert ecr.describe_images(repositoryName=name)["imageDetails"] == [], "not brought back by a sync"
    gone = requests.get(
        f"http://{sandbox.registry}/v2/{name}/manifests/{digest}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        auth=tuple(login(ecr).values()),
        timeout=10,
    )
    assert gone.status_code == 404
