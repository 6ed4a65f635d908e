#!/usr/bin/env bats
# The `install` command's script against a local HTTP server serving fake release assets.

setup() {
  script="$BATS_TEST_DIRNAME/../src/scripts/install.sh"
  releases="$BATS_TEST_TMPDIR/releases"
  home="$BATS_TEST_TMPDIR/home"
  shims="$BATS_TEST_TMPDIR/shims"
  mkdir -p "$releases/v0.1.0" "$home" "$shims"
  for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl aarch64-apple-darwin; do
    printf '#!/bin/sh\necho "berth 0.1.0 (%s)"\n' "$target" >"$releases/v0.1.0/berth-$target"
    (cd "$releases/v0.1.0" && sha256sum "berth-$target" >"berth-$target.sha256")
  done
  # uname as the executor would answer it
  printf '#!/bin/sh\ncase "$1" in -s) echo "${FAKE_OS:-Linux}" ;; -m) echo "${FAKE_CPU:-x86_64}" ;; *) echo Linux ;; esac\n' >"$shims/uname"
  chmod +x "$shims/uname"
  port_file="$BATS_TEST_TMPDIR/port"
  python3 - "$releases" "$port_file" 2>"$BATS_TEST_TMPDIR/requests.log" <<'PY' &
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
open(sys.argv[2], "w").write(str(server.server_address[1]))
server.serve_forever()
PY
  server_pid=$!
  for _ in $(seq 50); do [[ -s "$port_file" ]] && break; sleep 0.1; done
  export ORB_STR_VERSION=0.1.0
  export ORB_STR_DOWNLOAD_URL="http://127.0.0.1:$(cat "$port_file")"
  export ORB_STR_INSTALL_DIR="~/.berth"
  export HOME="$home"
  export BASH_ENV="$BATS_TEST_TMPDIR/bash_env"
  export PATH="$shims:$PATH"
}

teardown() {
  kill "$server_pid" 2>/dev/null || true
}

downloads() {
  grep -c '"GET /v0.1.0/berth-[^ ]* HTTP' "$BATS_TEST_TMPDIR/requests.log" || true
}

@test "installs the release binary for this OS and CPU, verified, and puts it on PATH" {
  run bash "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"installed berth 0.1.0 (x86_64-unknown-linux-musl), sha256 "* ]]
  [[ "$output" == *"berth 0.1.0 (x86_64-unknown-linux-musl)" ]]
  [ -x "$home/.berth/0.1.0/berth" ]
  grep -qF "export PATH=$home/.berth/0.1.0:\"\$PATH\"" "$BASH_ENV"
  [ "$(PATH="$home/.berth/0.1.0:$PATH" berth)" = "berth 0.1.0 (x86_64-unknown-linux-musl)" ]
}

@test "picks the asset of the executor's OS and CPU (macOS arm64)" {
  FAKE_OS=Darwin FAKE_CPU=arm64 run bash "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"berth 0.1.0 (aarch64-apple-darwin)" ]]
  grep -q '"GET /v0.1.0/berth-aarch64-apple-darwin HTTP' "$BATS_TEST_TMPDIR/requests.log"
}

@test "refuses a binary whose sha256 does not match the release's checksum file" {
  echo 'echo tampered' >>"$releases/v0.1.0/berth-x86_64-unknown-linux-musl"
  run bash "$script"
  [ "$status" -eq 1 ]
  [[ "$output" == *"checksum mismatch for berth-x86_64-unknown-linux-musl of berth 0.1.0"*"refusing to install"* ]]
  [ ! -e "$home/.berth/0.1.0/berth" ]
  [ ! -s "$BASH_ENV" ]
}

@test "a cached version is used without downloading again" {
  run bash "$script"
  [ "$status" -eq 0 ]
  [ "$(downloads)" -eq 2 ]
  run bash "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"berth 0.1.0 (x86_64-unknown-linux-musl) is cached in $home/.berth/0.1.0"* ]]
  [ "$(downloads)" -eq 2 ]
}

@test "a cached binary that was changed is downloaded again" {
  run bash "$script"
  echo 'echo changed' >>"$home/.berth/0.1.0/berth"
  run bash "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"installed berth 0.1.0"* ]]
  [ "$(downloads)" -eq 4 ]
}

@test "an unknown CPU is a clear error naming it" {
  FAKE_CPU=riscv64 run bash "$script"
  [ "$status" -eq 1 ]
  [[ "$output" == *"no berth release for CPU \`riscv64\`; releases exist for x86_64 and aarch64 (arm64)"* ]]
  [ "$(downloads)" -eq 0 ]
}

@test "an unknown OS is a clear error naming it" {
  FAKE_OS=FreeBSD run bash "$script"
  [ "$status" -eq 1 ]
  [[ "$output" == *"no berth release for OS \`FreeBSD\`"* ]]
}

