#!/usr/bin/env bash
# Soak test of vtepd: every mode at once under traffic, control churn, learning churn and periodic
# malformed input, for MINUTES minutes (default 60), sampling every daemon's RSS, threads and fds.
#
# usage: sudo scripts/soak.sh [MINUTES] [--keep] [--help]
#   MINUTES may be a fraction (0.5 = 30 s; at least 10 s); --keep leaves the lab up afterwards.
#
# The fabric (namespaces soak<pid>-*, all on one underlay bridge; nothing in the root namespace):
#   l2a 192.0.2.1    <-> l2b 192.0.2.2     L2 VXLAN, VNI 42, TAP vtep0 10.42.1.1/16 <-> 10.42.2.1/16;
#                                          l2a has a short --ageing, a --max-fdb cap and --mac-move
#   ipa 198.51.100.1 <-> ipb 198.51.100.2  L3 IPIP (TUN tunl0), 10.244.1.64 <-> 10.244.2.64
#   l3a 203.0.113.1  <-> l3b 203.0.113.2   L3 VXLAN (TUN vtep0), VNI 7, 10.245.1.0 <-> 10.245.2.0,
#                                          each with a static --neigh / `neigh add` for the other
#   x  192.0.2.3 192.0.2.4 198.51.100.3 203.0.113.3: the learning-churn sender and malformed source
#                                          (a flood peer of l2a and l3a, a route next hop of ipa)
# For the whole run: per mode, iperf3 TCP rounds (alternating direction, rate SOAK_RATE) and a
# ping every 0.2 s; control churn loops (fdb add/del/show/flush, peers add/del, neigh add/del, routes
# add/del, stats) on every daemon's control socket; VXLAN datagrams with new random source MACs
# (lab/soak_traffic.py learn) so l2a keeps learning, hitting its cap and ageing out, with MACs
# flapping between two remotes; every SOAK_MALFORMED_EVERY s a burst of truncated and garbage
# VXLAN and IPIP datagrams at every daemon (lab/soak_traffic.py malformed).
# Every sample (SOAK_INTERVAL s, default 10) records RSS (VmRSS), threads and fds of each daemon
# and its `stats --json`, and checks the counters.
#
# Fails (exit 1, one line "soak: FAIL: <reason>" on stderr) when: a daemon exited; RSS grows
# without bound (after the warm-up, the last-quarter median more than SOAK_RSS_PCT % and
# SOAK_RSS_KB KiB above the second-quarter median; or above SOAK_RSS_MAX_KB at any sample);
# threads, or fds other than the UDP GSO sender pool (itself at most 64 per worker), differ from
# their post-warm-up value in two samples running; a counter stops adding up (any counter going
# down, drops_total not the sum of drops, a total not the sum of the workers' rows, fdb_entries not
# the sum over networks, more learned entries than --max-fdb; at rest: a freeze without its moves);
# a control command fails (an answer the daemon drops, "closed the connection without answering",
# fails only past 10 + 1 in 1000 commands: see churn_op); a mode's traffic fails (no iperf3 round ok, more than one round in ten
# failed, ping loss above SOAK_MAX_LOSS %); a daemon did not count the malformed input sent to it;
# the learning cap is not whole again at the end; a daemon does not exit 0 on SIGTERM.
# Bad usage exits 2.
#
# Results (samples.csv, report.txt, stats per daemon, logs) go to SOAK_RESULTS (default
# target/soak/<date>-<pid>). Environment: SOAK_SECONDS (overrides MINUTES), SOAK_INTERVAL,
# SOAK_WARMUP, SOAK_RATE (iperf3 -b, default 100M), SOAK_MALFORMED_EVERY, SOAK_RSS_PCT (10),
# SOAK_RSS_KB (4096), SOAK_RSS_MAX_KB (524288), SOAK_MAX_LOSS (ping loss %, 2), SOAK_THREADS
# (workers per daemon, 2), VTEPD_BIN (skip the build), LAB_SKIP_SETUP=1 (skip scripts/setup.sh),
# LAB_TIMEOUT (seconds per bounded wait, 10).

# shellcheck disable=SC2317 # the loops run through bg() and on_exit through the trap
set -euo pipefail

ME=scripts/soak.sh
usage_error() {
    printf '%s: %s (try --help)\n' "$ME" "$1" >&2
    exit 2
}

MINUTES=60
KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help)
        sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    --keep) KEEP=1 ;;
    -*) usage_error "unknown option $1" ;;
    *)
        [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "MINUTES must be a number, not '$1'"
        MINUTES=$1
        ;;
    esac
    shift
done
if [ -n "${SOAK_SECONDS:-}" ]; then
    [[ $SOAK_SECONDS =~ ^[0-9]+$ ]] || usage_error "SOAK_SECONDS must be a whole number, not '$SOAK_SECONDS'"
    DUR=$SOAK_SECONDS
else
    DUR=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 + 0.5 }')
fi
[ "$DUR" -ge 10 ] || usage_error "the soak must last at least 10 seconds (MINUTES $MINUTES, SOAK_SECONDS ${SOAK_SECONDS:-unset})"
for v in SOAK_INTERVAL SOAK_WARMUP SOAK_MALFORMED_EVERY SOAK_RSS_PCT SOAK_RSS_KB SOAK_RSS_MAX_KB SOAK_THREADS; do
    [ -z "${!v:-}" ] || [[ ${!v} =~ ^[0-9]+$ ]] || usage_error "$v must be a whole number, not '${!v}'"
done

min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }
max() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# Timing, scaled down for short runs (the smoke test runs 20 s).
INTERVAL=${SOAK_INTERVAL:-$(min 10 "$(max 2 $((DUR / 8)))")}
WARMUP=${SOAK_WARMUP:-$(min 60 "$(max "$INTERVAL" $((DUR / 5)))")}
ROUND=$(min 20 "$(max 3 $((DUR / 6)))")
MALFORMED_EVERY=${SOAK_MALFORMED_EVERY:-$(min 30 "$(max 3 $((DUR / 4)))")}
RATE=${SOAK_RATE:-100M}
THREADS=${SOAK_THREADS:-2}
# RSS "grows without bound": once warm, the median of the last quarter of the samples is more than
# RSS_PCT % AND more than RSS_KB KiB above the median of the second quarter. The first quarter is
# left out (allocators and maps reach their working size there); medians ignore single spikes; the
# percentage keeps a big daemon's noise from counting, the absolute floor a small daemon's page-size
# wobble. A leak of one 1 KiB allocation per control request (several a second) exceeds both within
# minutes. RSS_MAX_KB is a hard ceiling checked at every sample.
RSS_PCT=${SOAK_RSS_PCT:-10}
RSS_KB=${SOAK_RSS_KB:-4096}
RSS_MAX_KB=${SOAK_RSS_MAX_KB:-524288}
MAX_LOSS=${SOAK_MAX_LOSS:-2}
# l2a's learning settings: short ageing and a small cap, so the cap is hit and entries age out all
# the time; dampening that freezes a MAC after 3 moves in 10 s for 5 s.
AGEING=10
MAX_FDB=256
MOVES=3
MAC_MOVE="moves=$MOVES,window=10,hold=5"
# Static entries the churn loops hold at most at once on one daemon (8 plus one flapping MAC pinned).
STATIC_MAX=9
LEARN_RATE=200 # new source MACs a second
FLAP_MACS=16
MAX_GSO_SOCKETS=64 # per worker: src/daemon/tunnel_tx.rs

