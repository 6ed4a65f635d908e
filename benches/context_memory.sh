#!/usr/bin/env bash
# Peak memory and wall time of sending a large build context: berth's build step
# (examples/context_bench.rs) beside `docker build` on the same engine.
#
# Usage: benches/context_memory.sh [debug|release]      (default: release)
#
# Generates a 1 GiB context of 52,429 files of 20 KiB (random data, so nothing compresses or
# dedups) in $BENCH_DIR (default: a temporary folder, removed at the end), with a Dockerfile that
# does almost nothing (`RUN echo ok`): the engine still receives the whole context, which is what
# is measured. Both sides use the classic builder (`DOCKER_BUILDKIT=0` for the CLI); berth is
# also run with BuildKit. Needs /usr/bin/time (GNU), python3 and a running Docker engine with
# `berth-sandbox/base:latest`.
#
# Build the example first; the release build takes a long time on small machines:
#   cargo build --release --example context_bench
set -euo pipefail

profile="${1:-release}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bench="$root/target/$profile/examples/context_bench"
if [[ ! -x "$bench" ]]; then
    flag=""; [[ "$profile" == release ]] && flag=" --release"
    echo "missing $bench: run \`cargo build$flag --example context_bench\` first" >&2
    exit 2
fi

if [[ ! -x /usr/bin/time ]]; then
    echo "installing GNU time (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >&2 \
        || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >&2; }
fi

files="${BENCH_FILES:-52429}"
file_size="${BENCH_FILE_SIZE:-20480}"
dir="${BENCH_DIR:-}"
if [[ -z "$dir" ]]; then
    dir="$(mktemp -d /tmp/berth-context-bench.XXXXXX)"
    trap 'rm -rf "$dir"' EXIT
fi
log="$dir/bench.log"

echo "generating $files files of $file_size bytes in $dir" >&2
python3 - "$dir/context" "$files" "$file_size" <<'PY'
import os, sys
root, files, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = os.urandom(size * 64)
for i in range(files):
    folder = os.path.join(root, "data", f"{i // 500:03d}")
    if i % 500 == 0:
        os.makedirs(folder, exist_ok=True)
    offset = (i * 7919) % (len(block) - size)
    with open(os.path.join(folder, f"{i:06d}.bin"), "wb") as f:
        # A per-file prefix keeps every file distinct.
        f.write(i.to_bytes(8, "little") + block[offset : offset + size - 8])
with open(os.path.join(root, "Dockerfile"), "w") as f:
    f.write("FROM berth-sandbox/base:latest\nRUN echo ok\n")
PY
du -sh --apparent-size "$dir/context" >&2

# Runs a command under GNU time; prints "peak_kib wall_seconds".
measure() {
    local out="$dir/time.txt"
    /usr/bin/time -v -o "$out" "$@" >>"$log" 2>&1 || { echo "failed: $* (see $log)" >&2; tail -5 "$log" >&2; exit 1; }
    local rss wall
    rss="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out")"
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out")"
    # h:mm:ss or m:ss.ss to seconds
    wall="$(awk -v t="$wall" 'BEGIN { n = split(t, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.1f", s }')"
    echo "$rss $wall"
}

row() { # name peak_kib wall
    printf "%-34s %10.1f %10s\n" "$1" "$(awk -v k="$2" 'BEGIN { print k / 1024 }')" "$3"
}

echo "measuring (log: $log)" >&2
result="$(measure "$bench" "$dir/context" classic)"
read -r berth_rss berth_wall <<<"$result"
result="$(measure "$bench" "$dir/context" buildkit)"
read -r berth_bk_rss berth_bk_wall <<<"$result"
result="$(DOCKER_BUILDKIT=0 measure docker build -q -t berth-bench:docker "$dir/context")"
read -r docker_rss docker_wall <<<"$result"
docker image rm -f berth-bench:context berth-bench:docker >/dev/null 2>&1 || true

printf "\ncontext: %s files, %s bytes each; berth built as %s\n\n" "$files" "$file_size" "$profile"
printf "%-34s %10s %10s\n" "" "peak MiB" "wall s"
row "berth ($profile, classic builder)" "$berth_rss" "$berth_wall"
row "berth ($profile, BuildKit)" "$berth_bk_rss" "$berth_bk_wall"
row "docker build (DOCKER_BUILDKIT=0)" "$docker_rss" "$docker_wall"
