#!/usr/bin/env bash
# How long berth takes from its start to its first `UpdateService`, with and without 50 ms added
# to every AWS call by the sandbox: the lookups before the rollout (ECR, the services, every
# family's revisions) show up as the difference.
#
# Usage: benches/lookup_latency.sh [runs]       (default: 5 runs per latency)
#
# Each run is a new deploy (`--new`) of an image already in ECR, so it reads what a deploy reads,
# registers revisions and calls `UpdateService`; the time is read from berth's own log line
# (`BERTH_LOG=berth=info`) against the moment the process started. Needs the sandbox
# (`sandbox/sandboxctl start`); it seeds its own app, `bench-latency-<time>`, beside what is there.
set -euo pipefail

runs="${1:-5}"
root="$(cd "$(dirname "$0")/.." && pwd)"
app="bench-latency-$(date +%s)"
cd "$root"
cargo build --quiet --bin berth
berth="$root/target/debug/berth"
sandbox/sandboxctl start >&2
eval "$(sandbox/sandboxctl env)"
port="$BERTH_SANDBOX_PORT"
sandbox/sandboxctl seed --envs stg --keep --app "$app" >/dev/null

work="$(mktemp -d)"
logs="$(mktemp -d)"
trap 'rm -rf "$work" "$logs"; curl -s -X DELETE "http://127.0.0.1:$port/_sandbox/faults" >/dev/null' EXIT
cp -r examples/rails-app/. "$work/"
cat > "$work/berth.toml" <<TOML
repository = "$app"
containers = ["app"]
migrate = "skip"
[build]
target = "release"
[env.stg]
region = "us-east-1"
cluster = "$app-stg"
services = ["web", "devops"]
TOML
git -C "$work" init -q -b main
git -C "$work" add -A
git -C "$work" -c user.name=bench -c user.email=bench@example.com commit -qm bench

export AWS_SDK_UA_APP_ID="$app" CI=true NO_COLOR=1
(cd "$work" && "$berth" deploy --env stg >/dev/null 2>&1) # builds and pushes once

# Seconds from the start of `berth deploy --new` to its first UpdateService.
to_update_service() {
    local log="$logs/run.log" began
    began="$(date +%s.%N)"
    (cd "$work" && BERTH_LOG=berth=info "$berth" deploy --env stg --new >/dev/null 2>"$log") || true
    python3 - "$log" "$began" <<'PY'
import datetime, re, sys
log, began = sys.argv[1], float(sys.argv[2])
for line in open(log):
    if "calling UpdateService" in line:
        stamp = re.match(r"(\S+Z)", line).group(1)
        at = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        print(f"{at - began:.3f}")
        break
else:
    sys.exit(f"no UpdateService in {log}:\n" + open(log).read()[-2000:])
PY
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A figures
for latency in 0 50; do
    curl -s -X DELETE "http://127.0.0.1:$port/_sandbox/faults" >/dev/null
    if [[ $latency -gt 0 ]]; then
        curl -s -X POST "http://127.0.0.1:$port/_sandbox/faults" -H 'Content-Type: application/json' \
            -d "{\"app\": \"$app\", \"latency_ms\": $latency}" >/dev/null
    fi
    samples=()
    for _ in $(seq "$runs"); do samples+=("$(to_update_service)"); done
    figures[$latency]="$(printf '%s\n' "${samples[@]}" | median)"
    echo "latency ${latency} ms per call: start to UpdateService, median of $runs: ${figures[$latency]} s (runs: ${samples[*]})"
done
awk -v a="${figures[0]}" -v b="${figures[50]}" \
    'BEGIN {printf "added by 50 ms per call: %.3f s (%.1f sequential calls)\n", b - a, (b - a) / 0.05}'
