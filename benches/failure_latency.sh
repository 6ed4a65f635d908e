#!/usr/bin/env bash
# How soon berth reports a failed rollout: from the moment the sandbox's ECS marks the deployment
# failed (the circuit breaker's `deployment failed` service event) to the end of `berth deploy`,
# which by then has rolled the other service back (`on_failure = "rollback"`) and written its
# record. The end-to-end test of a crashing image checks what berth says; this measures how fast.
#
# Usage: benches/failure_latency.sh [runs]       (default: 3 runs)
#
# Every run is a new deploy (`--new`) of the same crashing image: `web` fails, ECS rolls it back.
# Needs the sandbox (`sandbox/sandboxctl start`); it seeds its own app, `bench-failure-<time>`,
# beside what is there.
set -euo pipefail

runs="${1:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
app="bench-failure-$(date +%s)"
cd "$root"
# shellcheck source=benches/common.sh
source benches/common.sh
bench_app "$app"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r examples/rails-app/. "$work/"
cat > "$work/berth.toml" <<TOML
repository = "$app"
containers = ["app"]
migrate = "skip"
[environment]
CRASH_ON_BOOT = "1"
[build]
target = "release"
cache = false
[env.stg]
region = "us-east-1"
cluster = "$app-stg"
services = ["web", "devops"]
TOML
commit_work_tree "$work"
export AWS_SDK_UA_APP_ID="$app" CI=true NO_COLOR=1

# Seconds from ECS's `deployment failed` event of `web` to the end of the deploy.
failure_to_exit() {
    local code=0 ended
    (cd "$work" && "$berth" deploy --env stg --new "$@" >/dev/null 2>&1) || code=$?
    ended="$(date +%s.%N)"
    [[ $code -eq 1 ]] || { echo "berth deploy exited $code, not 1 (the rollout failed)" >&2; exit 1; }
    sandbox/.venv/bin/python - "$app-stg" "$ended" <<'PY'
import sys
import boto3
cluster, ended = sys.argv[1], float(sys.argv[2])
ecs = boto3.client("ecs", region_name="us-east-1")
events = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]["events"]
failed = [e["createdAt"].timestamp() for e in events if "deployment failed" in e["message"]]
if not failed:
    sys.exit("no `deployment failed` event of `web`")
print(f"{ended - max(failed):.3f}")
PY
}


samples=()
for _ in $(seq "$runs"); do samples+=("$(failure_to_exit)"); done
sorted="$(printf '%s\n' "${samples[@]}" | sort -n)"
echo "ECS marks the deployment failed -> berth exits (rolled back): min $(head -1 <<<"$sorted") s," \
    "median $(printf '%s\n' "${samples[@]}" | median) s, max $(tail -1 <<<"$sorted") s over $runs runs"
