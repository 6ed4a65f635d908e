#!/usr/bin/env bats
# The script behind the `deploy`, `status`, `rollback`, `continue` and `run` commands: every parameter reaches berth
# as one argument, unchanged, with a fake `berth` that records its arguments and environment.

# A PATH without the CircleCI CLI, as outside CircleCI, also when these tests run in a CircleCI
# job (which has `circleci` on its PATH): a folder that holds it is replaced by links to the rest.
setup_file() {
  local folder farm entry path=""
  for folder in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    if [ -e "$folder/circleci" ]; then
      farm="$BATS_FILE_TMPDIR/path$folder"
      mkdir -p "$farm"
      for entry in "$folder"/*; do
        [ "${entry##*/}" = circleci ] || ln -s "$entry" "$farm/"
      done
      folder="$farm"
    fi
    path="${path:+$path:}$folder"
  done
  export PATH_WITHOUT_CIRCLECI="$path"
}

setup() {
  script="$BATS_TEST_DIRNAME/../src/scripts/berth.sh"
  bin="$BATS_TEST_TMPDIR/bin"
  mkdir -p "$bin"
  # One argument per line, NUL-free; then the two variables berth takes from the orb.
  cat >"$bin/berth" <<'FAKE'
#!/usr/bin/env bash
{
  for arg in "$@"; do printf 'arg=%s\n' "$arg"; done
  printf 'pwd=%s\n' "$PWD"
  printf 'CIRCLE_SHA1=%s\n' "${CIRCLE_SHA1-<unset>}"
  printf 'AWS_ROLE_ARN=%s\n' "${AWS_ROLE_ARN-<unset>}"
} >"$BERTH_FAKE_LOG"
echo '{"deploy_id":"stg-abc"}'
exit "${BERTH_FAKE_EXIT:-0}"
FAKE
  chmod +x "$bin/berth"
  export PATH="$bin:$PATH_WITHOUT_CIRCLECI"
  export BERTH_FAKE_LOG="$BATS_TEST_TMPDIR/berth.log"
  export ORB_ENUM_SUBCOMMAND=deploy ORB_STR_ENV=stg
  unset CIRCLE_SHA1 AWS_ROLE_ARN
}

args() { sed -n 's/^arg=//p' "$BERTH_FAKE_LOG"; }

@test "without the CircleCI CLI, values with spaces, =, commas, quotes and \$ pass through unchanged" {
  export ORB_STR_ENV='stg west'
  export ORB_STR_CONFIG='conf/berth "blue",v=2.toml'
  export ORB_STR_LOCK_WAIT="15m'"
  export ORB_STR_PROFILE='$HOME'
  export ORB_STR_REGION='$(touch pwned)'
  export ORB_STR_ROLE_ARN='arn:aws:iam::123456789012:role/deploy,=$x'
  export ORB_STR_COMMIT='abc$1 `id`'
  run bash "$script"
  [ "$status" -eq 0 ]
  expected=(deploy --env 'stg west' --config 'conf/berth "blue",v=2.toml' --region '$(touch pwned)'
    --profile '$HOME' --lock-wait "15m'")
  [ "$(args)" = "$(printf '%s\n' "${expected[@]}")" ]
  grep -qxF 'AWS_ROLE_ARN=arn:aws:iam::123456789012:role/deploy,=$x' "$BERTH_FAKE_LOG"
  grep -qxF 'CIRCLE_SHA1=abc$1 `id`' "$BERTH_FAKE_LOG"
  [ ! -e pwned ] && [ ! -e "$BATS_TEST_TMPDIR/pwned" ]
}

@test "deploy maps every typed parameter to its flag" {
  export ORB_ENUM_MIGRATE=before ORB_STR_ROLLOUT_TIMEOUT=20m ORB_STR_MIGRATION_TIMEOUT=45m
  export ORB_BOOL_NEW=1 ORB_BOOL_RETRY_MIGRATION=true ORB_BOOL_FORCE=0 ORB_BOOL_ANY_BRANCH=1
  run bash "$script"
  [ "$status" -eq 0 ]
  expected=(deploy --env stg --migrate before --rollout-timeout 20m --migration-timeout 45m --new
    --retry-migration --any-branch)
  [ "$(args)" = "$(printf '%s\n' "${expected[@]}")" ]
  grep -qxF 'CIRCLE_SHA1=<unset>' "$BERTH_FAKE_LOG"
  grep -qxF 'AWS_ROLE_ARN=<unset>' "$BERTH_FAKE_LOG"
}

@test "extra arguments are one per line, each kept whole" {
  export ORB_STR_EXTRA_ARGS=$'--lock-wait\n10m 30s\n\n--allow-dirty'
  run bash "$script"
  [ "$status" -eq 0 ]
  [ "$(args)" = "$(printf '%s\n' deploy --env stg --lock-wait '10m 30s' --allow-dirty)" ]
}

