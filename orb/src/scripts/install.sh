#!/usr/bin/env bash
# Installs the berth release binary for this machine's OS and CPU into a folder per version that
# the orb caches. The binary, downloaded or cached, must have the sha256 that the published orb
# pins for its own release; another version (or a dev orb, which pins nothing) is checked
# against the release's sha256 file.
#
# Parameters (from the `install` command):
#   ORB_STR_VERSION       the berth version, e.g. 0.1.0 (no `v`)
#   ORB_STR_DOWNLOAD_URL  where releases are: <url>/v<version>/berth-<target>{,.sha256}
#   ORB_STR_INSTALL_DIR   the folder per version lives under it (default ~/.berth)
#   ORB_STR_PINNED        written by the release's publish: the orb's version, then one
#                         `<target> <sha256>` line per release asset; empty in a dev orb
if [ -z "${BASH_VERSION:-}" ]; then
  echo "berth/install: this step needs bash, which this image lacks; install it (Alpine: \`apk add bash\`) or use the orb's \`docker\` or \`machine\` executor" >&2
  exit 2
fi
set -euo pipefail

version="$ORB_STR_VERSION"
download_url="${ORB_STR_DOWNLOAD_URL%/}"
root="${ORB_STR_INSTALL_DIR:-}"
root="${root:-$HOME/.berth}"
root="${root/#\~/$HOME}" # a leading ~ as the shell would expand it

if [[ ! "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]]; then
  echo "berth/install: version \`$ORB_STR_VERSION\` is not a release version such as 0.1.0 (no \`v\`)" >&2
  exit 2
fi

os="$(uname -s)"
machine="$(uname -m)"
case "$machine" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *)
    echo "berth/install: no berth release for CPU \`$machine\`; releases exist for x86_64 and aarch64 (arm64)" >&2
    exit 1
    ;;
esac
case "$os" in
  Linux) target="$arch-unknown-linux-musl" ;;
  Darwin) target="$arch-apple-darwin" ;;
  *)
    echo "berth/install: no berth release for OS \`$os\`; releases exist for Linux and macOS" >&2
    exit 1
    ;;
esac

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  else
    shasum -a 256 "$1" | cut -d ' ' -f 1
  fi
}

fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl --fail --silent --show-error --location --retry 3 --output "$2" "$1"
  else
    wget --quiet --tries=3 --output-document="$2" "$1"
  fi
}

dir="$root/$version"
binary="$dir/berth"
asset="berth-$target"

# The sha256 this orb pins for the asset: only for the orb's own release.
pinned=""
pins="${ORB_STR_PINNED:-}"
if [[ -n "$pins" && "$(head -n 1 <<<"$pins")" == "$version" ]]; then
  pinned="$(awk -v t="$target" '$1 == t { print $2 }' <<<"$pins")"
  if [[ ! "$pinned" =~ ^[0-9a-f]{64}$ ]]; then
    echo "berth/install: this orb pins no sha256 for $asset of berth $version; refusing to install" >&2
    exit 1
  fi
fi

# A cached binary must hash to the pin, else to the sha256 saved beside it when it was installed.
trusted="$pinned"
if [[ -z "$trusted" && -f "$binary.sha256" ]]; then
  trusted="$(cut -d ' ' -f 1 "$binary.sha256")"
fi
cached=""
if [[ -x "$binary" && -n "$trusted" ]]; then
  cached="$(sha256_of "$binary")"
fi

if [[ -n "$cached" && "$cached" == "$trusted" ]]; then
  echo "berth $version ($target) is cached in $dir${pinned:+, sha256 $pinned as the orb pins}"
else
  if [[ -n "$pinned" && -n "$cached" ]]; then
    # A project's caches are shared and cannot be cleared one key at a time: the bad file is
    # never run, and a download checked against the pin replaces it.
    echo "berth/install: warning: the cached $binary is not berth $version: the orb pins sha256 $pinned, the cached file has $cached; not running it, downloading again" >&2
    rm -f "$binary" "$binary.sha256"
  fi
  mkdir -p "$dir"
  work="$(mktemp -d "$dir/.download.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "downloading berth $version for $target from $download_url/v$version/$asset"
  if [[ -n "$pinned" ]]; then
    expected="$pinned"
    source="the orb's pinned sha256"
  else
    fetch "$download_url/v$version/$asset.sha256" "$work/$asset.sha256"
    expected="$(cut -d ' ' -f 1 "$work/$asset.sha256")"
    source="$asset.sha256 of the release"
  fi
  fetch "$download_url/v$version/$asset" "$work/$asset"
  actual="$(sha256_of "$work/$asset")"
  if [[ ! "$expected" =~ ^[0-9a-f]{64}$ ]]; then
    echo "berth/install: $asset.sha256 of berth $version holds no sha256; refusing to install" >&2
    exit 1
  fi
  if [[ "$actual" != "$expected" ]]; then
    echo "berth/install: checksum mismatch for $asset of berth $version: expected $expected ($source), downloaded $actual; refusing to install" >&2
    exit 1
  fi
  chmod 0755 "$work/$asset"
  mv "$work/$asset" "$binary"
  echo "$expected  berth" >"$binary.sha256"
  echo "installed berth $version ($target), sha256 $expected ($source)"
fi

if [[ -n "${BASH_ENV:-}" ]]; then
  # shellcheck disable=SC2016 # $PATH is for the later steps' shells to expand
  printf 'export PATH=%q:"$PATH"\n' "$dir" >>"$BASH_ENV"
fi
"$binary" --version
