#!/usr/bin/env bash
# berth between ECS and the user: every figure of the fast path, for this checkout and, with
# `--base REV`, for an earlier commit built beside it, on the sandbox.
#
#   COMPLETED -> exit     from the moment ECS marks the last service's deployment COMPLETED (its
#                         `deployment completed` service event) to the end of `berth deploy
#                         --new --migrate skip`, at the default poll; with 0 and with 500
#                         Scheduler schedules seeded in the account (in another cluster: they
#                         are listed, not moved). Each run draws the sandbox's settle time (how
#                         long a new task runs before it counts as healthy) between its setting and one second more, so
#                         that the moment ECS completes falls anywhere between two of berth's
#                         looks, as on AWS, not at the same offset every run
#   start -> UpdateService  from the start of the same deploy (image in ECR) to its first
#                         `UpdateService`, with 0 and with 50 ms added to every AWS call of the
#                         bench's own app id
#   AWS calls             calls of one `berth deploy --new` of the demo (two services, the
#                         migration, the schedules), by operation, from the sandbox's counters
#   no-op rerun           a rerun of a deploy that finished (prd's): seconds and S3 writes
#
# Usage: benches/fast_path.sh [--runs N] [--base REV] [--release]
#   --runs N     runs per timed figure (default 3; medians are printed, with every run)
#   --base REV   also measure the berth of commit REV (built from a git worktree)
#   --release    build release binaries (slow on a cold machine); default: the dev profile
# Needs the sandbox (`sandbox/sandboxctl start`) to itself: it resets it first (all AWS state,
# so that the account holds no schedules but its own), then seeds its own app,
# `bench-fast-<time>`.
set -euo pipefail

runs=3 base="" profile=dev
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --base) base="$2"; shift 2 ;;
        --release) profile=release; shift ;;
        *) echo "unknown argument: $1 (see the usage at the top of $0)" >&2; exit 2 ;;
    esac
done
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=benches/common.sh
source benches/common.sh
bins="$root/target/bench-bins"
mkdir -p "$bins"
dir=debug
[[ $profile == release ]] && dir=release

# This checkout's berth, kept apart so that a build of the base cannot stand in for it.
cargo build --quiet --bin berth --profile "$profile"
cp "target/$dir/berth" "$bins/berth-now"
labels=(now)
if [[ -n $base ]]; then
    tree="$(mktemp -d)"
    git worktree add --quiet --detach "$tree" "$base"
    (cd "$tree" && cargo build --quiet --bin berth --profile "$profile" --target-dir "$root/target")
    cp "target/$dir/berth" "$bins/berth-base"
    git worktree remove --force "$tree"
    # The shared target folder's binary is this checkout's again.
    cargo build --quiet --bin berth --profile "$profile"
    cp "$bins/berth-now" "target/$dir/berth"
    labels=(base now)
fi

sandbox/sandboxctl start >&2
eval "$(sandbox/sandboxctl env)"
port="$BERTH_SANDBOX_PORT"
curl -s -X POST "http://127.0.0.1:$port/_sandbox/reset" >/dev/null
app="bench-fast-$(date +%s)"
sandbox/sandboxctl seed --envs stg,prd --keep --app "$app" >/dev/null
py="$root/sandbox/.venv/bin/python"

