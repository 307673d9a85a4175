#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each (default 60), one after the other,
# with libFuzzer through cargo-fuzz, and prints executions and coverage per target.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Each target starts from its checked-in corpus (fuzz/corpus/<target>, read only) plus what
# earlier runs found (fuzz/corpus-run/<target>, not checked in: new inputs go there, so the
# checked-in corpus stays small). A crash or a failed invariant stops that target; its input
# is saved under fuzz/artifacts/<target>/ (cargo-fuzz prints the path) and the script exits
# non-zero after the others ran. Logs: fuzz/corpus-run/<target>.log.
#
# Needs cargo-fuzz (installed here with `cargo install cargo-fuzz --locked` when missing) and a
# toolchain that takes sanitizer flags: RUSTC_BOOTSTRAP=1 lets the stable one do it.
# FUZZ_SANITIZER=none (default: address) builds without AddressSanitizer: much faster to build
# and to run, and the targets are safe Rust, so CI's short run uses it. The targets build without
# vtepd's etcd client (--no-default-features: the fuzz crate's `store` feature).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
case "$secs" in
    '' | *[!0-9]*)
        echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
        exit 2
        ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
san="${FUZZ_SANITIZER:-address}"

if [ "$#" -gt 0 ]; then
    targets=("$@")
    echo "== building ${targets[*]}"
    for t in "${targets[@]}"; do
        cargo fuzz build -O -s "$san" --no-default-features "$t"
    done
else
    mapfile -t targets < <(cargo fuzz list)
    echo "== building ${#targets[@]} targets"
    cargo fuzz build -O -s "$san" --no-default-features
fi

work=fuzz/corpus-run
mkdir -p "$work"
rows=()
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    log="$work/$t.log"
    echo "== $t: ${secs}s"
    status=ok
    if ! cargo fuzz run -O -s "$san" --no-default-features "$t" "$work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        status=FAILED
        failed+=("$t")
        grep -E "panicked at|Failing input|ERROR: libFuzzer|SUMMARY" "$log" | head -5 || true
    fi
    # libFuzzer's last status line: "#N DONE cov: C ft: F corp: U/SIZE lim: L exec/s: E ...".
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    execs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    [ -n "$execs" ] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
    field() { sed -nE "s|.* $1: ([^ ]+).*|\1|p" <<<"$last"; }
    rows+=("$(printf '%-16s %-7s %12s %8s %8s %9s %14s' "$t" "$status" "${execs:-?}" \
        "$(field cov)" "$(field ft)" "$(field exec/s)" "$(field corp)")")
done

echo
printf '%-16s %-7s %12s %8s %8s %9s %14s\n' target status executions cov ft exec/s corpus
for r in "${rows[@]}"; do
    echo "$r"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]} (inputs under fuzz/artifacts/, logs under $work/)" >&2
    exit 1
fi
