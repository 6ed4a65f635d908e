#!/usr/bin/env bash
# Publishes the packed orb: `dev:<sha>` on a branch of this repository, the tag's version on a
# release. Needs the CircleCI CLI (`.circleci/install-circleci-cli.sh`) and an API token of an
# organization admin in `CIRCLECI_CLI_TOKEN`, the variable the CLI reads (the `orb-publishing`
# context; `CIRCLE_TOKEN` is taken when only that is set). The token never reaches a command line.
# Usage: .circleci/publish-orb.sh ORB_YML
set -euo pipefail
orb="${1:?usage: publish-orb.sh ORB_YML}"
name="berth-dev/berth"

# A fork's pull request gets no contexts: there is nothing to publish with, and nothing should be.
if [[ -n "${CIRCLE_PR_REPONAME:-}" || "${CIRCLE_BRANCH:-}" == pull/* ]]; then
  echo "publish-orb: a pull request from a fork; no dev version is published" >&2
  exit 0
fi
export CIRCLECI_CLI_TOKEN="${CIRCLECI_CLI_TOKEN:-${CIRCLE_TOKEN:-}}"
if [[ -z "$CIRCLECI_CLI_TOKEN" ]]; then
  echo "publish-orb: no token: set CIRCLECI_CLI_TOKEN in the \`orb-publishing\` context" >&2
  exit 2
fi
unset CIRCLE_TOKEN

circleci orb validate "$orb"
if [[ "${ORB_BOOL_PRODUCTION:-0}" == 1 || "${ORB_BOOL_PRODUCTION:-}" == true ]]; then
  tag="${CIRCLE_TAG:?a production publish runs on a vX.Y.Z tag}"
  # A release orb pins its binaries' sha256s (orb/check with ORB_PIN): never publish one that does not.
  if ! grep -Eq '^ +ORB_STR_PINNED: \|' "$orb"; then
    echo "publish-orb: $orb pins no release binaries (ORB_STR_PINNED is empty); refusing a production publish" >&2
    exit 2
  fi
  circleci orb publish "$orb" "$name@${tag#v}"
else
  circleci orb publish "$orb" "$name@dev:${CIRCLE_SHA1:?}"
fi
