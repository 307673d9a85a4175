#!/usr/bin/env bash
# A micro-benchmark A/B that code layout alone cannot decide: each build of the benchmark is
# linked as usual and again with its functions in N random orders, and every layout of every
# build is run in turn, so a build's figure is its mean over layouts, not the luck of one.
#
# usage: scripts/bench-layouts.sh [--bench NAME] [--filter REGEX] [--seeds N] [--rounds R]
#                                 [--count] NAME=REV [NAME=REV ...]
#   NAME=REV      a build: a git revision, or "." for the working tree as it is; the first one
#                 is the reference the ratios are taken against
#   --bench NAME  the benches/ file to run (default forward)
#   --filter RE   the divan filter: which of its benchmarks (default all)
#   --seeds N     random layouts per build besides the one as linked (default 8)
#   --rounds R    passes over every layout of every build (default 2)
#   --count       count instructions per call instead of timing (valgrind; exact, no layouts)
#
# Prints, for each benchmark (those without arguments) and build, the mean of divan's fastest
# sample over all layouts and rounds (with the least and the greatest), and each build's ratio
# to the first. With --count: the instructions one call executes, for each benchmark and build
# (valgrind's cachegrind, runs of 10 and 110 samples of 1000 calls, the least of 3 of each:
# their difference over 100 000 calls, so set-up and the harness's per-run work cancel out).
#
# Why: these benchmarks run a few dozen nanoseconds a call, and where a function lands in
# memory (its alignment against the CPU's fetch and cache-line boundaries) moves them by 10-20%
# on its own: one build can be slower or faster than another by that much with no change to the
# code (BENCHMARKS.md, "The IPv4 gap, fourth pass"). The random orders come from the linker
# (lld's --shuffle-sections; each function is a section of its own), so no code changes between
# a build's layouts. Needs lld as the linker, which Rust's x86_64 Linux toolchain uses by
# default, and `taskset` (util-linux); runs on CPU 1 (BENCH_LAYOUTS_CPU to change it).
#
# Builds go to target/bench-layouts/ (BENCH_LAYOUTS_DIR): a worktree and a target directory
# per build, kept for the next run.
set -euo pipefail

# Invoked by cargo as the linker (see below): link as asked, and for a benchmark binary link it
# again once per seed with its sections shuffled, next to it as <binary>.s<seed>.
if [ -n "${BENCH_LAYOUTS_LINK:-}" ]; then
    cc "$@"
    out="" prev=""
    for a in "$@"; do
        [ "$prev" = "-o" ] && out=$a
        prev=$a
    done
    case "$out" in
    */deps/"$BENCH_LAYOUTS_LINK"-*)
        for s in $(seq 1 "$BENCH_LAYOUTS_SEEDS"); do
            args=() prev=""
            for a in "$@"; do
                if [ "$prev" = "-o" ]; then args+=("$out.s$s"); else args+=("$a"); fi
                prev=$a
            done
            cc "${args[@]}" "-Wl,--shuffle-sections=.text*=$s"
        done
        ;;
    esac
    exit 0
fi

usage() {
    sed -n '5,13s/^# \{0,1\}//p' "$0" >&2
    echo "bench-layouts: $1" >&2
    exit 2
}

bench=forward filter="" seeds=8 rounds=2 count=0 builds=()
while [ $# -gt 0 ]; do
    case "$1" in
    --bench) [ $# -ge 2 ] || usage "--bench needs a name"; bench=$2; shift ;;
    --filter) [ $# -ge 2 ] || usage "--filter needs a regex"; filter=$2; shift ;;
    --seeds)
        [ $# -ge 2 ] && [[ $2 =~ ^[0-9]{1,2}$ ]] || usage "--seeds needs a count from 0 to 99"
        seeds=$2; shift ;;
    --rounds)
        [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]?$ ]] || usage "--rounds needs a count from 1 to 99"
        rounds=$2; shift ;;
    --count) count=1 ;;
    -h | --help) usage "builds and runs benchmark layouts" ;;
    *=*) builds+=("$1") ;;
    *) usage "unexpected argument '$1' (a build is NAME=REV)" ;;
    esac
    shift
