#!/usr/bin/env bash
# Installs the CircleCI CLI that the orb's publish jobs run, pinned to one release and checked
# against that release's sha256 before it is unpacked; a mismatch names both digests.
# Usage: .circleci/install-circleci-cli.sh [BIN_DIR]   (default ~/.local/bin, added to BASH_ENV's PATH)
set -euo pipefail
version="0.1.33826"
# From the release's `circleci-cli_<version>_checksums.txt`, for the linux_amd64 archive.
sha256="af1eed3e94b05226a48a18ed058cafb5759b6e952936901c3419b821fdf83b10"
archive="circleci-cli_${version}_linux_amd64.tar.gz"
url="https://github.com/CircleCI-Public/circleci-cli/releases/download/v$version/$archive"
bin="${1:-$HOME/.local/bin}"

if [[ "$(uname -s)/$(uname -m)" != Linux/x86_64 ]]; then
  echo "install-circleci-cli: pinned for Linux x86_64 only, this is $(uname -s)/$(uname -m)" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl --fail --silent --show-error --location --retry 3 --output "$work/$archive" "$url"
actual="$(sha256sum "$work/$archive" | cut -d ' ' -f 1)"
if [[ "$actual" != "$sha256" ]]; then
  echo "install-circleci-cli: $archive has sha256 $actual, the pinned one is $sha256; refusing to install" >&2
  exit 1
fi
tar -xzf "$work/$archive" -C "$work"
mkdir -p "$bin"
install -m 0755 "$work/circleci-cli_${version}_linux_amd64/circleci" "$bin/circleci"
if [[ -n "${BASH_ENV:-}" ]]; then
  # shellcheck disable=SC2016 # $PATH is for the later steps' shells to expand
  printf 'export PATH=%q:"$PATH"\n' "$bin" >>"$BASH_ENV"
fi
"$bin/circleci" version