work="$(mktemp -d)"
logs="$(mktemp -d)"
settle="$(curl -s "http://127.0.0.1:$port/_sandbox/config" | "$py" -c 'import json, sys; print(json.load(sys.stdin)["settle_seconds"])')"
cleanup() {
    rm -rf "$work" "$logs"
    curl -s -X POST "http://127.0.0.1:$port/_sandbox/config" -H 'Content-Type: application/json' \
        -d "{\"settle_seconds\": $settle}" >/dev/null || true
    curl -s -X DELETE "http://127.0.0.1:$port/_sandbox/faults" >/dev/null || true
    "$py" "$root/benches/fast_path_schedules.py" remove "$app" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cp -r examples/rails-app/. "$work/"
cat > "$work/berth.toml" <<TOML
repository = "$app"
containers = ["app"]
[build]
target = "release"
[env.stg]
region = "us-east-1"
cluster = "$app-stg"
services = ["web", "devops"]
[env.prd]
region = "us-east-1"
cluster = "$app-prd"
services = ["web", "devops"]
TOML
commit_work_tree "$work"
export AWS_SDK_UA_APP_ID="$app" CI=true NO_COLOR=1
# Builds and pushes once; prd's deploy of the commit is the one every no-op rerun reruns (stg's
# deploys are new ones, `--new`).
(cd "$work" && "$bins/berth-now" deploy --env stg >/dev/null 2>&1)
(cd "$work" && "$bins/berth-now" deploy --env prd >/dev/null 2>&1)

counters() { curl -s "http://127.0.0.1:$port/_sandbox/counters?app=$app"; }
latency() {
    curl -s -X DELETE "http://127.0.0.1:$port/_sandbox/faults" >/dev/null
    if [[ $1 -gt 0 ]]; then
        curl -s -X POST "http://127.0.0.1:$port/_sandbox/faults" -H 'Content-Type: application/json' \
            -d "{\"app\": \"$app\", \"latency_ms\": $1}" >/dev/null
    fi
}

# `berth-LABEL deploy --new`: prints the seconds from the last `deployment completed` event to
# the exit, and from the start to the first UpdateService; keeps the JSON report and the log.
deploy_new() {
    local label="$1" began ended code=0
    curl -s -X POST "http://127.0.0.1:$port/_sandbox/config" -H 'Content-Type: application/json' \
        -d "{\"settle_seconds\": $("$py" -c "import random; print(round($settle + random.random(), 3))")}" >/dev/null
    began="$(date +%s.%N)"
    (cd "$work" && BERTH_LOG=berth=info "$bins/berth-$label" deploy --env stg --new --migrate skip --output json \
        >"$logs/report.json" 2>"$logs/run.log") || code=$?
    ended="$(date +%s.%N)"
    [[ $code -eq 0 ]] || { echo "berth-$label deploy exited $code:" >&2; tail -20 "$logs/run.log" >&2; exit 1; }
    "$py" "$root/benches/fast_path_schedules.py" figures "$app" "$began" "$ended" "$logs/run.log"
}

# A rerun of prd's finished deploy: seconds and S3 writes.
rerun() {
    local label="$1" before after began ended
    before="$(counters)"
    began="$(date +%s.%N)"
    (cd "$work" && "$bins/berth-$label" deploy --env prd >/dev/null 2>&1)
    ended="$(date +%s.%N)"
    after="$(counters)"
    "$py" - "$before" "$after" "$began" "$ended" <<'PY'
import json, sys
before, after = json.loads(sys.argv[1]), json.loads(sys.argv[2])
writes = after.get("s3:PutObject", 0) - before.get("s3:PutObject", 0)
print(f"{float(sys.argv[4]) - float(sys.argv[3]):.3f} {writes}")
PY
}

declare -A row
for schedules in 0 500; do
    if [[ $schedules -gt 0 ]]; then
        "$py" "$root/benches/fast_path_schedules.py" add "$app" "$schedules" >/dev/null
    fi
    for label in "${labels[@]}"; do
        for latency_ms in 0 50; do
            latency "$latency_ms"
            done_exit=() to_update=()
            for _ in $(seq "$runs"); do
                read -r completed update < <(deploy_new "$label")
                done_exit+=("$completed")
                to_update+=("$update")
            done
            latency 0
            read -r seconds writes < <(rerun "$label")
            key="$label/$schedules/$latency_ms"
            row["$key"]="COMPLETED->exit $(printf '%s\n' "${done_exit[@]}" | median) s (${done_exit[*]})"
            row["$key"]+="; start->UpdateService $(printf '%s\n' "${to_update[@]}" | median) s (${to_update[*]})"
            row["$key"]+="; no-op rerun ${seconds} s, ${writes} S3 writes"
            echo "berth $label, $schedules schedules, +$latency_ms ms per call: ${row[$key]}"
        done
    done
    # The whole demo, the migration with it: what it costs in AWS calls, at the sandbox's own
    # settle time.
    curl -s -X POST "http://127.0.0.1:$port/_sandbox/config" -H 'Content-Type: application/json' \
        -d "{\"settle_seconds\": $settle}" >/dev/null
    for label in "${labels[@]}"; do
        before="$(counters)"
        (cd "$work" && "$bins/berth-$label" deploy --env stg --new >/dev/null 2>&1)
        after="$(counters)"
        "$py" - "$label" "$schedules" "$before" "$after" <<'PY'
import json, sys
label, schedules, before, after = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
calls = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
listed = ", ".join(f"{v} {k}" for k, v in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])))
print(f"berth {label}, {schedules} schedules: AWS calls of the demo deploy: {sum(calls.values())} ({listed})")
PY
    done
done
