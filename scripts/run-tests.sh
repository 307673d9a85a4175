#!/usr/bin/env bash
# Builds the workspace's tests and runs the test binaries TEST_JOBS at a time (default 2), each
# with --test-threads=TEST_THREADS (default 2), then the doc tests. Each binary's output is
# printed whole when it ends; the exit status is non-zero if any binary failed (all of them run).
#
#   scripts/run-tests.sh [TEST-BINARY-ARGS...]      e.g. scripts/run-tests.sh --nocapture
#
# Why not `cargo test`: it runs the binaries one after the other, so a binary holding one long
# namespace test (a transfer, a soak) leaves the machine idle while it waits; most of the
# integration tests wait on namespaces and timers, not on the CPU. cargo-nextest would do this,
# but it cannot be downloaded on the CI machine and building it costs more than it saves.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${TEST_JOBS:-2}
threads=${TEST_THREADS:-2}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# One line per test binary: its path and its package's directory (cargo runs a test binary
# there, with CARGO_MANIFEST_DIR set).
cargo test --workspace --locked --no-run --message-format=json-render-diagnostics |
    jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null)
           | "\(.executable)\t\(.manifest_path | sub("/Cargo.toml$"; ""))"' >"$logs/bins"

run() {
    local n=$1 bin=$2 dir=$3
    shift 3
    local log="$logs/$n.log" rc=0
    (cd "$dir" && CARGO_MANIFEST_DIR="$dir" "$bin" --test-threads="$threads" "$@") >"$log" 2>&1 ||
        rc=$?
    # One binary's output at a time (flock: util-linux).
    {
        flock 9
        printf '\n==== %s (exit %d)\n' "${bin#"$PWD"/}" "$rc"
        cat "$log"
    } 9>"$logs/print.lock"
    return "$rc"
}

failed=0
n=0
running=0
while IFS=$'\t' read -r bin dir; do
    n=$((n + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || failed=$((failed + 1))
        running=$((running - 1))
    fi
    run "$n" "$bin" "$dir" "$@" &
    running=$((running + 1))
done <"$logs/bins"
while [ "$running" -gt 0 ]; do
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
done

cargo test --workspace --locked --doc || failed=$((failed + 1))

if [ "$failed" -gt 0 ]; then
    echo "run-tests: $failed of $((n + 1)) test runs failed" >&2
    exit 1
fi
echo "run-tests: all $n test binaries and the doc tests passed"
