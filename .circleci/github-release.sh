#!/usr/bin/env bash
# Creates the GitHub release of the tag (if needed) and attaches every file of DIR: the binaries
# and their sha256 files. Needs GITHUB_TOKEN (the `github-release` context).
# Usage: .circleci/github-release.sh DIR
set -euo pipefail
dir="${1:?usage: github-release.sh DIR}"
tag="${CIRCLE_TAG:?a release runs on a vX.Y.Z tag}"
repo="${CIRCLE_PROJECT_USERNAME:?}/${CIRCLE_PROJECT_REPONAME:?}"
: "${GITHUB_TOKEN:?set GITHUB_TOKEN in the github-release context}"

if ! command -v gh >/dev/null 2>&1; then
  sudo apt-get update -qq
  sudo apt-get install -y -qq --no-install-recommends gh
fi
(cd "$dir" && sha256sum --check berth-*.sha256)
if ! gh release view "$tag" --repo "$repo" >/dev/null 2>&1; then
  gh release create "$tag" --repo "$repo" --title "berth ${tag#v}" --notes "berth ${tag#v}"
fi
gh release upload "$tag" --repo "$repo" --clobber "$dir"/berth-*
