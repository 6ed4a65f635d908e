"""An image built for another platform than the task definition's
`runtimePlatform` does not start, as on ECS, where the image for the task's
platform is not found (an arm64 build from a laptop for an X86_64 task)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest
from conftest import container_def, login, stopped, unique

from berth_sandbox.images import rootfs_tar

X86 = {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"}
ARM = {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}


def platform_reason(platform: str) -> str:
    return (
        "CannotPullContainerError: pull image manifest has been retried 1 time(s): "
        f"image Manifest does not contain descriptor matching platform '{platform}'"
    )


def load_image(engine, name: str, architecture: str) -> None:
    """An image whose config says `architecture`, made locally (`docker load`
    of a hand-made archive): the busybox inside is the host's, so it runs
    here whatever the config says."""
    layer = rootfs_tar()
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
        }
    ).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [name], "Layers": ["layer.tar"]}]).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path, data in ((config_name, config), ("layer.tar", layer), ("manifest.json", manifest)):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    engine.api.load_image(archive.getvalue())
    assert engine.api.inspect_image(name)["Architecture"] == architecture


@pytest.fixture
def pushed(ecr, engine):
    """architecture -> the repositoryUri:tag of an image built for it."""
    uri = ecr.create_repository(repositoryName=unique("platforms"))["repository"]["repositoryUri"]
    images = {}
    for architecture in ("amd64", "arm64"):
        name = f"{uri}:{architecture}"
        load_image(engine, name, architecture)
        for line in engine.api.push(uri, tag=architecture, stream=True, decode=True, auth_config=login(ecr)):
            assert "error" not in line, line
        engine.api.remove_image(name)  # the agent pulls it from the registry
        images[architecture] = name
    return images


def run_image(ecs, cluster: str, image: str, runtime_platform: dict | None) -> dict:
    family = unique("platform")
    extra = {"runtimePlatform": runtime_platform} if runtime_platform else {}
    ecs.register_task_definition(
        family=family, memory="512", containerDefinitions=[container_def("app", ["true"], image=image)], **extra
    )
    arn = ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"][0]["taskArn"]
    return stopped(ecs, cluster, arn)


@pytest.mark.parametrize(
    ("architecture", "runtime_platform", "platform"),
    [("arm64", X86, "linux/amd64"), ("arm64", None, "linux/amd64"), ("amd64", ARM, "linux/arm64")],
    ids=["arm64-image-x86-task", "arm64-image-default-task", "amd64-image-arm-task"],
)
def test_image_for_another_platform_fails_to_start(ecs, cluster, pushed, architecture, runtime_platform, platform):
    task = run_image(ecs, cluster, pushed[architecture], runtime_platform)
    assert task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"] == platform_reason(platform)
    [app] = task["containers"]
    assert app["reason"] == platform_reason(platform)
    assert "exitCode" not in app


@pytest.mark.parametrize(("architecture", "runtime_platform"), [("arm64", ARM), ("amd64", X86)])
def test_image_for_the_task_platform_runs(ecs, cluster, pushed, architecture, runtime_platform):
    task = run_image(ecs, cluster, pushed[architecture], runtime_platform)
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["containers"][0]["exitCode"] == 0


def test_a_cached_image_for_another_platform_fails_to_start(ecs, cluster, engine):
    name = f"berth-sandbox/tests-{unique('arm')}:1"
    load_image(engine, name, "arm64")
    try:
        task = run_image(ecs, cluster, name, X86)
    finally:
        engine.api.remove_image(name)
    assert task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"] == platform_reason("linux/amd64")