@test "empty parameters add nothing" {
  export ORB_STR_CONFIG= ORB_STR_REGION= ORB_STR_PROFILE= ORB_STR_ROLE_ARN= ORB_STR_COMMIT=
  export ORB_ENUM_MIGRATE= ORB_STR_LOCK_WAIT= ORB_BOOL_NEW=0 ORB_BOOL_FORCE=false ORB_STR_EXTRA_ARGS=
  run bash "$script"
  [ "$status" -eq 0 ]
  [ "$(args)" = "$(printf '%s\n' deploy --env stg)" ]
}

@test "a record file gets berth's JSON on stdout" {
  export ORB_STR_RECORD="$BATS_TEST_TMPDIR/out/deploy.json"
  run bash "$script"
  [ "$status" -eq 0 ]
  [ "$(cat "$ORB_STR_RECORD")" = '{"deploy_id":"stg-abc"}' ]
  [ "$(args | tail -n 2)" = "$(printf '%s\n' --output json)" ]
}

@test "berth's exit code is the step's" {
  BERTH_FAKE_EXIT=5 run bash "$script"
  [ "$status" -eq 5 ]
}

@test "runs in the working directory" {
  mkdir -p "$BATS_TEST_TMPDIR/app dir"
  ORB_STR_WORKING_DIRECTORY="$BATS_TEST_TMPDIR/app dir" run bash "$script"
  [ "$status" -eq 0 ]
  grep -qxF "pwd=$BATS_TEST_TMPDIR/app dir" "$BERTH_FAKE_LOG"
}

@test "a leading ~ in a path is the home folder, as in a shell" {
  mkdir -p "$BATS_TEST_TMPDIR/home/project"
  HOME="$BATS_TEST_TMPDIR/home" ORB_STR_WORKING_DIRECTORY='~/project' ORB_STR_RECORD='~/out/deploy.json' \
    ORB_STR_CONFIG='~/berth.toml' run bash "$script"
  [ "$status" -eq 0 ]
  grep -qxF "pwd=$BATS_TEST_TMPDIR/home/project" "$BERTH_FAKE_LOG"
  [ -s "$BATS_TEST_TMPDIR/home/out/deploy.json" ]
  [[ "$(args)" == *"--config"$'\n'"$BATS_TEST_TMPDIR/home/berth.toml"* ]]
}

@test "rollback passes --to and --lock-wait; status passes neither deploy flag" {
  ORB_ENUM_SUBCOMMAND=rollback ORB_STR_TO='stg-1a2b3c4-deadbeef' ORB_STR_LOCK_WAIT=5m ORB_BOOL_NEW=1 run bash "$script"
  [ "$status" -eq 0 ]
  [ "$(args)" = "$(printf '%s\n' rollback --env stg --to stg-1a2b3c4-deadbeef --lock-wait 5m)" ]
  ORB_ENUM_SUBCOMMAND=status ORB_STR_LOCK_WAIT=5m ORB_ENUM_MIGRATE=skip run bash "$script"
  [ "$status" -eq 0 ]
  [ "$(args)" = "$(printf '%s\n' status --env stg)" ]
}

@test "continue passes --rollback and --lock-wait" {
  ORB_ENUM_SUBCOMMAND=continue ORB_BOOL_ROLLBACK=true ORB_STR_LOCK_WAIT=5m ORB_STR_TO=x run bash "$script"
  [ "$status" -eq 0 ]
  [ "$(args)" = "$(printf '%s\n' continue --env stg --rollback --lock-wait 5m)" ]
  ORB_ENUM_SUBCOMMAND=continue ORB_BOOL_ROLLBACK=false run bash "$script"
  [ "$(args)" = "$(printf '%s\n' continue --env stg)" ]
}

@test "paused_ok ends a paused deploy's step well, and no other failure" {
  BERTH_FAKE_EXIT=7 ORB_ENUM_SUBCOMMAND=deploy ORB_BOOL_PAUSED_OK=1 run bash "$script"
  [ "$status" -eq 0 ]
  [[ "$output" == *"paused at a pause hook"* ]]
  BERTH_FAKE_EXIT=1 ORB_ENUM_SUBCOMMAND=deploy ORB_BOOL_PAUSED_OK=1 run bash "$script"
  [ "$status" -eq 1 ]
  BERTH_FAKE_EXIT=7 ORB_ENUM_SUBCOMMAND=deploy run bash "$script"
  [ "$status" -eq 7 ]
  BERTH_FAKE_EXIT=7 ORB_ENUM_SUBCOMMAND=deploy ORB_BOOL_PAUSED_OK=1 ORB_STR_RECORD="$BATS_TEST_TMPDIR/r.json" run bash "$script"
  [ "$status" -eq 0 ]
  [ -s "$BATS_TEST_TMPDIR/r.json" ]
}

