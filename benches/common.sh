# Shared by the bench scripts (sourced): the bench app's work tree as a commit, and a median.

# Commits everything in the work tree `$1`, as a fresh repository, so that berth deploys it.
commit_work_tree() {
    git -C "$1" init -q -b main
    git -C "$1" add -A
    git -C "$1" -c user.name=bench -c user.email=bench@example.com commit -qm bench
}

# The median of the numbers on stdin, one a line.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Builds berth (`$berth`), starts the sandbox and seeds the bench's own app `$1` beside what is
# there, with the seed's further arguments.
bench_app() {
    local app="$1"
    shift
    cargo build --quiet --bin berth
    berth="$root/target/debug/berth"
    sandbox/sandboxctl start >&2
    eval "$(sandbox/sandboxctl env)"
    sandbox/sandboxctl seed --envs stg --keep --app "$app" "$@" >/dev/null
}
