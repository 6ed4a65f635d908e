#!/usr/bin/env bash
# Publishes the packed orb: `dev:<sha>` on a branch, the tag's version on a release. Needs
# CIRCLE_TOKEN (the `orb-publishing` context) and the CircleCI CLI.
# Usage: .circleci/publish-orb.sh ORB_YML
set -euo pipefail
orb="${1:?usage: publish-orb.sh ORB_YML}"
name="berth-dev/berth"
: "${CIRCLE_TOKEN:?set CIRCLE_TOKEN in the orb-publishing context}"

circleci orb validate "$orb"
if [[ "${ORB_BOOL_PRODUCTION:-0}" == 1 || "${ORB_BOOL_PRODUCTION:-}" == true ]]; then
  tag="${CIRCLE_TAG:?a production publish runs on a vX.Y.Z tag}"
  circleci orb publish "$orb" "$name@${tag#v}" --token "$CIRCLE_TOKEN"
else
  circleci orb publish "$orb" "$name@dev:${CIRCLE_SHA1:?}" --token "$CIRCLE_TOKEN"
fi
