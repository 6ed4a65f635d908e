#!/usr/bin/env bash
# Promotion against a rebuild: the seconds to bring the image stg ran into prd's registry in
# another account (berth's promote step: a registry-to-registry copy by digest) against the
# seconds to build and push it again on an emptied engine, and the bytes the copy moves when
# prd's registry has the base layers already (its seed image shares them).
#
# Usage: benches/promotion.sh [runs]      (default: 3)
#
# The app is examples/rails-app with $GEMS_MB MiB of gems and $ASSETS_MB MiB of assets (no
# sleeps: the build's own work only). stg is seeded in the sandbox's default account, and each
# run seeds a fresh prd in the second account (`sandboxctl seed --account`), so every copy starts
# from a registry that holds only its seed image. The rebuild empties the engine (the app's
# images and the whole build cache; the sandbox's base images stay) and builds under a tag ECR
# does not have (a build arg of its own), with `[build] cache = false`. Prints each run, then the medians.
set -euo pipefail

runs="${1:-3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
export GEMS_MB="${GEMS_MB:-64}" ASSETS_MB="${ASSETS_MB:-16}"
second=210987654321
cd "$root"
cargo build --quiet --bin berth
berth="$root/target/debug/berth"
sandbox/sandboxctl start >&2
eval "$(sandbox/sandboxctl env)"
py="$root/sandbox/.venv/bin/python"
app="bench-promote-$(date +%s)"
sandbox/sandboxctl seed --envs stg --keep --app "$app" >/dev/null

work="$(mktemp -d /tmp/berth-promotion.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# berth.toml beside the build context, not in it: each run names another prd cluster, and the
# context's tree (what names the image) stays the one stg ran.
mkdir "$work/repo"
cp -r examples/rails-app "$work/repo/app"
rm "$work/repo/app/berth.toml"
# Without `ARG BERTH_GIT_SHA` the image does not hold the commit, and the tree names it.
sed -i -e '/^ARG BERTH_GIT_SHA/d' -e 's/echo "$BERTH_GIT_SHA"/echo tree/' "$work/repo/app/Dockerfile"
cd "$work/repo"
write_config() {  # prd's app name
    cat > berth.toml <<EOF
repository = "$app"
containers = ["app"]
migrate = "skip"
[build]
context = "app"
target = "release"
cache = false
args = { GEMS_MB = "$GEMS_MB", ASSETS_MB = "$ASSETS_MB" }
[env.stg]
account = "123456789012"
region = "us-east-1"
cluster = "$app-stg"
services = ["web", "devops"]
[env.prd]
account = "$second"
region = "us-east-1"
repository = "$1"
cluster = "$1-prd"
services = ["web", "devops"]
promote_from = "stg"
EOF
}
write_config "$app"
commit_work_tree .
"$berth" deploy --env stg --output json > "$work/stg.json" 2> "$work/stg.log" || { tail -30 "$work/stg.log" >&2; exit 1; }

# stg's account shares its records and its repository with prd's, as its Terraform would.
"$py" - "$app" "$second" <<'PY'
import json, sys, boto3
app, reader = sys.argv[1:]
principal = {"AWS": f"arn:aws:iam::{reader}:root"}
bucket = "berth-state-123456789012-us-east-1"
boto3.client("s3", region_name="us-east-1").put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [
    {"Effect": "Allow", "Principal": principal, "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"},
    {"Effect": "Allow", "Principal": principal, "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
]}))
boto3.client("ecr", region_name="us-east-1").set_repository_policy(repositoryName=app, policyText=json.dumps({"Statement": [
    {"Effect": "Allow", "Principal": principal,
     "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]},
]}))
PY

results="$work/results"
: > "$results"
for run in $(seq 1 "$runs"); do
    # A fresh prd, in the second account: its own repository, holding only its seed image (which
    # shares the base layer).
    prd="$app-p$run"
    "$root/sandbox/sandboxctl" seed --envs prd --keep --app "$prd" --account "$second" >/dev/null
    write_config "$prd"
    git -c user.name=bench -c user.email=bench@example.com commit -qam "prd $run"
    AWS_ACCESS_KEY_ID="AKIA${second}SBOX" "$berth" deploy --env prd --any-branch --new --output json \
        > "$work/prd.json" 2> "$work/prd.log" || { tail -30 "$work/prd.log" >&2; exit 1; }
    python3 - "$work/prd.json" >> "$results" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
seconds = {step["step"]: step["seconds"] for step in record["steps"]}
copied = record["promoted"]["copied"] or {}
print(f"promote\t{seconds['promote']:.2f}\t{copied.get('blobs_copied', 0)}\t{copied.get('bytes_copied', 0)}\t{copied.get('blobs_present', 0)}")
PY
    tail -1 "$results" >&2
done

registry="$("$py" -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))["registry"])' \
    "$AWS_ENDPOINT_URL/_sandbox/health")"
tag="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"]["tag"])' "$work/stg.json")"
for run in $(seq 1 "$runs"); do
    for id in $(docker image ls -q --filter "reference=$registry/$app" | sort -u); do
        docker image rm -f "$id" >/dev/null 2>&1 || true
    done
    docker builder prune -af >/dev/null
    # A build arg of its own makes a tag ECR does not have: the same work, built again.
    sed -i -E "s/^args = \{ (REBUILD = \"[0-9]+\", )?/args = { REBUILD = \"$run\", /" berth.toml
    git -c user.name=bench -c user.email=bench@example.com commit -qam "rebuild $run"
    "$berth" deploy --env stg --any-branch --new --output json > "$work/re.json" 2> "$work/re.log" \
        || { tail -30 "$work/re.log" >&2; exit 1; }
    python3 - "$work/re.json" >> "$results" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
seconds = {step["step"]: step["seconds"] for step in record["steps"]}
print(f"rebuild\t{seconds['build'] + seconds['push']:.2f}")
PY
    tail -1 "$results" >&2
done

image_bytes="$("$py" - "$registry" "$app" "$tag" <<'PY'
import base64, sys, boto3, requests
registry, app, tag = sys.argv[1:]
token = boto3.client("ecr", region_name="us-east-1").get_authorization_token()
user, password = base64.b64decode(token["authorizationData"][0]["authorizationToken"]).decode().split(":", 1)
manifest = requests.get(f"http://{registry}/v2/{app}/manifests/{tag}",
    headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}, auth=(user, password), timeout=10).json()
print(manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"]))
PY
)"
promote="$(awk -F'\t' '$1 == "promote" {print $2}' "$results" | median)"
rebuild="$(awk -F'\t' '$1 == "rebuild" {print $2}' "$results" | median)"
moved="$(awk -F'\t' '$1 == "promote" {print $4}' "$results" | median)"
present="$(awk -F'\t' '$1 == "promote" {print $5}' "$results" | median)"
echo "image: $image_bytes bytes (config and layers, compressed), gems $GEMS_MB MiB, assets $ASSETS_MB MiB"
echo "promote to another account (median of $runs): ${promote}s, $moved bytes moved, $present blobs there already"
echo "rebuild and push on an emptied engine (median of $runs): ${rebuild}s"
python3 -c "print(f'ratio rebuild/promote: {float(\"$rebuild\") / max(float(\"$promote\"), 0.001):.1f}x')"
