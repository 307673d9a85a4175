#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh machine, then runs every check.
# Needs root (the integration tests build network namespaces). Non-interactive.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build --release (lab binary)"
cargo build --release --locked --bin vtepd
echo "== cargo test"
# Integration tests run the lab scripts against this release binary.
VTEPD_BIN="$PWD/target/release/vtepd" cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}"
echo "== fuzz crate compiles"
if [ -d fuzz ]; then (cd fuzz && cargo check --quiet --locked); fi
echo "all checks passed"