LAB_PREFIX=soak$$
export LAB_PREFIX
# shellcheck source=lab/lib.sh
. "$(dirname "$0")/../lab/lib.sh"
REPO=$LAB_REPO
RESULTS=${SOAK_RESULTS:-$REPO/target/soak/$(date +%Y%m%d-%H%M%S)-$$}
DAEMONS=(l2a l2b ipa ipb l3a l3b)
declare -A MODE_OF=([l2a]=l2-vxlan [l2b]=l2-vxlan [ipa]=l3-ipip [ipb]=l3-ipip [l3a]=l3-vxlan [l3b]=l3-vxlan)

lab_prepare
for tool in iperf3 jq ping timeout ss; do
    command -v "$tool" >/dev/null || lab_die "$tool is missing (scripts/setup.sh installs it)"
done
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)

# ---------------------------------------------------------------------------------------------
# State, failure and cleanup

FAIL_REASON=
REPORTED=0
BG_PIDS=()   # background jobs we started (loops, learner, pings), stopped by PID
START=0
END=0
T_LAST=0 # time of the last sample (s since START)
SOAK_T=0 # time of the last sample under load
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# fail REASON: records the first failure and ends the run (the EXIT trap reports and cleans up).
fail() {
    [ -n "$FAIL_REASON" ] || FAIL_REASON=$1
    exit 1
}

# stop_jobs: stops our background jobs (each stops its own current child on SIGTERM), bounded.
stop_jobs() {
    local pid deadline
    for pid in "${BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + LAB_TIMEOUT))
    for pid in "${BG_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    BG_PIDS=()
}

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    exec 1>&3 2>&4 # the script's own output, whatever redirection the exit happened under
    [ "$rc" = 0 ] || [ -n "$FAIL_REASON" ] || FAIL_REASON="the soak script stopped (status $rc)"
    stop_jobs
    local f
    for f in "$LAB_DIR"/*.vtepd.log; do
        [ -f "$f" ] && gzip -c "$f" >"$RESULTS/${f##*/}.gz"
    done
    [ "$REPORTED" = 1 ] || [ "$START" = 0 ] || report
    if [ -n "$FAIL_REASON" ]; then
        lab_dump_logs
        printf 'soak: FAIL: %s\n' "$FAIL_REASON" >&2
        [ "$rc" != 0 ] || rc=1
    fi
    if [ "$KEEP" = 1 ]; then
        # shellcheck disable=SC2016 # backquotes meant literally
        printf 'soak: kept; clean up with `LAB_PREFIX=%s %s cleanup`\n' "$LAB_PREFIX" "$LAB_HOME/lib.sh"
    else
        lab_cleanup
    fi
    exit "$rc"
}
exec 3>&1 4>&2
trap on_exit EXIT
trap 'FAIL_REASON=${FAIL_REASON:-interrupted}; exit 130' INT TERM
trap '' PIPE

# ---------------------------------------------------------------------------------------------
# Daemons

sock() { lab_sock "$1"; }
pid_of() { cat "$LAB_DIR/$1.vtepd.pid"; }

# vc NAME ARGS...: a vtepd client command against NAME's daemon, bounded.
vc() {
    local name=$1
    shift
    timeout "$LAB_TIMEOUT" "$VTEPD_BIN" "$@" --control "$(sock "$name")" </dev/null
}

# vc3 NAME ARGS...: vc, tried up to three times (the sampler's read-only queries: an answer the
# daemon dropped on a loaded machine is asked again; each failed try is noted in retries.log).
vc3() {
    local name=$1 n out
    shift
    for n in 1 2 3; do
        out=$(vc "$name" "$@" 2>"$LAB_DIR/vc3.err") && {
            printf '%s\n' "$out"
            return 0
        }
        echo "t=$((EPOCHSECONDS - START))s try $n: $name: vtepd $*: $(cat "$LAB_DIR/vc3.err")" >>"$RESULTS/retries.log"
        sleep 0.5
    done
    return 1
}

# start_daemon NAME DEV ARGS...: starts `vtepd run ARGS` in namespace NAME; waits for its control
# socket and device.
start_daemon() {
    local name=$1 dev=$2
    shift 2
    local args=(run --dev "$dev" --threads "$THREADS" --control "$(sock "$name")" "$@")
    log "$name: vtepd ${args[*]}"
    ip netns exec "$(lab_ns "$name")" "$VTEPD_BIN" "${args[@]}" </dev/null >"$LAB_DIR/$name.vtepd.log" 2>&1 3>&- 4>&- &
    echo $! >"$LAB_DIR/$name.vtepd.pid"
    echo vtepd >"$LAB_DIR/$name.impl"
    lab_wait_socket "$name" || fail "vtepd on $name did not start"
    lab_wait_link "$(lab_ns "$name")" "$dev" || fail "vtepd on $name did not create $dev"
}

