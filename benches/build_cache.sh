#!/usr/bin/env bash
# Build times on an empty engine, as on a fresh CI machine: berth's cache from ECR against no
# cache, and against `docker build --cache-from`.
#
# Usage: benches/build_cache.sh [debug|release]      (default: debug)
#
# The app is examples/rails-app at a real app's size: its `gems` stage writes $GEMS_MB MiB and
# sleeps $GEMS_SECONDS (bundle install), its `assets` stage $ASSETS_MB MiB and $ASSETS_SECONDS
# (assets:precompile); the release stage is thin. Each run deploys it to its own copy of the
# sandbox's demo account (services scaled to 0, so no task holds an image) and prints, per run,
# the build and push seconds, the steps cached and run, and the bytes of cached layers pulled:
#   1. cold: the first build and push;
#   2. a one-line change to app/models/user.rb, with the app's images and the engine's build
#      cache removed first (the sandbox's base images stay: nothing can be pulled here), built
#      by berth with its cache from ECR;
#   3. the same with `[build] cache = false`;
#   4. the same with the Docker CLI: a cold `docker build` and push, then the one-line change
#      on an empty engine, `docker pull` of the last image and `docker build --cache-from` it
#      (the classic builder: this engine has no buildx).
# Almost all of the time is the engine's, so the debug binary measures the same as a release one.
# It empties the engine's whole build cache (`docker builder prune -af`) before each run.
set -euo pipefail

profile="${1:-debug}"
root="$(cd "$(dirname "$0")/.." && pwd)"
berth="$root/target/$profile/berth"
if [[ ! -x "$berth" ]]; then
    flag=""; [[ "$profile" == release ]] && flag=" --release"
    echo "missing $berth: run \`cargo build$flag --bin berth\` first" >&2
    exit 2
fi
export GEMS_MB="${GEMS_MB:-240}" GEMS_SECONDS="${GEMS_SECONDS:-50}"
export ASSETS_MB="${ASSETS_MB:-40}" ASSETS_SECONDS="${ASSETS_SECONDS:-20}"

"$root/sandbox/sandboxctl" start >&2
eval "$("$root/sandbox/sandboxctl" env)"
py="$root/sandbox/.venv/bin/python"
app="bench-cache-$(date +%s)"
"$root/sandbox/sandboxctl" seed --app "$app" --keep --envs stg >/dev/null
registry="$("$py" -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))["registry"])' \
    "$AWS_ENDPOINT_URL/_sandbox/health")"

work="$(mktemp -d /tmp/berth-build-cache.XXXXXX)"
export DOCKER_CONFIG="$work/docker-config"   # the CLI's login stays in here
trap 'rm -rf "$work"' EXIT
cp -r "$root/examples/rails-app" "$work/app"
cd "$work/app"
cat > berth.toml <<EOF
repository = "$app"
containers = ["app"]
migrate = "skip"
[build]
target = "release"
args = { GEMS_MB = "$GEMS_MB", GEMS_SECONDS = "$GEMS_SECONDS", ASSETS_MB = "$ASSETS_MB", ASSETS_SECONDS = "$ASSETS_SECONDS" }
[env.stg]
region = "us-east-1"
cluster = "$app-stg"
services = ["web", "devops"]
EOF
git init -q -b develop && git add -A && git -c user.name=bench -c user.email=bench@example.com commit -qm app
commit() { git -c user.name=bench -c user.email=bench@example.com commit -qam "$1"; }
change() { echo "# $1" >> app/models/user.rb; commit "$1"; }

"$py" - "$app" <<'PY'
import sys, time, boto3
ecs = boto3.client("ecs", region_name="us-east-1")
cluster = f"{sys.argv[1]}-stg"
for service in ("web", "devops"):
    ecs.update_service(cluster=cluster, service=service, desiredCount=0)
deadline = time.monotonic() + 120
def live():  # tasks whose containers may still hold the images
    stopping = ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]
    described = ecs.describe_tasks(cluster=cluster, tasks=stopping)["tasks"] if stopping else []
    return ecs.list_tasks(cluster=cluster)["taskArns"] + [
        task["taskArn"] for task in described if task["lastStatus"] != "STOPPED"
    ]
while live():
    if time.monotonic() > deadline:
        sys.exit(f"the tasks of {cluster} did not stop")
    time.sleep(1)
PY

# The app's images and the engine's whole build cache; the base images stay.
# (An image a task container still uses stays; the services are scaled to 0, so none once their
# tasks have stopped.)
empty_engine() {
    local id
    for id in $(docker image ls -q --filter "reference=$registry/$app" | sort -u); do
        docker image rm -f "$id" >/dev/null 2>&1 || echo "kept image $id: a container uses it" >&2
    done
    docker builder prune -af >/dev/null
}

