"""Base images made locally: no registry can be pulled from here.

The root file system holds Debian's statically linked busybox and its applet
links, imported with `docker import`. Images that are not ours (the Datadog
sidecar) get stand-ins under their real names.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import time

import docker
import docker.errors

from .config import BASE_IMAGE, STAND_IN_IMAGES

BUSYBOX = "/bin/busybox"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rootfs_tar() -> bytes:
    busybox = shutil.which("busybox") or BUSYBOX
    applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout.split()
    buf = io.BytesIO()
    mtime = int(time.time())
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def directory(path: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, mtime
            tar.addfile(info)

        def regular(path: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, mtime
            tar.addfile(info, io.BytesIO(data))

        for path in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "var", "var/www"]:
            directory(path)
        directory("tmp", 0o1777)
        with open(busybox, "rb") as handle:
            regular("bin/busybox", handle.read(), 0o755)
        for applet in applets:
            if applet == "bin/busybox":
                continue
            info = tarfile.TarInfo(applet)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "/bin/busybox", mtime
            tar.addfile(info)
        regular("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        regular("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def ensure_images(client: docker.DockerClient, force: bool = False) -> list[str]:
    """Import the base image and the stand-ins unless the engine has them."""
    made = []
    wanted = {BASE_IMAGE: ['CMD ["/bin/sh"]', f"ENV {PATH_ENV}"]}
    for name, label in STAND_IN_IMAGES.items():
        wanted[name] = [
            f"ENV {PATH_ENV}",
            f'LABEL org.opencontainers.image.title="{label}"',
            # Stays up like the real agent, and stops cleanly on SIGTERM.
            'CMD ["/bin/sh", "-c", "trap \'exit 0\' TERM; echo \'datadog-agent stand-in up\'; '
            'while :; do sleep 1; done"]',
        ]
    tar = None
    for name, changes in wanted.items():
        if not force:
            try:
                client.images.get(name)
                continue
            except docker.errors.ImageNotFound:
                pass
        tar = tar or rootfs_tar()
        repository, tag = name.rsplit(":", 1)
        client.api.import_image_from_data(tar, repository=repository, tag=tag, changes=changes)
        made.append(name)
    return made
