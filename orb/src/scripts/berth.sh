#!/usr/bin/env bash
# Runs `berth deploy|status|rollback|continue|run` with the orb command's parameters. Every value reaches
# berth as one argument: nothing here is split, globbed or evaluated. `env`, `region`,
# `profile`, `role_arn` and `record` may name the job's variables (`${PRD_ROLE}`): they go
# through `circleci env subst`, as in CircleCI's own orbs, which replaces `$VAR` and `${VAR}`
# and runs nothing.
#
# Parameters (from the `deploy`, `status`, `rollback`, `continue` and `run` commands; empty means
# unset):
#   ORB_ENUM_SUBCOMMAND       deploy, status, rollback, continue or run
#   ORB_STR_ENV               --env
#   ORB_STR_CONFIG            --config
#   ORB_STR_WORKING_DIRECTORY the folder berth runs in
#   ORB_STR_REGION            --region
#   ORB_STR_PROFILE           --profile
#   ORB_STR_ROLE_ARN          AWS_ROLE_ARN: berth trades CircleCI's OIDC token for this role
#   ORB_STR_LOCK_WAIT         --lock-wait (deploy, rollback, continue)
#   ORB_STR_COMMIT            CIRCLE_SHA1 for berth: the commit deployed (deploy)
#   ORB_ENUM_MIGRATE          --migrate (deploy)
#   ORB_STR_ROLLOUT_TIMEOUT   --rollout-timeout (deploy)
#   ORB_STR_MIGRATION_TIMEOUT --migration-timeout (deploy)
#   ORB_BOOL_NEW              --new (deploy)
#   ORB_BOOL_RETRY_MIGRATION  --retry-migration (deploy)
#   ORB_BOOL_FORCE            --force (deploy)
#   ORB_BOOL_ANY_BRANCH       --any-branch (deploy)
#   ORB_STR_TO                --to (rollback)
#   ORB_BOOL_ROLLBACK         --rollback (continue)
#   ORB_BOOL_PAUSED_OK        a pause (berth's exit 7) ends the step well (deploy)
#   ORB_STR_SERVICE           --service (run)
#   ORB_STR_CONTAINER         --container (run)
#   ORB_STR_REVISION          --revision (run)
#   ORB_STR_CLIENT_TOKEN      --client-token (run)
#   ORB_STR_TIMEOUT           --timeout (run)
#   ORB_BOOL_DETACH           --detach (run)
#   ORB_STR_COMMAND           the command after `--`, one argument per line (run)
#   ORB_STR_RECORD            a file for berth's JSON record (stdout with --output json)
#   ORB_STR_EXTRA_ARGS        more arguments for berth, one per line

# Read by any sh up to here: a shell without bash (Alpine's) stops with the reason, not with a
# syntax error further down.
if [ -z "${BASH_VERSION:-}" ]; then
  echo "berth orb: this step needs bash, which this image lacks; install it (Alpine: \`apk add bash\`) or use the orb's \`docker\` or \`machine\` executor" >&2
  exit 2
fi
set -euo pipefail

# The job's variables in a value, as CircleCI's orbs expand them; without the CircleCI CLI (a
# run outside CircleCI) the value is kept as written, and said so.
subst() {
  if [[ "$1" != *'$'* ]]; then
    printf '%s' "$1"
  elif command -v circleci >/dev/null 2>&1; then
    printf '%s' "$1" | circleci env subst
  else
    echo "berth orb: \`circleci\` is not on PATH; \`$1\` is passed as written" >&2
    printf '%s' "$1"
  fi
}
ORB_STR_ENV="$(subst "${ORB_STR_ENV:-}")"
ORB_STR_REGION="$(subst "${ORB_STR_REGION:-}")"
ORB_STR_PROFILE="$(subst "${ORB_STR_PROFILE:-}")"
ORB_STR_ROLE_ARN="$(subst "${ORB_STR_ROLE_ARN:-}")"
ORB_STR_RECORD="$(subst "${ORB_STR_RECORD:-}")"

# Paths as a shell would take them: a leading ~ is the home folder.
home_path() { printf '%s' "${1/#\~/$HOME}"; }
ORB_STR_CONFIG="$(home_path "${ORB_STR_CONFIG:-}")"
ORB_STR_WORKING_DIRECTORY="$(home_path "${ORB_STR_WORKING_DIRECTORY:-}")"
ORB_STR_RECORD="$(home_path "${ORB_STR_RECORD:-}")"

subcommand="${ORB_ENUM_SUBCOMMAND:-}"
case "$subcommand" in
  deploy | status | rollback | continue | run) ;;
  *)
    echo "berth orb: unknown berth command \`$subcommand\`" >&2
    exit 2
    ;;
esac

args=("$subcommand")
option() { # option FLAG VALUE: the flag and its value, when the value is set
  if [[ -n "$2" ]]; then
    args+=("$1" "$2")
  fi
}
switch() { # switch FLAG VALUE: the flag alone, when the boolean is true (CircleCI passes 1 or true)
  if [[ "$2" == 1 || "$2" == true ]]; then
    args+=("$1")
  fi
}