results="$work/results"
: > "$results"
deploy() {  # label
    local out="$work/$1.json"
    if ! "$berth" deploy --env stg --any-branch --output json > "$out" 2> "$work/$1.log"; then
        tail -30 "$work/$1.log" >&2
        exit 1
    fi
    python3 - "$1" "$out" >> "$results" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
record = json.load(open(path))
seconds = {step["step"]: step["seconds"] for step in record["steps"]}
build = record["build"]
print(f"{label}\t{seconds['build']:.1f}\t{seconds['push']:.1f}\t{build['steps_cached']}\t{build['steps_run']}\t{build['pulled_bytes']}\t{build['pulled_seconds']}")
PY
    tail -1 "$results" >&2
}

echo "cold build and push (gems $GEMS_MB MiB + ${GEMS_SECONDS}s, assets $ASSETS_MB MiB + ${ASSETS_SECONDS}s)" >&2
empty_engine
deploy cold
change "one line"
empty_engine
deploy "warm, berth cache"
sed -i 's/^\[build\]$/[build]\ncache = false/' berth.toml
commit "no cache"
change "another line"
empty_engine
deploy "warm, cache = false"

# The Docker CLI's way, in the same repository: a cold build and push, then --cache-from.
"$py" - "$registry" <<'PY' | docker login -u AWS --password-stdin "$registry" >/dev/null
import base64, sys, boto3
token = boto3.client("ecr", region_name="us-east-1").get_authorization_token()
print(base64.b64decode(token["authorizationData"][0]["authorizationToken"]).decode().split(":", 1)[1])
PY
layer_bytes() {  # tag: the compressed size of its layers, which `docker pull` reads
    "$py" - "$registry" "$app" "$1" <<'PY'
import base64, sys, boto3, requests
registry, app, tag = sys.argv[1:]
token = boto3.client("ecr", region_name="us-east-1").get_authorization_token()
user, password = base64.b64decode(token["authorizationData"][0]["authorizationToken"]).decode().split(":", 1)
manifest = requests.get(
    f"http://{registry}/v2/{app}/manifests/{tag}",
    headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    auth=(user, password),
    timeout=10,
).json()
print(sum(layer["size"] for layer in manifest["layers"]))
PY
}
args=(--target release --build-arg "GEMS_MB=$GEMS_MB" --build-arg "GEMS_SECONDS=$GEMS_SECONDS"
      --build-arg "ASSETS_MB=$ASSETS_MB" --build-arg "ASSETS_SECONDS=$ASSETS_SECONDS")
docker_run() {  # label tag [cache image]
    local label="$1" tag="$2" from="${3:-}" pulled=0 pull_seconds=0 started ended
    if [[ -n "$from" ]]; then
        started="$(date +%s.%N)"
        docker pull -q "$from" >/dev/null
        ended="$(date +%s.%N)"
        pull_seconds="$(python3 -c "print(round($ended - $started, 1))")"
        pulled="$(layer_bytes "${from##*:}")"
    fi
    started="$(date +%s.%N)"
    if ! DOCKER_BUILDKIT=0 docker build "${args[@]}" ${from:+--cache-from "$from"} \
        -t "$registry/$app:$tag" . > "$work/$tag.log" 2>&1; then
        tail -30 "$work/$tag.log" >&2
        exit 1
    fi
    ended="$(date +%s.%N)"
    local build_seconds
    build_seconds="$(python3 -c "print(round($ended - $started + $pull_seconds, 1))")"
    started="$(date +%s.%N)"
    docker push -q "$registry/$app:$tag" >/dev/null
    ended="$(date +%s.%N)"
    python3 - "$label" "$work/$tag.log" "$build_seconds" "$(python3 -c "print(round($ended - $started, 1))")" \
        "$pulled" "$pull_seconds" >> "$results" <<'PY'
import sys
label, log, build, push, pulled, pull_seconds = sys.argv[1:]
lines = open(log).read().splitlines()
steps = [i for i, line in enumerate(lines) if line.startswith("Step ") and " : FROM " not in line]
cached = sum(1 for i in steps if i + 1 < len(lines) and "Using cache" in lines[i + 1])
print(f"{label}\t{build}\t{push}\t{cached}\t{len(steps) - cached}\t{pulled}\t{pull_seconds}")
PY
    tail -1 "$results" >&2
}
change "docker cold"
empty_engine
docker_run "docker build, cold" docker-cold
change "docker one line"
empty_engine
docker_run "docker build --cache-from" docker-warm "$registry/$app:docker-cold"

echo
python3 - "$results" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
print(f"{'run':<28} {'build s':>8} {'push s':>7} {'cached':>7} {'run':>4} {'pulled':>11} {'pull s':>7}")
for label, build, push, cached, run, pulled, pull_s in rows:
    print(f"{label:<28} {float(build):>8.1f} {float(push):>7.1f} {cached:>7} {run:>4} "
          f"{int(pulled) / 2**20:>7.1f} MiB {float(pull_s):>7.1f}")
by = {row[0]: float(row[1]) for row in rows}
cold = by["cold"]
print(f"\nwarm with berth's cache / cold: {by['warm, berth cache'] / cold:.0%}"
      f"   warm without / cold: {by['warm, cache = false'] / cold:.0%}"
      f"   docker --cache-from / docker cold: {by['docker build --cache-from'] / by['docker build, cold']:.0%}")
PY