@test "an unknown berth command is refused" {
  ORB_ENUM_SUBCOMMAND='deploy; rm -rf /' run bash "$script"
  [ "$status" -eq 2 ]
  [[ "$output" == *"unknown berth command"* ]]
}

@test "without berth on PATH the step says to install it" {
  PATH="$PATH_WITHOUT_CIRCLECI" run bash "$script"
  [ "$status" -eq 4 ]
  [[ "$output" == *"run the \`berth/install\` command first"* ]]
}

@test "env, region, profile, role_arn and record expand the job's variables with circleci env subst" {
  export PATH="$BATS_TEST_DIRNAME/../../sandbox/bin:$PATH" # the stand-in CircleCI CLI
  export PRD_ROLE='arn:aws:iam::210987654321:role/deploy' REGION_NAME=eu-west-1 ENV_NAME=prd
  export ORB_STR_ROLE_ARN='${PRD_ROLE}' ORB_STR_REGION='$REGION_NAME' ORB_STR_ENV='${ENV_NAME}'
  export ORB_STR_PROFILE='$(touch pwned)' ORB_STR_RECORD="$BATS_TEST_TMPDIR/\${ENV_NAME}.json"
  run bash "$script"
  [ "$status" -eq 0 ]
  [ "$(args)" = "$(printf '%s\n' deploy --env prd --region eu-west-1 --profile '$(touch pwned)' --output json)" ]
  grep -qxF 'AWS_ROLE_ARN=arn:aws:iam::210987654321:role/deploy' "$BERTH_FAKE_LOG"
  [ -s "$BATS_TEST_TMPDIR/prd.json" ]
  [ ! -e pwned ] && [ ! -e "$BATS_TEST_TMPDIR/pwned" ]
}

@test "without the CircleCI CLI a value with \$ is passed as written, and the step says so" {
  ORB_STR_ROLE_ARN='${PRD_ROLE}' run bash "$script"
  [ "$status" -eq 0 ]
  grep -qxF 'AWS_ROLE_ARN=${PRD_ROLE}' "$BERTH_FAKE_LOG"
  [[ "$output" == *"\`circleci\` is not on PATH; \`\${PRD_ROLE}\` is passed as written"* ]]
}

@test "a record file inside the work tree is kept out of git's changes" {
  repo="$BATS_TEST_TMPDIR/app"
  mkdir -p "$repo"
  git -C "$repo" init -q
  git -C "$repo" -c user.name=t -c user.email=t@t commit -q --allow-empty -m app
  ORB_STR_WORKING_DIRECTORY="$repo" ORB_STR_RECORD='out/deploy [1].json' run bash "$script"
  [ "$status" -eq 0 ]
  [ -s "$repo/out/deploy [1].json" ]
  [ -z "$(git -C "$repo" status --porcelain --untracked-files=normal)" ]
  # A second run adds no second line.
  ORB_STR_WORKING_DIRECTORY="$repo" ORB_STR_RECORD='out/deploy [1].json' run bash "$script"
  [ "$(grep -c 'deploy' "$repo/.git/info/exclude")" -eq 1 ]
}

@test "a shell without bash stops with the reason and exit 2" {
  for sh in dash "busybox sh"; do
    command -v "${sh%% *}" >/dev/null || continue
    run $sh -e "$script"
    [ "$status" -eq 2 ]
    [[ "$output" == *"this step needs bash, which this image lacks"* ]]
    [ ! -e "$BERTH_FAKE_LOG" ]
  done
}

@test "run passes its flags, then the command after --, one argument per line, as written" {
  export ORB_ENUM_SUBCOMMAND=run ORB_STR_SERVICE=devops ORB_STR_CONTAINER=app ORB_STR_REVISION=15
  export ORB_STR_CLIENT_TOKEN='backfill-7' ORB_STR_TIMEOUT=2h ORB_BOOL_DETACH=true
  export ORB_STR_RECORD="$BATS_TEST_TMPDIR/run.json" ORB_BOOL_NEW=1
  export ORB_STR_COMMAND=$'bin/rails\nrunner\nputs "a b" $HOME; `id`\n'
  run bash "$script"
  [ "$status" -eq 0 ]
  expected=(run --env stg --service devops --container app --revision 15 --client-token backfill-7
    --timeout 2h --detach --output json -- bin/rails runner 'puts "a b" $HOME; `id`')
  [ "$(args)" = "$(printf '%s\n' "${expected[@]}")" ]
}

@test "run ends with the command's exit code" {
  export ORB_ENUM_SUBCOMMAND=run ORB_STR_COMMAND='false' BERTH_FAKE_EXIT=42
  run bash "$script"
  [ "$status" -eq 42 ]
}
