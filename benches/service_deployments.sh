#!/usr/bin/env bash
# How soon berth tells the end of an ECS service deployment, and what waiting on one costs.
#
# Latency: seconds from ECS's verdict on the service deployment to the end of `berth deploy`
# (`on_failure = "leave"`, so that nothing follows the verdict). ECS's verdict is the moment the
# deployment left IN_PROGRESS: `finishedAt` for SUCCESSFUL and STOPPED, `rollback.startedAt` for a
# rollback (berth fails as soon as ECS starts rolling back; it does not wait for the rollback to
# end). Four endings of a blue/green `web-bg`:
#   SUCCESSFUL                        the deploy succeeds after its one-minute bake
#   ROLLBACK_SUCCESSFUL (breaker)     a crashing image, the circuit breaker rolls it back
#   ROLLBACK_SUCCESSFUL (hook)        a lifecycle hook answers FAILED at POST_SCALE_UP
#   STOPPED                           a crashing image, the breaker's rollback off
# Cost: the API calls berth makes per minute of waiting on two services (`web-bg` baking for
# 30 s, `web` rolling beside it): every look reads both services at once.
#
# Usage: benches/service_deployments.sh [runs]     (default: 3 runs of each ending)
# Needs the sandbox (`sandbox/sandboxctl start`); it seeds its own app, `bench-sd-<time>`, beside
# what is there, and sets the sandbox's `minute_seconds` (back to 60 at the end).
set -euo pipefail

runs="${1:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
app="bench-sd-$(date +%s)"
cd "$root"
# shellcheck source=benches/common.sh
source benches/common.sh
bench_app "$app" --blue-green
py="$root/sandbox/.venv/bin/python"
admin() { curl -fsS -X "$1" -H 'Content-Type: application/json' "$AWS_ENDPOINT_URL/_sandbox/$2" ${3:+-d "$3"} >/dev/null; }
trap 'admin POST config "{\"minute_seconds\": 60}"; rm -rf "$work"' EXIT
admin POST config '{"minute_seconds": 2}'

work="$(mktemp -d)"
cp -r examples/rails-app/. "$work/"
# The settings, in a file git ignores: changing them changes no commit, so no image is built.
write_config() { # $1: services, $2: extra lines
    cat > "$work/bench.toml" <<TOML
repository = "$app"
containers = ["app"]
migrate = "skip"
on_failure = "leave"
$2
[build]
target = "release"
cache = false
[env.stg]
region = "us-east-1"
cluster = "$app-stg"
services = $1
TOML
}
git -C "$work" init -q -b main
printf "bench.toml\nerr\n" >> "$work/.git/info/exclude"
git -C "$work" add -A
git -C "$work" -c user.name=bench -c user.email=bench@example.com commit -qm bench
export AWS_SDK_UA_APP_ID="$app" CI=true NO_COLOR=1

# web-bg's deployment configuration: blue/green, its bake time one minute, `$1` on top (JSON).
configure() {
    "$py" - "$app-stg" "$1" <<'PY'
import json, sys
import boto3
cluster, extra = sys.argv[1], json.loads(sys.argv[2])
config = {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1, "maximumPercent": 200, "minimumHealthyPercent": 100,
          "deploymentCircuitBreaker": {"enable": True, "rollback": True}, **extra}
boto3.client("ecs", region_name="us-east-1").update_service(cluster=cluster, service="web-bg",
                                                            deploymentConfiguration=config)
PY
}

# Seconds from ECS's verdict on web-bg's service deployment to the end of the deploy; exit code
# $1, and stderr saying $2.
verdict_to_exit() {
    local want="$1" said="$2" code=0 ended
    (cd "$work" && "$berth" deploy --env stg --config bench.toml --new >/dev/null 2>"$work/err") || code=$?
    ended="$(date +%s.%N)"
    [[ $code -eq $want ]] || { echo "berth deploy exited $code, not $want" >&2; cat "$work/err" >&2; exit 1; }
    grep -qF -- "$said" "$work/err" || { echo "berth did not say: $said" >&2; cat "$work/err" >&2; exit 1; }
    "$py" - "$app-stg" "$ended" <<'PY'
import sys
import boto3
cluster, ended = sys.argv[1], float(sys.argv[2])
ecs = boto3.client("ecs", region_name="us-east-1")
arn = ecs.describe_services(cluster=cluster, services=["web-bg"])["services"][0]["currentServiceDeployment"]
d = ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]
at = d["rollback"]["startedAt"] if "rollback" in d else d["finishedAt"]
print(f"{ended - at.timestamp():.3f}")
PY
}

measure() { # $1: label, $2: expected exit code, $3: what berth says
    local samples=() sorted
    for _ in $(seq "$runs"); do samples+=("$(verdict_to_exit "$2" "$3")"); done
    sorted="$(printf '%s\n' "${samples[@]}" | sort -n)"
    printf '%-34s min %s s, median %s s, max %s s over %s runs\n' "$1" "$(head -1 <<<"$sorted")" \
        "$(printf '%s\n' "${samples[@]}" | median)" "$(tail -1 <<<"$sorted")" "$runs"
}

echo "ECS's verdict on the service deployment -> berth exits (\`timeouts.poll\` 1s, the default):"
healthy=$'remove_environment = ["CRASH_ON_BOOT"]'
crashing=$'[environment]\nCRASH_ON_BOOT = "1"'
write_config '["web-bg"]' "$healthy"
configure '{}'
measure "SUCCESSFUL" 0 "rollout finished"
write_config '["web-bg"]' "$crashing"
measure "ROLLBACK_SUCCESSFUL (breaker)" 1 "the circuit breaker counted"
configure '{"deploymentCircuitBreaker": {"enable": true, "rollback": false}}'
measure "STOPPED" 1 "was stopped (STOPPED)"
hook="arn:aws:lambda:us-east-1:123456789012:function:$app-smoke"
admin POST hooks "{\"function\": \"$hook\", \"answers\": [{\"hookStatus\": \"FAILED\"}]}"
configure "{\"lifecycleHooks\": [{\"hookTargetArn\": \"$hook\", \"roleArn\": \"arn:aws:iam::123456789012:role/hooks\", \"lifecycleStages\": [\"POST_SCALE_UP\"]}]}"
write_config '["web-bg"]' "$healthy"
measure "ROLLBACK_SUCCESSFUL (hook)" 1 "FAILED at POST_SCALE_UP"

# The cost of waiting: two services, web-bg baking for 30 s.
configure '{}'
admin POST config '{"minute_seconds": 30}'
write_config '["web-bg", "web"]' "$healthy"
before="$(curl -fsS "$AWS_ENDPOINT_URL/_sandbox/counters?app=$app")"
report="$(cd "$work" && "$berth" deploy --env stg --config bench.toml --new --output json 2>/dev/null)"
after="$(curl -fsS "$AWS_ENDPOINT_URL/_sandbox/counters?app=$app")"
"$py" - "$before" "$after" "$report" <<'PY'
import json, sys
before, after, report = (json.loads(a) for a in sys.argv[1:4])
seconds = next(s["seconds"] for s in report["steps"] if s["step"] == "rollout")
calls = {k: after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("ecs:Describe")}
calls = {k: v for k, v in calls.items() if v}
total = sum(calls.values())
print(f"waiting on 2 services for {seconds:.0f} s: {total} ECS reads, {60 * total / seconds:.1f} a minute {calls}")
PY