@test "a version that is not a release is refused before any download" {
  ORB_STR_VERSION='0.1.0; rm -rf /' run bash "$script"
  [ "$status" -eq 2 ]
  [[ "$output" == *"is not a release version such as 0.1.0"* ]]
  [ "$(downloads)" -eq 0 ]
}

@test "a v-prefixed version is refused: the version is the release's, without the tag's v" {
  ORB_STR_VERSION=v0.1.0 run bash "$script"
  [ "$status" -eq 2 ]
  [[ "$output" == *"(no \`v\`)"* ]]
  [ "$(downloads)" -eq 0 ]
}

@test "a release without the asset fails with the server's answer" {
  ORB_STR_VERSION=9.9.9 run bash "$script"
  [ "$status" -ne 0 ]
  [[ "$output" == *"/v9.9.9/berth-x86_64-unknown-linux-musl"* ]]
  [[ "$output" == *"404"* ]]
  [ ! -e "$home/.berth/9.9.9/berth" ]
}

pins() { # the ORB_STR_PINNED a published orb of 0.1.0 carries, from the served assets
  printf '0.1.0\n'
  for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl aarch64-apple-darwin; do
    printf '%s %s\n' "$target" "$(cut -d ' ' -f 1 "$releases/v0.1.0/berth-$target.sha256")"
  done
}

@test "a published orb installs its own release by the pinned sha256, not the served one" {
  export ORB_STR_PINNED="$(pins)"
  run bash "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"installed berth 0.1.0 (x86_64-unknown-linux-musl), sha256 "*" (the orb's pinned sha256)"* ]]
  [ "$(downloads)" -eq 1 ] # the binary only: its sha256 file is not trusted
}

@test "a pinned install refuses a served binary and its matching sha256 file that both changed" {
  export ORB_STR_PINNED="$(pins)"
  pinned="$(cut -d ' ' -f 1 "$releases/v0.1.0/berth-x86_64-unknown-linux-musl.sha256")"
  echo 'echo tampered' >>"$releases/v0.1.0/berth-x86_64-unknown-linux-musl"
  (cd "$releases/v0.1.0" && sha256sum berth-x86_64-unknown-linux-musl >berth-x86_64-unknown-linux-musl.sha256)
  served="$(cut -d ' ' -f 1 "$releases/v0.1.0/berth-x86_64-unknown-linux-musl.sha256")"
  run bash "$script"
  [ "$status" -eq 1 ]
  [[ "$output" == *"expected $pinned (the orb's pinned sha256), downloaded $served; refusing to install"* ]]
  [ ! -e "$home/.berth/0.1.0/berth" ]
}

@test "a pinned install never runs a cached binary that is not the pinned one: it says so and downloads" {
  run bash "$script" # cached by an unpinned (dev) orb, as a shared project cache can be
  echo 'echo poisoned' >>"$home/.berth/0.1.0/berth"
  (cd "$home/.berth/0.1.0" && sha256sum berth | sed 's/ .*/  berth/' >berth.sha256)
  export ORB_STR_PINNED="$(pins)"
  pinned="$(sed -n 's/^x86_64-unknown-linux-musl //p' <<<"$ORB_STR_PINNED")"
  cached="$(sha256sum "$home/.berth/0.1.0/berth" | cut -d ' ' -f 1)"
  : >"$BASH_ENV"
  run bash "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"the orb pins sha256 $pinned, the cached file has $cached; not running it, downloading again"* ]]
  [[ "$output" != *"poisoned"* ]]
  [ "$(sha256sum "$home/.berth/0.1.0/berth" | cut -d ' ' -f 1)" = "$pinned" ]
  [ "$(downloads)" -eq 3 ] # the dev install's two, then the binary alone
}

@test "pins apply to the orb's own version only; another version checks its release's file" {
  mkdir -p "$releases/v0.2.0"
  printf '#!/bin/sh\necho "berth 0.2.0"\n' >"$releases/v0.2.0/berth-x86_64-unknown-linux-musl"
  (cd "$releases/v0.2.0" && sha256sum berth-x86_64-unknown-linux-musl >berth-x86_64-unknown-linux-musl.sha256)
  export ORB_STR_PINNED="$(pins)"
  ORB_STR_VERSION=0.2.0 run bash "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"(berth-x86_64-unknown-linux-musl.sha256 of the release)"* ]]
}

@test "a shell without bash stops with the reason and exit 2" {
  run dash -e "$script"
  [ "$status" -eq 2 ]
  [[ "$output" == *"this step needs bash, which this image lacks"* ]]
  [ "$(downloads)" -eq 0 ]
}