done
[ ${#builds[@]} -ge 1 ] || usage "name at least one build (NAME=REV)"
[ "$count" = 0 ] || command -v valgrind >/dev/null ||
    usage "--count needs valgrind (Debian: apt-get install valgrind)"

root=$(git rev-parse --show-toplevel)
cd "$root"
[ -f "benches/$bench.rs" ] || usage "no benches/$bench.rs"
dir=$(realpath -m "${BENCH_LAYOUTS_DIR:-target/bench-layouts}")
cpu=${BENCH_LAYOUTS_CPU:-1}
mkdir -p "$dir"
host=$(rustc -vV | sed -n 's/^host: //p')
linker_var="CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')_LINKER"

# Build each: its worktree (the repository itself for "."), then the benchmark, linked by this
# script. The binary is the newest of its name in the build's target directory.
declare -A exe
for b in "${builds[@]}"; do
    name=${b%%=*} rev=${b#*=}
    [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || usage "a build's name is letters, digits, - and _ ('$name')"
    src=$root
    if [ "$rev" != . ]; then
        src=$dir/src-$name
        commit=$(git rev-parse --verify --quiet "$rev^{commit}") || usage "no revision '$rev'"
        if [ -d "$src" ]; then
            git -C "$src" checkout --quiet --detach "$commit"
        else
            git worktree add --quiet --detach "$src" "$commit"
        fi
    fi
    echo "bench-layouts: building $name ($rev): benches/$bench.rs, $seeds shuffled layouts" >&2
    (cd "$src" && env "$linker_var=$root/scripts/bench-layouts.sh" BENCH_LAYOUTS_LINK="$bench" \
        BENCH_LAYOUTS_SEEDS="$seeds" CARGO_TARGET_DIR="$dir/target-$name" \
        cargo bench --locked --no-run --bench "$bench" 2>&1 | tail -n 1 >&2)
    exe[$name]=$(find "$dir/target-$name/release/deps" -maxdepth 1 -type f -executable \
        -name "$bench-*" ! -name '*.s[0-9]*' -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2)
    [ -n "${exe[$name]}" ] || { echo "bench-layouts: no binary for $name" >&2; exit 1; }
    for s in $(seq 1 "$seeds"); do
        [ -x "${exe[$name]}.s$s" ] || {
            echo "bench-layouts: layout $s of $name not linked: the linker is not lld, or it was" \
                "built before with fewer --seeds (remove ${exe[$name]} to link it again)" >&2
            exit 1
        }
    done
done

# --count: instructions per call, "benchmark build count", for each benchmark without arguments
# (one whose own row in divan's table has figures) that the filter picks.
count_calls() {
    local b name path n c out figures runs tmp least total
    tmp=$(mktemp)
    for b in "${builds[@]}"; do
        name=${b%%=*} path=${exe[$name]}
        for n in $("$path" --bench --list ${filter:+"$filter"} 2>/dev/null | sed -n 's/^[├╰]─ //p'); do
            runs="" figures=1
            for c in 10 110; do
                # The least of 3 runs: what varies between runs (a concurrent structure's
                # retries, its memory reclaimed or not) only ever adds instructions.
                least=""
                for _ in 1 2 3; do
                    out=$(timeout 600 valgrind --tool=cachegrind --cache-sim=no \
                        --cachegrind-out-file="$tmp" "$path" --bench --exact "$bench::$n" \
                        --sample-count "$c" --sample-size 1000 2>/dev/null) || figures=0
                    # A benchmark with arguments has no figures on its own row: not counted.
                    grep -qE "─ $n +[0-9.]+ [a-zµ]+ +│" <<<"$out" || figures=0
                    total=$(sed -n 's/^summary: *//p' "$tmp")
                    [ -n "$total" ] || { figures=0; total=0; }
                    [ -n "$least" ] && [ "$least" -le "$total" ] || least=$total
                done
                runs+=" $least"
            done
            read -r lo hi <<<"$runs"
            [ "$figures" = 1 ] && [ -n "${hi:-}" ] &&
                awk -v n="$n" -v b="$name" -v lo="$lo" -v hi="$hi" \
                    'BEGIN { printf "%s %s %.1f\n", n, b, (hi - lo) / 100000 }'
        done
    done
    rm -f "$tmp"
}

# The result table, from lines "benchmark<TAB>build<TAB>cell<TAB>value" (the cell as printed,
# the value the ratios are taken of); $1 names the builds' column.
table() {
    awk -F'\t' -v what="$1" -v order="$(printf '%s ' "${builds[@]%%=*}")" '
        { cell[$1 SUBSEP $2] = $3; v[$1 SUBSEP $2] = $4
          if (!($1 in seen)) { seen[$1] = 1; benches[++nb] = $1 } }
        END {
            nbuild = split(order, names, " ")
            printf "| benchmark |"
            for (i = 1; i <= nbuild; i++) printf " %s: %s |", names[i], what
            for (i = 2; i <= nbuild; i++) printf " %s / %s |", names[i], names[1]
            printf "\n|---|"
            for (i = 2; i <= 2 * nbuild; i++) printf "---|"
            printf "\n"
            for (j = 1; j <= nb; j++) {
                printf "| %s |", benches[j]
                for (i = 1; i <= nbuild; i++) {
                    k = benches[j] SUBSEP names[i]
                    if (k in v) printf " %s |", cell[k]; else printf " |"
                }
                r = benches[j] SUBSEP names[1]
                for (i = 2; i <= nbuild; i++) {
                    k = benches[j] SUBSEP names[i]
                    if ((k in v) && (r in v)) printf " %.3f |", v[k] / v[r]; else printf " |"
                }
                printf "\n"
            }
        }'
}

if [ "$count" = 1 ]; then
    echo "bench-layouts: counting instructions per call (valgrind), each build as linked" >&2
    count_calls | awk '{ printf "%s\t%s\t%.1f\t%s\n", $1, $2, $3, $3 }' |
        table "instructions per call"
    exit 0
fi

# Every layout of every build in turn, round after round: "benchmark build fastest".
run() {
    local r s b name path
    for r in $(seq 1 "$rounds"); do
        for s in $(seq 0 "$seeds"); do
            for b in "${builds[@]}"; do
                name=${b%%=*} path=${exe[$name]}
                [ "$s" = 0 ] || path=$path.s$s
                # divan's table: "├─ name  fastest │ slowest │ median │ mean │ samples │ iters"
                # (a benchmark with arguments has a row per argument, named by it: not read).
                timeout 600 taskset -c "$cpu" "$path" --bench ${filter:+"$filter"} \
                    2> >(grep -v '^Timer precision' >&2) |
                    awk -F'│' -v b="$name" '/─ [A-Za-z_]/ && NF >= 6 {
                        n = $1; gsub(/^[├╰│─ ]+/, "", n); split(n, w, " ")
                        if (w[3] != "") print w[1], b, w[2], w[3] }'
            done
        done
    done
}

echo "bench-layouts: $rounds round(s) of $((seeds + 1)) layouts per build, on CPU $cpu" >&2
run | awk '
    function ns(v,  n) {
        n = v + 0
        if (v ~ /ps/) return n / 1000
        if (v ~ /µs|us/) return n * 1000
        if (v ~ /ms/) return n * 1000000
        return n
    }
    { k = $1 SUBSEP $2; t = ns($3 $4); sum[k] += t; cnt[k]++
      if (!(k in lo) || t < lo[k]) lo[k] = t
      if (!(k in hi) || t > hi[k]) hi[k] = t
      if (!(k in seen)) { seen[k] = 1; keys[++nk] = k } }
    END {
        for (j = 1; j <= nk; j++) {
            k = keys[j]; split(k, bb, SUBSEP); m = sum[k] / cnt[k]
            printf "%s\t%s\t%.1f (%.1f-%.1f)\t%s\n", bb[1], bb[2], m, lo[k], hi[k], m
        }
    }' | table "mean (least-greatest) ns"