# alive NAME: whether NAME's daemon still runs (a zombie does not).
alive() {
    local pid state
    pid=$(pid_of "$1")
    state=$(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# check_alive: fails if any daemon exited.
check_alive() {
    local d pid rc
    for d in "${DAEMONS[@]}"; do
        alive "$d" && continue
        pid=$(pid_of "$d")
        rc=0
        wait "$pid" 2>/dev/null || rc=$?
        fail "daemon $d (pid $pid, ${MODE_OF[$d]}) exited with status $rc at t=$((EPOCHSECONDS - START))s"
    done
}

# ---------------------------------------------------------------------------------------------
# Background loops. Each runs as a job of ours, ends by itself at END, and on SIGTERM stops the
# child it is waiting for (every child is bounded by a timeout anyway).

CHILD=
SERVER=
# A Ctrl-C reaches the whole process group: the loops leave it to the main script, which stops
# them with SIGTERM (without the INT trap, a background subshell of a script that traps INT dies
# of it, leaving its children behind).
loop_init() {
    trap 'for p in $CHILD $SERVER; do kill -TERM "$p" 2>/dev/null; done; exit 0' TERM
    trap '' INT
}
# child CMD...: runs CMD in the background and waits for it (so the TERM trap can stop it).
child() {
    local rc=0
    "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    return "$rc"
}

# traffic_loop KIND CLIENT SERVER SERVER_IP PORT: iperf3 TCP rounds of ROUND s (even rounds
# reversed) at RATE until END; one line per round in traffic-KIND.log: "t round dir ok|fail bytes".
traffic_loop() {
    local kind=$1 cl=$2 sv=$3 ip=$4 port=$5 round=0 t dir json rc bytes deadline out
    local logf=$RESULTS/traffic-$kind.log
    loop_init
    json=$LAB_DIR/iperf-$kind.json
    while :; do
        t=$((END - EPOCHSECONDS - 2))
        [ "$t" -ge 2 ] || break
        t=$(min "$t" "$ROUND")
        round=$((round + 1))
        dir=fwd
        [ $((round % 2)) = 1 ] || dir=rev
        ip netns exec "$(lab_ns "$sv")" timeout $((t + 20)) iperf3 -s -1 -p "$port" -B "$ip" \
            </dev/null >/dev/null 2>&1 &
        SERVER=$!
        deadline=$((SECONDS + LAB_TIMEOUT))
        until ip netns exec "$(lab_ns "$sv")" ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; do
            [ "$SECONDS" -lt "$deadline" ] || break
            sleep 0.05
        done
        rc=0
        local rev=()
        [ "$dir" = fwd ] || rev=(-R)
        child ip netns exec "$(lab_ns "$cl")" timeout $((t + 15)) iperf3 -c "$ip" -p "$port" -t "$t" \
            -b "$RATE" --connect-timeout 3000 -J "${rev[@]}" </dev/null >"$json" 2>&1 || rc=$?
        bytes=$(jq -r '.end.sum_received.bytes // 0' "$json" 2>/dev/null) || bytes=0
        if [ "$rc" = 0 ] && [ "${bytes:-0}" -gt 0 ] 2>/dev/null; then
            out=ok
        else
            out="fail rc=$rc $(jq -r '.error // empty' "$json" 2>/dev/null | tr ' ' '_' | head -c 200)"
            bytes=0
        fi
        echo "$((EPOCHSECONDS - START)) $round $dir $out $bytes" >>"$logf"
        wait "$SERVER" 2>/dev/null || true
        SERVER=
        sleep 1
    done
}

# churn_op NAME ARGS...: one control command, counted and timed. An answer the daemon dropped
# ("closed the connection without answering": the exchange outlived the daemon's 2 s client
# deadline, which covers its own handling too, e.g. a netlink call waiting for the kernel's RTNL
# lock on a busy machine) goes to churn-dropped.log; any other failure to churn-errors.log.
CH_OK=0
CH_FAIL=0
CH_DROPPED=0
CH_SLOW=0
churn_op() {
    local name=$1 err t0 ms rc=0
    shift
    t0=$EPOCHREALTIME
    err=$(vc "$name" "$@" 2>&1 >/dev/null) || rc=$?
    ms=$(((${EPOCHREALTIME//[.,]/} - ${t0//[.,]/}) / 1000))
    [ "$ms" -lt 1000 ] || CH_SLOW=$((CH_SLOW + 1))
    if [ "$rc" = 0 ]; then
        CH_OK=$((CH_OK + 1))
        return 0
    fi
    local line
    line="t=$((EPOCHSECONDS - START))s started $(date -u -d "@${t0%[.,]*}" +%T).${t0#*[.,]} took ${ms} ms: $name: vtepd $* (status $rc): $err"
    if [[ $err == *"closed the connection without answering"* ]]; then
        CH_DROPPED=$((CH_DROPPED + 1))
        echo "$line" >>"$RESULTS/churn-dropped.log"
    else
        CH_FAIL=$((CH_FAIL + 1))
        echo "$line" >>"$RESULTS/churn-errors.log"
    fi
}

# churn_loop KIND A B: control churn on the pair's daemons until END; counts in churn-KIND.counts.
churn_loop() {
    local kind=$1 a=$2 b=$3 i=0 k mac
    loop_init
    while [ "$EPOCHSECONDS" -lt "$END" ]; do
        i=$((i + 1))
        case $kind in
        l2)
            # Every tenth round pins a flapping MAC to one remote for the round (its frames from
            # the other remote then count static_conflict), and ends it with a flush of l2a's
            # learned entries.
            [ $((i % 10)) != 0 ] || churn_op "$a" fdb add 02:f1:00:00:00:00 192.0.2.3
            for k in 1 2 3 4 5 6 7 8; do
                churn_op "$a" fdb add "$(printf '02:5c:00:%02x:00:%02x' $((i % 256)) "$k")" "192.0.2.$((3 + k % 2))"
            done
            churn_op "$a" fdb show --json
            churn_op "$a" peers del 192.0.2.4
            churn_op "$a" peers add 192.0.2.4
            churn_op "$b" peers add 192.0.2.3
            churn_op "$b" peers del 192.0.2.3
            churn_op "$b" fdb add "$(printf '02:5c:01:%02x:00:01' $((i % 256)))" 192.0.2.1
            churn_op "$b" fdb show
            churn_op "$a" stats --json
            churn_op "$b" neigh add "10.42.200.$((i % 250 + 1))" "$(printf '02:5c:02:%02x:00:01' $((i % 256)))"
            churn_op "$b" neigh show --json
            churn_op "$b" neigh del "10.42.200.$((i % 250 + 1))"
            churn_op "$b" fdb del "$(printf '02:5c:01:%02x:00:01' $((i % 256)))"
            if [ $((i % 10)) = 0 ]; then
                churn_op "$a" fdb flush --learned-only
                churn_op "$a" fdb del 02:f1:00:00:00:00
            fi
            for k in 1 2 3 4 5 6 7 8; do
                churn_op "$a" fdb del "$(printf '02:5c:00:%02x:00:%02x' $((i % 256)) "$k")"
            done
            ;;
        ipip)
            for k in 1 2 3 4; do
                churn_op "$a" routes add "10.250.$(((i * 4 + k) % 250)).0/24" 198.51.100.2
            done
            churn_op "$a" routes show --json
            churn_op "$b" routes add "10.251.$((i % 250)).0/24" 198.51.100.1
            churn_op "$b" stats --json
            churn_op "$a" stats
            churn_op "$b" routes del "10.251.$((i % 250)).0/24"
            for k in 1 2 3 4; do
                churn_op "$a" routes del "10.250.$(((i * 4 + k) % 250)).0/24"
            done
            ;;
        l3vx)
            for k in 1 2 3 4; do
                mac=$(printf '02:5c:03:%02x:00:%02x' $((i % 256)) "$k")
                churn_op "$a" neigh add "10.245.9.$((k + 10 * (i % 20)))" "$mac"
                churn_op "$a" fdb add "$mac" 203.0.113.3
            done
            churn_op "$a" routes add "10.246.$((i % 250)).0/24" 10.245.2.0
            churn_op "$a" neigh show --json
            churn_op "$a" fdb show --json
            churn_op "$b" peers add 203.0.113.3
            churn_op "$b" peers del 203.0.113.3
            churn_op "$b" stats --json
            churn_op "$a" routes del "10.246.$((i % 250)).0/24"
            for k in 1 2 3 4; do
                mac=$(printf '02:5c:03:%02x:00:%02x' $((i % 256)) "$k")
                churn_op "$a" fdb del "$mac"
                churn_op "$a" neigh del "10.245.9.$((k + 10 * (i % 20)))"
            done
            ;;
        esac
        echo "$CH_OK $CH_FAIL $CH_DROPPED $CH_SLOW" >"$RESULTS/churn-$kind.counts"
        sleep 1
    done
}

# malformed_loop: a burst of bad input at every daemon every MALFORMED_EVERY s (the first after
# a few seconds), one JSON line per burst in malformed.jsonl.
malformed_loop() {
    local next=$((START + $(min 5 "$MALFORMED_EVERY")))
    loop_init
    while :; do
        while [ "$EPOCHSECONDS" -lt "$next" ]; do sleep 0.5; done
        [ "$EPOCHSECONDS" -lt "$((END - 1))" ] || break
        child ip netns exec "$(lab_ns x)" timeout 30 "$LAB_PY" "$LAB_HOME/soak_traffic.py" malformed \
            --vxlan "192.0.2.3=192.0.2.1:42,192.0.2.3=192.0.2.2:42,203.0.113.3=203.0.113.1:7,203.0.113.3=203.0.113.2:7" \
            --ipip "198.51.100.3=198.51.100.1,198.51.100.3=198.51.100.2" \
            </dev/null >>"$RESULTS/malformed.jsonl" 2>>"$RESULTS/malformed.err" || true
        next=$((next + MALFORMED_EVERY))
    done
}

# bg NAME FUNCTION ARGS...: starts a background job of ours.
bg() {
    local name=$1
    shift
    "$@" &
    BG_PIDS+=($!)
    echo "$!" >"$LAB_DIR/job-$name.pid.txt"
}

# ---------------------------------------------------------------------------------------------
# Sampling and checks

# The invariants of one `stats --json` ($c) against the previous one ($p, or null), each exact:
# - every counter (totals, drops by reason, each worker's row) only grows;
# - drops_total is the sum of the drops by reason;
# - every total is the sum of the workers' rows (the daemon sums one snapshot), drops_total too;
# - fdb_entries is the sum of the networks' fdb_entries.
# Prints one line per violation.
# shellcheck disable=SC2016 # a jq program: its $names are jq's
JQ_INVARIANTS='
def nums: with_entries(select(.value | type == "number"));
def gauge: . == "fdb_entries";
($c | nums) as $cn
| ([$c.drops[]] | add // 0) as $dsum
| (if $c.drops_total != $dsum then "drops_total \($c.drops_total) is not the sum of drops by reason \($dsum)" else empty end),
  (([$c.networks[].fdb_entries] | add // 0) as $n
   | if $c.fdb_entries != $n then "fdb_entries \($c.fdb_entries) is not the sum over networks \($n)" else empty end),
  (if ($c.workers | length) == 0 then "no per-worker rows" else empty end),
  (($c.workers[0] // {} | nums | keys[]) as $k | select($k != "worker")
   | ([$c.workers[][$k]] | add) as $w
   | select($w != $c[$k]) | "\($k) \($c[$k]) is not the sum of the workers rows \($w)"),
  (if $p == null then empty else
     (($p | nums | keys[]) as $k | select($k | gauge | not)
      | select(($c[$k] // -1) < $p[$k]) | "\($k) went down: \($p[$k]) -> \($c[$k] // "missing")"),
     (($p.drops | keys[]) as $r
      | select(($c.drops[$r] // -1) < $p.drops[$r]) | "drops.\($r) went down: \($p.drops[$r]) -> \($c.drops[$r] // "missing")"),
     (range(0; $p.workers | length) as $i | ($p.workers[$i] | nums | keys[]) as $k
      | select(($c.workers[$i][$k] // -1) < $p.workers[$i][$k])
      | "worker \($i) \($k) went down: \($p.workers[$i][$k]) -> \($c.workers[$i][$k] // "missing")")
   end)
'

declare -A PREV BASE_THR BASE_FD ODD_THR ODD_FD
SAMPLES=0

# proc_figures PID: "rss_kb threads fds gso_fds fixed_fds". Threads and fds are the least of five
# reads 40 ms apart, so a control client's short-lived thread and socket (the server gives each
# client one) are not counted. gso_fds are the daemon's UDP GSO sender sockets (UDP sockets not on
# the VXLAN port: a pool of at most MAX_GSO_SOCKETS per worker, opened as new flows appear and
# closed all at once when full, src/daemon/tunnel_tx.rs); fixed_fds are the others.
proc_figures() {
    local pid=$1 r rss=0 thr=999999 fd=999999 fixed=999999 gso=0 n g entries
    for r in 1 2 3 4 5; do
        entries=("/proc/$pid/task"/*)
        n=${#entries[@]}
        [ "$n" -ge "$thr" ] || thr=$n
        read -r n g < <(find "/proc/$pid/fd" -mindepth 1 -printf '%l\n' 2>/dev/null |
            awk -v udp="/proc/$pid/net/udp" '
                BEGIN { while ((getline line < udp) > 0) { split(line, f, " "); split(f[2], a, ":"); if (f[10] ~ /^[0-9]+$/ && a[2] != "12B5") gso["socket:[" f[10] "]"] = 1 } }
                { total++; if ($0 in gso) g++ }
                END { print total + 0, g + 0 }')
        [ "$n" -ge "$fd" ] || fd=$n
        [ $((n - g)) -ge "$fixed" ] || fixed=$((n - g))
        [ "$g" -le "$gso" ] || gso=$g
        if [ "$r" = 1 ]; then
            rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || rss=0
        fi
        [ "$r" = 5 ] || sleep 0.04
    done
    echo "${rss:-0} $thr $fd $gso $fixed"
}

# fd_table PID: what each of the process's fds is (a socket with the /proc/net table naming its
# inode), and its threads' names. Best effort: fds and threads come and go while it reads.
fd_table() {
    local f target ino tables
    for f in "/proc/$1/fd"/*; do
        target=$(readlink "$f" 2>/dev/null) || continue
        tables=
        if [[ $target =~ ^socket:\[([0-9]+)\]$ ]]; then
            ino=${BASH_REMATCH[1]}
            tables=$(grep -lw -- "$ino" "/proc/$1/net"/{unix,netlink,udp,raw,tcp,packet} 2>/dev/null | xargs -r -n1 basename | paste -sd, -) || true
        fi
        printf '%s -> %s %s\n' "${f##*/}" "$target" "$tables"
    done
    { cat "/proc/$1/task"/*/comm 2>/dev/null || true; } | sort | uniq -c | sed 's/^/thread /'
}

# sample PHASE: one sample of every daemon: CSV row, stats line, checks.
sample() {
    local phase=$1 t d pid rss thr fd gso fixed json viol fdb learned static limit row
    t=$((EPOCHSECONDS - START))
    T_LAST=$t
    [ "$phase" != soak ] || SOAK_T=$t
    SAMPLES=$((SAMPLES + 1))
    check_alive
    for d in "${DAEMONS[@]}"; do
        pid=$(pid_of "$d")
        read -r rss thr fd gso fixed < <(proc_figures "$pid")
        json=$(vc3 "$d" stats --json) || { check_alive; fail "stats --json on $d failed three times at t=${t}s"; }
        jq -e 'type == "object"' >/dev/null 2>&1 <<<"$json" || fail "stats --json on $d is not a JSON object: ${json:0:200}"
        jq -c --argjson t "$t" --arg phase "$phase" '{t: $t, phase: $phase} + .' <<<"$json" >>"$RESULTS/stats-$d.jsonl"
        viol=$(jq -nr --argjson c "$json" --argjson p "${PREV[$d]:-null}" "$JQ_INVARIANTS" | head -n 3 | paste -sd ';' -)
        [ -z "$viol" ] || fail "counter invariant broken on $d at t=${t}s: $viol"
        PREV[$d]=$json
        row=$(jq -r '[.rx_tunnel, .tx_tunnel, .rx_device, .tx_device, .rx_device_bytes, .tx_device_bytes,
                      .drops_total, .fdb_entries, .learned, .learn_refused, .mac_moves, .mac_frozen] | @csv' <<<"$json")
        echo "$t,$phase,$d,$pid,$rss,$thr,$fd,$gso,$fixed,$row" >>"$RESULTS/samples.csv"
        [ "$rss" -le "$RSS_MAX_KB" ] || fail "RSS of $d is ${rss} KiB at t=${t}s, above the ceiling of $RSS_MAX_KB KiB"
        [ "$gso" -le $((MAX_GSO_SOCKETS * THREADS)) ] ||
            fail "$d holds $gso UDP GSO sender sockets at t=${t}s, above its pool of $MAX_GSO_SOCKETS per worker"
        if [ "$d" = l2a ]; then
            # The cap: learned entries never above max_fdb; all entries never above max_fdb plus the
            # static entries the churn holds at most.
            fdb=$(vc3 l2a fdb show --json) || fail "fdb show --json on l2a failed three times at t=${t}s"
            learned=$(jq '[.[] | select(.kind == "learned")] | length' <<<"$fdb")
            static=$(jq '[.[] | select(.kind == "static")] | length' <<<"$fdb")
            [ "$learned" -le "$MAX_FDB" ] || fail "l2a lists $learned learned FDB entries at t=${t}s, above --max-fdb $MAX_FDB"
            [ "$static" -le "$STATIC_MAX" ] || fail "l2a lists $static static FDB entries at t=${t}s; the churn holds at most $STATIC_MAX"
            limit=$((MAX_FDB + STATIC_MAX))
            jq -e --argjson l "$limit" '.networks[0].fdb_entries <= $l' >/dev/null <<<"$json" ||
                fail "l2a's fdb_entries $(jq .networks[0].fdb_entries <<<"$json") at t=${t}s is above max_fdb + static ($limit)"
            echo "$t $learned $static" >>"$RESULTS/fdb-l2a.log"
        fi
        # Threads and fixed fds (all but the GSO pool's): constant once warm. A change seen in two
        # samples running fails (the fd tables, at the baseline and at each change, are kept as
        # fds-NAME-T.txt).
        if [ "$phase" = soak ] && [ "$t" -ge "$WARMUP" ]; then
            if [ -z "${BASE_THR[$d]:-}" ]; then
                BASE_THR[$d]=$thr
                BASE_FD[$d]=$fixed
                fd_table "$pid" >"$RESULTS/fds-$d-$t.txt"
            else
                [ "$fixed" = "${BASE_FD[$d]}" ] || fd_table "$pid" >"$RESULTS/fds-$d-$t.txt"
                if [ "$thr" != "${BASE_THR[$d]}" ]; then
                    [ "${ODD_THR[$d]:-0}" = 0 ] || fail "threads of $d changed from ${BASE_THR[$d]} (after warm-up) to $thr at t=${t}s (and in the sample before)"
                    ODD_THR[$d]=1
                else
                    ODD_THR[$d]=0
                fi
                if [ "$fixed" != "${BASE_FD[$d]}" ]; then
                    [ "${ODD_FD[$d]:-0}" = 0 ] || fail "fds of $d (not counting GSO senders) changed from ${BASE_FD[$d]} (after warm-up) to $fixed at t=${t}s (and in the sample before)"
                    ODD_FD[$d]=1
                else
                    ODD_FD[$d]=0
                fi
            fi
        fi
    done
    if [ -s "$RESULTS/churn-errors.log" ]; then
        fail "a control command failed: $(head -n 1 "$RESULTS/churn-errors.log")"
    fi
    check_dropped
}

# check_dropped: fails when the daemons dropped more than 10 + 1 in 1000 of the churn's answers.
# An answer dropped now and then is the 2 s client deadline on a loaded machine (reported, with
# its timing, in churn-dropped.log); more is a daemon that cannot keep up with its control socket.
check_dropped() {
    local f ok dr all_ok=0 all_dr=0
    for f in "$RESULTS"/churn-*.counts; do
        [ -f "$f" ] || continue
        read -r ok _ dr _ <"$f" || continue
        all_ok=$((all_ok + ok))
        all_dr=$((all_dr + ${dr:-0}))
    done
    [ "$all_dr" -le $((10 + all_ok / 1000)) ] ||
        fail "the daemons dropped $all_dr answers to control commands ($all_ok answered): $(head -n 1 "$RESULTS/churn-dropped.log")"
}

# rss_verdicts: one line per daemon "NAME ok|grows|short DETAIL" from the soak-phase samples
# taken after the warm-up (see RSS_PCT and RSS_KB above).
rss_verdicts() {
    awk -F, -v warm="$WARMUP" -v pct="$RSS_PCT" -v kb="$RSS_KB" '
        function median(a, lo, hi,    n, i, j, v, b) {
            n = 0
            for (i = lo; i < hi; i++) b[++n] = a[i]
            for (i = 2; i <= n; i++) { v = b[i]; for (j = i - 1; j >= 1 && b[j] > v; j--) b[j + 1] = b[j]; b[j + 1] = v }
            return (n % 2) ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
        }
        NR > 1 && $2 == "soak" && $1 >= warm { n[$3]++; rss[$3, n[$3] - 1] = $5; order[$3] = 1 }
        END {
            for (d in order) {
                m = n[d]
                if (m < 8) { printf "%s short %d samples after warm-up (8 needed): not judged\n", d, m; continue }
                q = int(m / 4)
                delete a
                for (i = 0; i < m; i++) a[i] = rss[d, i]
                q2 = median(a, q, 2 * q); q4 = median(a, m - q, m)
                grow = q4 - q2
                if (grow > kb && grow > q2 * pct / 100)
                    printf "%s grows second-quarter median %d KiB, last-quarter median %d KiB (+%d KiB, +%.1f%%)\n", d, q2, q4, grow, 100 * grow / q2
                else
                    printf "%s ok second-quarter median %d KiB, last-quarter median %d KiB (%+d KiB)\n", d, q2, q4, grow
            }
        }' "$RESULTS/samples.csv"
}

# ---------------------------------------------------------------------------------------------
# Report

# last_stats NAME: the last stats line recorded for NAME.
last_stats() { tail -n 1 "$RESULTS/stats-$1.jsonl" 2>/dev/null || echo '{}'; }

report() {
    REPORTED=1
    local out=$RESULTS/report.txt d mode a b f ok failed bytes verdict
    {
        echo "vtepd soak report"
        echo "started $(date -d "@$START" '+%F %T')  planned ${DUR}s  under load ${SOAK_T}s  samples $SAMPLES (every ${INTERVAL}s, warm-up ${WARMUP}s)"
        echo "vtepd: $VTEPD_BIN ($THREADS workers each)  results: $RESULTS"
        echo
        echo "per daemon (soak-phase samples): first / max / last; fds also without the UDP GSO senders"
        printf '%-6s %-9s %7s  %-22s %-9s %-12s %-12s %s\n' daemon mode pid rss_kb threads fds fds_no_gso gso_max
        awk -F, 'NR > 1 && $2 == "soak" {
                d = $3
                if (!(d in pid)) { order[++n] = d; pid[d] = $4; for (i = 5; i <= 9; i++) { first[d, i] = $i; mx[d, i] = $i } }
                for (i = 5; i <= 9; i++) { if ($i > mx[d, i]) mx[d, i] = $i; last[d, i] = $i }
            }
            END {
                for (k = 1; k <= n; k++) {
                    d = order[k]
                    printf "%s %s", d, pid[d]
                    for (i = 5; i <= 7; i++) printf " %s/%s/%s", first[d, i], mx[d, i], last[d, i]
                    printf " %s/%s/%s %s\n", first[d, 9], mx[d, 9], last[d, 9], mx[d, 8]
                }
            }' "$RESULTS/samples.csv" 2>/dev/null | while read -r d pid r t f x g; do
            printf '%-6s %-9s %7s  %-22s %-9s %-12s %-12s %s\n' "$d" "${MODE_OF[$d]}" "$pid" "$r" "$t" "$f" "$x" "$g"
        done
        echo
        echo "RSS growth (second-quarter vs last-quarter median after warm-up; fails above +${RSS_PCT}% and +${RSS_KB} KiB):"
        rss_verdicts 2>/dev/null | sort | sed 's/^/  /'
        echo
        echo "traffic (counters of both daemons of each pair, summed at the last sample):"
        printf '  %-9s %14s %14s %14s %14s %16s %16s\n' mode tx_tunnel_pkts rx_tunnel_pkts rx_device_pkts tx_device_pkts rx_device_bytes tx_device_bytes
        for mode in l2-vxlan:l2a:l2b l3-ipip:ipa:ipb l3-vxlan:l3a:l3b; do
            IFS=: read -r mode a b <<<"$mode"
            jq -rn --argjson a "$(last_stats "$a")" --argjson b "$(last_stats "$b")" --arg m "$mode" '
                def s(k): (($a[k] // 0) + ($b[k] // 0));
                "  \($m)\t\(s("tx_tunnel"))\t\(s("rx_tunnel"))\t\(s("rx_device"))\t\(s("tx_device"))\t\(s("rx_device_bytes"))\t\(s("tx_device_bytes"))"' |
                awk -F'\t' '{ printf "%-11s %14s %14s %14s %14s %16s %16s\n", $1, $2, $3, $4, $5, $6, $7 }'
        done
        echo "iperf3 rounds (TCP, -b $RATE, ${ROUND}s, alternating direction) and ping (every 0.2 s):"
        for mode in l2 ipip l3vx; do
            f=$RESULTS/traffic-$mode.log
            ok=0 failed=0 bytes=0
            if [ -f "$f" ]; then
                ok=$(awk '$4 == "ok"' "$f" | wc -l)
                failed=$(awk '$4 == "fail"' "$f" | wc -l)
                bytes=$(awk '{ s += $NF } END { printf "%.0f", s }' "$f")
            fi
            printf '  %-5s iperf3 rounds ok %d failed %d, %d bytes received (%.2f GB); ping %s\n' "$mode" "$ok" "$failed" \
                "$bytes" "$(awk -v b="$bytes" 'BEGIN { print b / 1e9 }')" "$(ping_summary "$mode")"
        done
        echo
        echo "drops by reason (last sample, non-zero):"
        for d in "${DAEMONS[@]}"; do
            printf '  %-4s %s\n' "$d" "$(last_stats "$d" | jq -r '[.drops // {} | to_entries[] | select(.value > 0) | "\(.key) \(.value)"] | join(", ") | if . == "" then "none" else . end')"
        done
        echo
        echo "learning on l2a (--ageing $AGEING --max-fdb $MAX_FDB --mac-move $MAC_MOVE):"
        last_stats l2a | jq -r '"  learned \(.learned), learn_refused \(.learn_refused), mac_moves \(.mac_moves), mac_frozen \(.mac_frozen), mac_moves_held \(.mac_moves_held), learn_static_conflict \(.learn_static_conflict), fdb_entries now \(.fdb_entries)"'
        [ ! -s "$RESULTS/fdb-l2a.log" ] ||
            awk '{ if ($2 > m) m = $2 } END { printf "  most learned entries listed at a sample: %d (cap %d)\n", m, cap }' cap="$MAX_FDB" "$RESULTS/fdb-l2a.log"
        [ ! -s "$RESULTS/learn.json" ] || echo "  sender: $(cat "$RESULTS/learn.json")"
        [ ! -s "$RESULTS/cap-check.txt" ] || echo "  end check: $(cat "$RESULTS/cap-check.txt")"
        echo
        echo "control churn (each a vtepd client command on a control socket):"
        for f in l2 ipip l3vx; do
            [ -f "$RESULTS/churn-$f.counts" ] || continue
            read -r ok failed dropped slow <"$RESULTS/churn-$f.counts"
            printf '  %-5s %d commands ok, %d failed, %d answers dropped by the daemon, %d took over 1 s\n' \
                "$f" "$ok" "$failed" "${dropped:-0}" "${slow:-0}"
        done
        [ ! -s "$RESULTS/churn-dropped.log" ] || sed 's/^/  dropped: /' "$RESULTS/churn-dropped.log" | head -n 10
        echo "  sampler's queries that failed and were asked again: $({ wc -l <"$RESULTS/retries.log"; } 2>/dev/null || echo 0)"
        echo
        if [ -s "$RESULTS/malformed.jsonl" ]; then
            echo "malformed input: $(wc -l <"$RESULTS/malformed.jsonl") bursts (every ${MALFORMED_EVERY}s), datagrams sent by kind:"
            jq -s -r 'reduce .[] as $b ({}; reduce ($b | to_entries[]) as $e (.; .[$e.key] += $e.value))
                | to_entries | map("\(.key) \(.value)") | join(", ")' "$RESULTS/malformed.jsonl" | fold -s -w 100 | sed 's/^/  /'
        else
            echo "malformed input: no bursts sent"
        fi
        [ ! -s "$RESULTS/shutdown.txt" ] || { echo; echo "shutdown: $(cat "$RESULTS/shutdown.txt")"; }
        echo
        if [ -n "$FAIL_REASON" ]; then verdict="FAIL: $FAIL_REASON"; else verdict=PASS; fi
        echo "verdict: $verdict"
    } | tee "$out"
}

# ping_summary MODE: "N sent, M received, L% loss" from the mode's ping log.
ping_summary() {
    local f=$RESULTS/ping-$1.log
    sed -n 's/^\([0-9]*\) packets transmitted, \([0-9]*\) received.* \([0-9.]*\)% packet loss.*/\1 sent, \2 received, \3% loss/p' "$f" 2>/dev/null |
        tail -n 1 | grep . || echo "no summary"
}

# ---------------------------------------------------------------------------------------------
# The fabric

log "soak $LAB_PREFIX: ${DUR}s, sampling every ${INTERVAL}s, warm-up ${WARMUP}s, results in $RESULTS"
lab_underlay || fail "cannot create the underlay"
for h in l2a:192.0.2.1 l2b:192.0.2.2 ipa:198.51.100.1 ipb:198.51.100.2 l3a:203.0.113.1 l3b:203.0.113.2 x:192.0.2.3; do
    lab_host "${h%%:*}" "${h#*:}" || fail "cannot create host ${h%%:*}"
done
for a in 192.0.2.4/24 198.51.100.3/24 203.0.113.3/24; do
    ip -n "$(lab_ns x)" addr add "$a" dev eth0 || fail "cannot add $a to x"
done

# The learning sender also drains what l2a and l3a flood to x; start it before the daemons flood.
# It runs for the whole soak plus the setup (bounded), writing its counts at the end.
SENDER_SECS=$((DUR + 120))

start_daemon l2a vtep0 --local 192.0.2.1 --vni 42 --peer 192.0.2.2 --peer 192.0.2.3 --peer 192.0.2.4 \
    --address 10.42.1.1/16 --ageing "$AGEING" --max-fdb "$MAX_FDB" --mac-move "$MAC_MOVE"
start_daemon l2b vtep0 --local 192.0.2.2 --vni 42 --peer 192.0.2.1 --address 10.42.2.1/16
start_daemon ipa tunl0 --mode l3 --encap ipip --local 198.51.100.1 --address 10.244.1.64/32 \
    --route 10.244.2.64/26=198.51.100.2 --route 10.244.3.64/26=198.51.100.3
start_daemon ipb tunl0 --mode l3 --encap ipip --local 198.51.100.2 --address 10.244.2.64/32 \
    --route 10.244.1.64/26=198.51.100.1
start_daemon l3a vtep0 --mode l3 --encap vxlan --local 203.0.113.1 --vni 7 --address 10.245.1.0/32 \
    --route 10.245.2.0/24=10.245.2.0 --peer 203.0.113.2 --peer 203.0.113.3
L3A_MAC=$(vc3 l3a stats --json | jq -r '.networks[0].mac')
[[ $L3A_MAC =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || fail "l3a's stats --json has no MAC: '$L3A_MAC'"
start_daemon l3b vtep0 --mode l3 --encap vxlan --local 203.0.113.2 --vni 7 --address 10.245.2.0/32 \
    --route 10.245.1.0/24=10.245.1.0 --neigh "10.245.1.0=$L3A_MAC" --peer 203.0.113.1
L3B_MAC=$(vc3 l3b stats --json | jq -r '.networks[0].mac')
[[ $L3B_MAC =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || fail "l3b's stats --json has no MAC: '$L3B_MAC'"
vc l3a neigh add 10.245.2.0 "$L3B_MAC" >/dev/null || fail "neigh add on l3a failed"
log "l3a MAC $L3A_MAC, l3b MAC $L3B_MAC (static neighbours both ways)"

for pair in "l2a 10.42.2.1" "l2b 10.42.1.1" "ipa 10.244.2.64" "ipb 10.244.1.64" "l3a 10.245.2.0" "l3b 10.245.1.0"; do
    read -r from to <<<"$pair"
    lab_wait_ping "$from" "$to" || fail "$from cannot ping $to before the soak"
done
log "every pair pings both ways"

START=$EPOCHSECONDS
END=$((START + DUR))
echo "t,phase,daemon,pid,rss_kb,threads,fds,gso_fds,fixed_fds,rx_tunnel,tx_tunnel,rx_device,tx_device,rx_device_bytes,tx_device_bytes,drops_total,fdb_entries,learned,learn_refused,mac_moves,mac_frozen" \
    >"$RESULTS/samples.csv"

bg learner ip netns exec "$(lab_ns x)" timeout $((SENDER_SECS + 10)) "$LAB_PY" "$LAB_HOME/soak_traffic.py" learn \
    --dst 192.0.2.1 --src-a 192.0.2.3 --src-b 192.0.2.4 --vni 42 --rate "$LEARN_RATE" --flap "$FLAP_MACS" \
    --seconds "$DUR" </dev/null >"$RESULTS/learn.json" 2>"$RESULTS/learn.err"
bg traffic-l2 traffic_loop l2 l2a l2b 10.42.2.1 5201
bg traffic-ipip traffic_loop ipip ipa ipb 10.244.2.64 5202
bg traffic-l3vx traffic_loop l3vx l3a l3b 10.245.2.0 5203
bg ping-l2 ip netns exec "$(lab_ns l2b)" timeout $((DUR + 10)) ping -q -i 0.2 -w "$DUR" 10.42.1.1 \
    </dev/null >"$RESULTS/ping-l2.log" 2>&1
bg ping-ipip ip netns exec "$(lab_ns ipb)" timeout $((DUR + 10)) ping -q -i 0.2 -w "$DUR" 10.244.1.64 \
    </dev/null >"$RESULTS/ping-ipip.log" 2>&1
bg ping-l3vx ip netns exec "$(lab_ns l3b)" timeout $((DUR + 10)) ping -q -i 0.2 -w "$DUR" 10.245.1.0 \
    </dev/null >"$RESULTS/ping-l3vx.log" 2>&1
bg churn-l2 churn_loop l2 l2a l2b
bg churn-ipip churn_loop ipip ipa ipb
bg churn-l3vx churn_loop l3vx l3a l3b
bg malformed malformed_loop
log "soak running until $(date -d "@$END" +%T): traffic in every mode, control churn, learning churn, malformed bursts"

# ---------------------------------------------------------------------------------------------
# The soak: a sample every INTERVAL s; daemons checked every second.

sample soak
next=$((START + INTERVAL))
while [ "$EPOCHSECONDS" -lt "$END" ]; do
    sleep 1
    check_alive
    if [ "$EPOCHSECONDS" -ge "$next" ] && [ "$EPOCHSECONDS" -lt "$END" ]; then
        sample soak
        [ $((SAMPLES % 6)) != 0 ] || log "t=${T_LAST}s: $(awk -F, -v t="$T_LAST" '$1 == t { printf "%s %sKiB/%st/%sfd  ", $3, $5, $6, $7 }' "$RESULTS/samples.csv")"
        next=$((next + INTERVAL))
    fi
done
sample soak
log "soak time over at t=${T_LAST}s; waiting for the traffic and churn to end"

# Our jobs end by themselves (each bounded); wait for them, bounded, then stop what is left.
deadline=$((SECONDS + ROUND + 30))
for pid in "${BG_PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
done
stop_jobs
check_alive

# ---------------------------------------------------------------------------------------------
# At rest: exact checks that need quiet counters, then the learning cap, then shutdown.

sleep 3 # workers publish their counters after every round and every second's tick
sample final
a=$(last_stats l2a)
viol=$(jq -r --argjson moves "$MOVES" --argjson cap "$MAX_FDB" '
    (if .mac_moves_held < .mac_frozen then "mac_moves_held \(.mac_moves_held) < mac_frozen \(.mac_frozen) (every freeze holds a move)" else empty end),
    (if .mac_frozen * $moves > .mac_moves then "mac_frozen \(.mac_frozen) x \($moves) moves > mac_moves \(.mac_moves) (a freeze takes \($moves) moves first)" else empty end),
    (if .learned <= $cap then "learned \(.learned): the learning churn never passed the cap \($cap)" else empty end),
    (if .learn_refused == 0 then "learn_refused is 0: the cap was never hit" else empty end),
    (if .mac_frozen == 0 then "mac_frozen is 0: no MAC was ever frozen" else empty end)' <<<"$a" | paste -sd ';' -)
[ -z "$viol" ] || fail "l2a at rest: $viol"
# Every daemon must have counted the malformed input sent to it.
if [ -s "$RESULTS/malformed.jsonl" ]; then
    for want in "l2a truncated vxlan_flags unknown_vni inner_runt" "l2b unknown_peer" \
        "ipa bad_ipip ttl_zero own_source" "ipb unknown_peer" "l3a truncated vxlan_flags unknown_vni inner_runt" "l3b unknown_peer"; do
        read -r d reasons <<<"$want"
        for r in $reasons; do
            last_stats "$d" | jq -e --arg r "$r" '.drops[$r] > 0' >/dev/null ||
                fail "$d counted no $r drops although malformed bursts were sent to it"
        done
    done
else
    fail "no malformed burst was sent"
fi

# The learning cap must be whole again: after flushing l2a's learned entries, MAX_FDB + 16 new
# MACs must give exactly MAX_FDB learned entries (a reservation lost on some path would leave
# fewer places).
vc l2a fdb flush --learned-only >/dev/null || fail "fdb flush --learned-only on l2a failed"
ip netns exec "$(lab_ns x)" timeout 60 "$LAB_PY" "$LAB_HOME/soak_traffic.py" fill --dst 192.0.2.1 --src-a 192.0.2.3 \
    --count $((MAX_FDB + 16)) </dev/null >/dev/null || fail "the cap check's sender failed"
sleep 1
got=$(vc3 l2a fdb show --json | jq '[.[] | select(.kind == "learned")] | length') || fail "fdb show on l2a failed"
echo "after a flush, $((MAX_FDB + 16)) new MACs gave $got learned entries (cap $MAX_FDB)" >"$RESULTS/cap-check.txt"
[ "$got" = "$MAX_FDB" ] || fail "learning cap not whole at the end: $((MAX_FDB + 16)) new MACs after a flush gave $got learned entries, want $MAX_FDB"

# Clean shutdown: SIGTERM, exit status 0 within the bound.
summary=
for d in "${DAEMONS[@]}"; do
    pid=$(pid_of "$d")
    kill -TERM "$pid"
    deadline=$((SECONDS + LAB_TIMEOUT))
    while alive "$d" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    alive "$d" && fail "daemon $d did not exit within ${LAB_TIMEOUT}s of SIGTERM"
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    summary+="$d $rc, "
    [ "$rc" = 0 ] || { echo "${summary%, }" >"$RESULTS/shutdown.txt"; fail "daemon $d exited with status $rc on SIGTERM"; }
done
echo "exit status on SIGTERM: ${summary%, }" >"$RESULTS/shutdown.txt"

# ---------------------------------------------------------------------------------------------
# Verdicts over the whole run.

while read -r d verdict detail; do
    [ "$verdict" != grows ] || fail "RSS of $d grows without bound: $detail"
done < <(rss_verdicts)
for mode in l2 ipip l3vx; do
    f=$RESULTS/traffic-$mode.log
    ok=$(awk '$4 == "ok"' "$f" 2>/dev/null | wc -l)
    failed=$(awk '$4 == "fail"' "$f" 2>/dev/null | wc -l)
    [ "$ok" -gt 0 ] || fail "no iperf3 round succeeded in mode $mode ($failed failed)"
    # A round may fail when it lands on a churn step that briefly takes a path away; more than one
    # in ten is a broken mode.
    [ $((failed * 10)) -le $((ok + failed)) ] || fail "iperf3 failed in $failed of $((ok + failed)) rounds in mode $mode: $(awk '$4 == "fail"' "$f" | head -n 1)"
    loss=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' "$RESULTS/ping-$mode.log" | tail -n 1)
    [ -n "$loss" ] || fail "ping in mode $mode printed no summary"
    awk -v l="$loss" -v m="$MAX_LOSS" 'BEGIN { exit !(l <= m) }' || fail "ping in mode $mode lost $loss% (more than $MAX_LOSS%)"
done

report
exit 0
