#!/usr/bin/env bats
# The `deploy` job's shapes: which executor it runs on and which steps it runs, per `executor`,
# as CircleCI expands the packed orb (steps.py --job decides each `when` as CircleCI does).

setup_file() {
  python="$BATS_TEST_DIRNAME/../.venv/bin/python"
  export PYTHON="$python" TOOLS="$BATS_TEST_DIRNAME/../tools"
  export PACKED="$BATS_FILE_TMPDIR/orb.yml"
  "$python" "$TOOLS/pack.py" "$BATS_TEST_DIRNAME/../src" "$PACKED"
}

shape() { "$PYTHON" "$TOOLS/steps.py" "$PACKED" --job deploy env=stg "$@"; }
kinds() { shape "$@" | "$PYTHON" -c 'import json,sys; print(" ".join(s["kind"] for s in json.load(sys.stdin)["steps"]))'; }
field() { shape "${@:2}" | "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

@test "docker (the default): setup_remote_docker before berth, without layer caching" {
  [ "$(field 'd["executor"]')" = "{'name': 'docker', 'resource_class': 'medium'}" ]
  [ "$(kinds)" = "checkout setup_remote_docker install run" ]
  [ "$(field 'd["steps"][1].get("args")')" = None ]
}

@test "docker with docker_layer_caching and a remote engine version passes both through" {
  [ "$(field 'd["steps"][1]["args"]' docker_layer_caching=true remote_docker_version=docker24)" = "{'version': 'docker24', 'docker_layer_caching': 'True'}" ]
  [ "$(field 'd["steps"][1]["args"]' docker_layer_caching=true)" = "{'docker_layer_caching': 'True'}" ]
}

@test "machine: no setup_remote_docker, which CircleCI rejects on a machine executor" {
  [ "$(field 'd["executor"]' executor=machine resource_class=arm.large)" = "{'name': 'machine', 'resource_class': 'arm.large'}" ]
  [ "$(kinds executor=machine)" = "checkout install run" ]
}

@test "machine with docker_layer_caching stops first, saying where layer caching goes" {
  [ "$(kinds executor=machine docker_layer_caching=true)" = "run checkout install run" ]
  [ "$(field 'd["steps"][0]["name"]' executor=machine docker_layer_caching=true)" = "docker_layer_caching needs the docker executor" ]
  run bash "$BATS_TEST_DIRNAME/../src/scripts/dlc_needs_docker.sh"
  [ "$status" -eq 2 ]
  [[ "$output" == *"on \`machine\`, set \`docker_layer_caching: true\` on a machine executor of your own"* ]]
}

@test "an executor other than docker or machine is refused" {
  run shape executor=large
  [ "$status" -ne 0 ]
}

@test "the release's pack pins each asset's sha256 into the install command; a bad file is refused" {
  dist="$BATS_TEST_TMPDIR/dist"
  mkdir -p "$dist"
  for target in x86_64-unknown-linux-musl aarch64-apple-darwin; do
    echo "$target" >"$dist/berth-$target"
    (cd "$dist" && sha256sum "berth-$target" >"berth-$target.sha256")
  done
  "$PYTHON" "$TOOLS/pack.py" "$BATS_TEST_DIRNAME/../src" "$BATS_TEST_TMPDIR/orb.yml" --pin "$dist"
  pinned="$("$PYTHON" "$TOOLS/steps.py" "$BATS_TEST_TMPDIR/orb.yml" install |
    "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[0]["environment"]["ORB_STR_PINNED"], end="")')"
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$BATS_TEST_DIRNAME/../../Cargo.toml" | head -n 1)"
  expected="$(printf '%s\naarch64-apple-darwin %s\nx86_64-unknown-linux-musl %s\n' "$version" \
    "$(cut -d ' ' -f 1 "$dist/berth-aarch64-apple-darwin.sha256")" \
    "$(cut -d ' ' -f 1 "$dist/berth-x86_64-unknown-linux-musl.sha256")")"
  [ "$pinned" = "$expected" ]
  echo "not a digest  berth-x86_64-unknown-linux-musl" >"$dist/berth-x86_64-unknown-linux-musl.sha256"
  run "$PYTHON" "$TOOLS/pack.py" "$BATS_TEST_DIRNAME/../src" "$BATS_TEST_TMPDIR/bad.yml" --pin "$dist"
  [ "$status" -eq 1 ]
  [[ "$output" == *"berth-x86_64-unknown-linux-musl.sha256"* ]]
}
