#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh machine, then runs every check.
# Needs root (the integration tests build network namespaces). Non-interactive.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's heading says how long the run has taken so far.
step() { echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }

scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The `lab` profile (Cargo.toml): the release build's optimisation without its whole-program LTO
# in one codegen unit, quicker to build.
step "cargo build --profile lab (lab binaries: vtepd, and the ceiling lab/bench.sh measures it against)"
cargo build --profile lab --locked --bin vtepd --example ceiling
step "cargo test"
# Integration tests run the lab scripts against these optimised binaries.
# Two test binaries at a time, two tests each (scripts/run-tests.sh says why).
VTEPD_BIN="$PWD/target/lab/vtepd" BENCH_CEILING_BIN="$PWD/target/lab/examples/ceiling" \
    scripts/run-tests.sh
step "fuzz crate: fmt, clippy, the checked-in corpus replayed through every target"
# Without libFuzzer: building the targets with sanitizers takes about 6 minutes here, so CI runs
# each target's body on its corpus (fuzz/README.md) and scripts/fuzz.sh does the fuzzing. In the
# root's target directory: the fuzz crate's lock and dev-dependencies match the root's, so this
# reuses the builds above (about 30 s, most of it libFuzzer's C++ that only this step builds).
(
    cd fuzz
    export CARGO_TARGET_DIR="$PWD/../target"
    cargo fmt -- --check
    cargo clippy --locked --all-targets -- -D warnings
    cargo test --locked --lib
)
# libFuzzer itself is not part of the default run: building the targets for it takes 5 minutes
# here (and installing cargo-fuzz 2 more on a fresh machine), which would put the whole run over
# its 20-minute budget.
# FUZZ_SECONDS=N adds it (every target for N s, built without AddressSanitizer: the targets are
# safe Rust); `scripts/fuzz.sh 600` is the long run.
if [ -n "${FUZZ_SECONDS:-}" ]; then
    step "fuzz: every target for $FUZZ_SECONDS s from its checked-in corpus (libFuzzer)"
    FUZZ_SANITIZER=none scripts/fuzz.sh "$FUZZ_SECONDS"
fi
step "all checks passed"