option --env "${ORB_STR_ENV:-}"
option --config "${ORB_STR_CONFIG:-}"
option --region "${ORB_STR_REGION:-}"
option --profile "${ORB_STR_PROFILE:-}"
if [[ "$subcommand" == deploy ]]; then
  option --migrate "${ORB_ENUM_MIGRATE:-}"
  option --rollout-timeout "${ORB_STR_ROLLOUT_TIMEOUT:-}"
  option --migration-timeout "${ORB_STR_MIGRATION_TIMEOUT:-}"
  option --lock-wait "${ORB_STR_LOCK_WAIT:-}"
  switch --new "${ORB_BOOL_NEW:-}"
  switch --retry-migration "${ORB_BOOL_RETRY_MIGRATION:-}"
  switch --force "${ORB_BOOL_FORCE:-}"
  switch --any-branch "${ORB_BOOL_ANY_BRANCH:-}"
fi
if [[ "$subcommand" == rollback ]]; then
  option --to "${ORB_STR_TO:-}"
  option --lock-wait "${ORB_STR_LOCK_WAIT:-}"
fi
if [[ "$subcommand" == continue ]]; then
  switch --rollback "${ORB_BOOL_ROLLBACK:-}"
  option --lock-wait "${ORB_STR_LOCK_WAIT:-}"
fi
if [[ "$subcommand" == run ]]; then
  option --service "${ORB_STR_SERVICE:-}"
  option --container "${ORB_STR_CONTAINER:-}"
  option --revision "${ORB_STR_REVISION:-}"
  option --client-token "${ORB_STR_CLIENT_TOKEN:-}"
  option --timeout "${ORB_STR_TIMEOUT:-}"
  switch --detach "${ORB_BOOL_DETACH:-}"
fi
if [[ -n "${ORB_STR_EXTRA_ARGS:-}" ]]; then
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ -n "$line" ]]; then
      args+=("$line")
    fi
  done <<<"$ORB_STR_EXTRA_ARGS"
fi
if [[ -n "${ORB_STR_RECORD:-}" ]]; then
  args+=(--output json)
fi
# `berth run`'s command comes last, after `--`: berth takes none of it as its own flag.
if [[ "$subcommand" == run ]]; then
  args+=(--)
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ -n "$line" ]]; then
      args+=("$line")
    fi
  done <<<"${ORB_STR_COMMAND:-}"
fi

if [[ -n "${ORB_STR_ROLE_ARN:-}" ]]; then
  export AWS_ROLE_ARN="$ORB_STR_ROLE_ARN"
fi
if [[ -n "${ORB_STR_COMMIT:-}" ]]; then
  export CIRCLE_SHA1="$ORB_STR_COMMIT"
fi
if [[ -n "${ORB_STR_WORKING_DIRECTORY:-}" ]]; then
  cd "$ORB_STR_WORKING_DIRECTORY"
fi

# A record file inside a git work tree is listed in that repository's `info/exclude`, so that
# no `git status` (berth's dirty-tree check among them) counts it as a change.
hide_from_git() {
  local folder top exclude relative entry
  command -v git >/dev/null 2>&1 || return 0
  folder="$(cd "$(dirname "$1")" && pwd -P)"
  top="$(git -C "$folder" rev-parse --show-toplevel 2>/dev/null)" || return 0
  exclude="$(git -C "$folder" rev-parse --git-path info/exclude)"
  [[ "$exclude" == /* ]] || exclude="$folder/$exclude"
  relative="${folder#"$top"}"
  relative="${relative#/}"
  entry="/${relative:+$relative/}$(basename "$1")"
  entry="$(printf '%s' "$entry" | sed 's/[][*?\\]/\\&/g')"
  mkdir -p "$(dirname "$exclude")"
  grep -qxF -- "$entry" "$exclude" 2>/dev/null || printf '%s\n' "$entry" >>"$exclude"
}

if ! command -v berth >/dev/null 2>&1; then
  echo "berth orb: \`berth\` is not on PATH; run the \`berth/install\` command first" >&2
  exit 4
fi
if [[ -n "${ORB_STR_RECORD:-}" ]]; then
  mkdir -p "$(dirname "$ORB_STR_RECORD")"
  : >"$ORB_STR_RECORD"
  hide_from_git "$ORB_STR_RECORD"
  exec >"$ORB_STR_RECORD"
fi
paused_ok=""
if [[ "$subcommand" == deploy && ("${ORB_BOOL_PAUSED_OK:-}" == 1 || "${ORB_BOOL_PAUSED_OK:-}" == true) ]]; then
  paused_ok=1
fi
if [[ -z "$paused_ok" ]]; then
  exec berth "${args[@]}"
fi
code=0
berth "${args[@]}" || code=$?
if [[ $code -eq 7 ]]; then
  echo "berth orb: the deploy is paused at a pause hook (exit 7); \`paused_ok\` ends the step well: answer it with the \`continue\` command" >&2
  exit 0
fi
exit "$code"
