#!/usr/bin/env bash
# Builds the release binary of berth for one target, static where the target allows it, and
# writes `berth-<target>` and `berth-<target>.sha256` (sha256sum's format) into OUT.
# Usage: .circleci/release-build.sh TARGET OUT
set -euo pipefail
target="${1:?usage: release-build.sh TARGET OUT}"
out="${2:?usage: release-build.sh TARGET OUT}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tag="${CIRCLE_TAG:-}"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
if [[ -n "$tag" && "$tag" != "v$version" ]]; then
  echo "release-build: tag $tag does not match Cargo.toml's version $version" >&2
  exit 1
fi

case "$target" in
  *-linux-musl)
    sudo apt-get update -qq
    sudo apt-get install -y -qq --no-install-recommends musl-tools cmake
    ;;
  *-apple-darwin) ;;
  *)
    echo "release-build: no release build for $target" >&2
    exit 2
    ;;
esac
"$(dirname "${BASH_SOURCE[0]}")/install-rust.sh"
export PATH="$HOME/.cargo/bin:$PATH"
rustup target add "$target"
cargo build --release --locked --target "$target"

mkdir -p "$out"
cp "target/$target/release/berth" "$out/berth-$target"
if [[ "$target" == *-linux-musl ]] && file "$out/berth-$target" | grep -q "dynamically linked"; then
  echo "release-build: berth-$target is not static" >&2
  exit 1
fi
(
  cd "$out"
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "berth-$target" >"berth-$target.sha256"
  else
    shasum -a 256 "berth-$target" >"berth-$target.sha256"
  fi
  cat "berth-$target.sha256"
)
