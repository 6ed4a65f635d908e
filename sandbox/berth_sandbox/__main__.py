"""sandboxctl: start, stop, reset and seed the sandbox; print its environment."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from .accounts import SECOND_ACCOUNT
from .config import ACCOUNT_ID, REGION, SANDBOX_DIR, Endpoints


def admin(endpoints: Endpoints, method: str, route: str, payload=None, timeout=30):
    response = requests.request(method, f"{endpoints.endpoint_url}/_sandbox/{route}", json=payload, timeout=timeout)
    response.raise_for_status()
    return response.json()


def running(endpoints: Endpoints) -> bool:
    try:
        return admin(endpoints, "GET", "health", timeout=2)["ok"]
    except requests.RequestException:
        return False


def cmd_setup(endpoints: Endpoints, args) -> int:
    import docker

    from .images import ensure_images

    made = ensure_images(docker.from_env(), force=args.force)
    print(f"sandbox: images ready{' (made ' + ', '.join(made) + ')' if made else ''}", file=sys.stderr)
    return 0


def cmd_start(endpoints: Endpoints, args) -> int:
    began = time.monotonic()
    if running(endpoints):
        print(f"sandbox: already running on {endpoints.endpoint_url}", file=sys.stderr)
        return 0
    cmd_setup(endpoints, argparse.Namespace(force=False))
    endpoints.state_dir.mkdir(parents=True, exist_ok=True)
    logfile = open(endpoints.state_dir / "server.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from berth_sandbox.server import serve; serve()"],
        cwd=SANDBOX_DIR,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (endpoints.state_dir / "server.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 60
    while not running(endpoints):
        if proc.poll() is not None or time.monotonic() > deadline:
            print(
                f"sandbox: failed to start; see {endpoints.state_dir / 'server.log'}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.1)
    print(
        f"sandbox: up on {endpoints.endpoint_url}, registry {endpoints.registry_addr}, "
        f"Docker TLS {endpoints.docker_tls_host} ({time.monotonic() - began:.1f}s)",
        file=sys.stderr,
    )
    return 0


def alive(pid: int) -> bool:
    """Is the process there? A zombie that nobody has reaped yet is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def end_process(pid: int, grace: float) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds; was it running?"""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)
    return True


def end_server(endpoints: Endpoints) -> bool:
    """The server removes its containers and ends the registry on SIGTERM,
    unless that takes longer than it is given."""
    pidfile = endpoints.state_dir / "server.pid"
    if not pidfile.exists():
        return False
    ended = end_process(int(pidfile.read_text()), grace=10)
    pidfile.unlink(missing_ok=True)
    return ended


def registry_pid(endpoints: Endpoints) -> int | None:
    """The running registry's pid, from the file the server keeps (the
    server removes it when it ends the registry itself)."""
    pidfile = endpoints.state_dir / "registry.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text())
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        command = b""
    # Not ours when the pid belongs to another program by now.
    return pid if b"docker-registry" in command else None


def end_registry(endpoints: Endpoints, pid: int | None) -> None:
    """End the registry when the server was killed before it could."""
    if pid is not None and alive(pid):
        end_process(pid, grace=5)
    (endpoints.state_dir / "registry.pid").unlink(missing_ok=True)


def cmd_stop(endpoints: Endpoints, args) -> int:
    """Stop the server, then remove whatever it left: it is killed when its
    own cleanup takes too long (dozens of task containers)."""
    import docker

    from .containers import instance_containers, remove_instance_containers

    try:
        engine = docker.from_env()
    except docker.errors.DockerException as err:
        # Without an engine there are no task containers to remove; the
        # server and the registry still stop.
        print(f"sandbox: the Docker daemon does not answer ({err}); stopping the rest", file=sys.stderr)
        engine = None
    seen = set(instance_containers(engine, endpoints)) if engine else set()
    registry = registry_pid(endpoints)
    server = end_server(endpoints)
    end_registry(endpoints, registry)
    if engine:
        seen |= set(remove_instance_containers(engine, endpoints))
    left = instance_containers(engine, endpoints) if engine else []
    removed = len(seen - set(left))
    if not server and registry is None and not seen:
        print("sandbox: not running", file=sys.stderr)
        return 0
    registry_note = f"registry pid {registry}" if registry else "no registry"
    print(f"sandbox: stopped (removed {removed} task containers, {registry_note})", file=sys.stderr)
    if left:
        print(f"sandbox: {len(left)} task containers could not be removed: {' '.join(left)}", file=sys.stderr)
        return 1
    return 0


def cmd_reset(endpoints: Endpoints, args) -> int:
    admin(endpoints, "POST", "reset", timeout=120)
    print("sandbox: reset", file=sys.stderr)
    return 0


def environment(endpoints: Endpoints) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoints.endpoint_url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ACCOUNT_ID": ACCOUNT_ID,
        "BERTH_SANDBOX_PORT": str(endpoints.port),
        "BERTH_SANDBOX_REGISTRY_PORT": str(endpoints.registry_port),
        # The engine behind mutual TLS; tests opt in (DOCKER_HOST stays as it is).
        "BERTH_SANDBOX_DOCKER_TLS_HOST": endpoints.docker_tls_host,
        "BERTH_SANDBOX_DOCKER_CERT_PATH": str(endpoints.docker_cert_path),
    }


def cmd_env(endpoints: Endpoints, args) -> int:
    for key, value in environment(endpoints).items():
        print(f"export {key}={value}")
    # A profile or session token from the caller's shell must not leak in.
    print("unset AWS_PROFILE AWS_SESSION_TOKEN")
    return 0


def cmd_seed(endpoints: Endpoints, args) -> int:
    from .seed import At, seed

    began = time.monotonic()
    if args.if_missing and args.app == "berth-example":
        ecs = endpoints.client("ecs")
        if ecs.describe_clusters(clusters=["berth-stg"])["clusters"]:
            print("sandbox: the demo account is already there", file=sys.stderr)
            return 0
    summary = seed(
        endpoints,
        wait=not args.no_wait,
        envs=tuple(args.envs.split(",")),
        app=args.app,
        reset=not args.keep,
        blue_green=args.blue_green,
        at=At(args.account, args.region),
    )
    print(json.dumps(summary, indent=2))
    print(f"sandbox: demo account seeded ({time.monotonic() - began:.1f}s)", file=sys.stderr)
    return 0


def cmd_status(endpoints: Endpoints, args) -> int:
    if not running(endpoints):
        print("sandbox: not running", file=sys.stderr)
        return 1
    print(json.dumps(admin(endpoints, "GET", "health"), indent=2))
    return 0


def cmd_counters(endpoints: Endpoints, args) -> int:
    print(json.dumps(admin(endpoints, "DELETE" if args.clear else "GET", "counters"), indent=2))
    return 0


def cmd_bench(endpoints: Endpoints, args) -> int:
    from .bench import bench

    for line in bench(endpoints, runs=args.runs):
        print(line)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="sandboxctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="make the base and stand-in images")
    setup.add_argument("--force", action="store_true", help="re-import them")
    sub.add_parser("start", help="start the AWS endpoint, the registry, the agent and the Docker TLS front")
    sub.add_parser("stop", help="stop them and remove the task containers")
    sub.add_parser("reset", help="forget every AWS resource and registry image")
    sub.add_parser("env", help="print the environment berth needs as `export` lines")
    seed = sub.add_parser("seed", help="create the demo account")
    seed.add_argument("--no-wait", action="store_true", help="do not wait for the services to settle")
    seed.add_argument("--envs", default="stg,prd", help="environments to create (default: stg,prd)")
    seed.add_argument("--app", default="berth-example", help="name of the app (repository, families, clusters)")
    seed.add_argument("--keep", action="store_true", help="add to the account instead of resetting it first")
    seed.add_argument("--blue-green", action="store_true", help="add `web-bg`, a copy of `web` deployed blue/green")
    seed.add_argument("--if-missing", action="store_true", help="do nothing when the demo account exists")
    seed.add_argument(
        "--account",
        default=ACCOUNT_ID,
        help=f"the account to seed in (default: {ACCOUNT_ID}; a second one: {SECOND_ACCOUNT}); "
        "its keys are AKIA<account>SBOX with the secret `testing`",
    )
    seed.add_argument("--region", default=REGION, help=f"the region to seed in (default: {REGION})")
    sub.add_parser("status", help="is it up?")
    counters = sub.add_parser("counters", help="request counts per operation")
    counters.add_argument("--clear", action="store_true")
    bench = sub.add_parser("bench", help="time a RunTask round trip and a rollout (resets the account)")
    bench.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    endpoints = Endpoints()
    return globals()[f"cmd_{args.command}"](endpoints, args)


if __name__ == "__main__":
    sys.exit(main())
