#!/usr/bin/env bash
# Throughput benchmark: vtepd against the Linux kernel's own vxlan device, side by side in one run on
# one topology. Two hosts, h1 (192.0.2.1) and h2 (192.0.2.2), on a veth underlay (one veth pair: each
# host's eth0, MTU 1500, default offloads; no bridge between them). Each mode in turn
# puts its tunnel between the hosts, with the overlay address on the tunnel device itself, measures,
# and is torn down:
#   bare_veth       no tunnel: the underlay itself (h1 -> 192.0.2.2)
#   kernel_vxlan    `ip link add vx0 type vxlan id 42 dstport 4789 ...` on both hosts, the other host
#                   in its flood list (10.42.0.1/24 -> 10.42.0.2)
#   vtepd_l2_vxlan  vtepd --mode l2 (TAP vtep0), VNI 42, the other host as peer (10.42.0.1 -> .2)
#   vtepd_l3_vxlan  vtepd --mode l3 --encap vxlan (TUN tun0), VNI 42, the other host as peer, one
#                   on-link subnet resolved by vtepd's ARP (10.44.0.1/24 -> 10.44.0.2)
#   vtepd_l3_ipip   vtepd --mode l3 --encap ipip (TUN tun0), --route to the other host's /24
#                   (10.43.1.1/24 -> 10.43.2.1)
#   vtepd_l2_rco, vtepd_l3_rco
#                   vtepd_l2_vxlan and vtepd_l3_vxlan with VXLAN remote checksum offload both ways
#                   (--remcsum-tx on --remcsum-rx on: neither daemon sums a TCP segment)
# and over an IPv6 underlay (2001:db8:42::1/64 and ::2 on the same veth pair):
#   kernel_vxlan6   the kernel's vxlan device with IPv6 local and flood addresses (10.46.0.1/24 -> .2)
#   vtepd_l2_vxlan6 vtepd --mode l2 with an IPv6 --local and --peer (10.46.0.1/24 -> .2); its
#                   ratios are to kernel_vxlan6, the same underlay's kernel figure
# and the ceilings, the fastest a userspace process moves the same bytes with no tunnel logic
# (examples/ceiling.rs, built with cargo unless BENCH_CEILING_BIN names it):
#   ceiling_l2      a TAP (ceil0, the offloads vtepd uses) forwarded unchanged over UDP (GSO out,
#                   GRO in) to the same program on the other host, which writes it back into its own
#                   TAP (10.42.0.1/24 -> .2); the device's gso_max_size is 64000 so that a
#                   super-frame fits one UDP send
#   ceiling_l3      the same with a TUN (10.44.0.1/24 -> .2)
#   ceiling_ipip    raw sockets only: 1500-byte protocol-4 packets sent as fast as the kernel takes
#                   them (sendmmsg) and counted as received (recvmmsg) on h2; its rate, in Gbit/s
#                   of inner bytes, stands in the TCP 1 (one sending thread) and TCP 4 (two) columns
# For each mode, from h1 to h2:
#   tcp1, tcp4  iperf3 TCP throughput with 1 and 4 streams (Gbit/s, as received)
#   udp64       64-byte forwarding rate: packets per second arriving on h2's overlay device while
#               scripts/udpgen.rs floods 18-byte UDP payloads (46-byte IPv4 packets: 64-byte Ethernet
#               frames with FCS) from 1 and from 2 sending threads; the better of the two is kept
#               (on a 2-core machine the generator competes with the forwarder for the CPU)
#   rtt         ping round-trip time (10 ms apart), p50 and p99 of per-packet times (microseconds)
#   cpu         CPU seconds spent during the tcp1 test per GB received, counted system-wide from
#               /proc/stat (user+nice+system+irq+softirq, all CPUs) so kernel and userspace modes
#               compare, minus what processes that are not ours used meanwhile (a shared machine);
#               cpu_all: the same without that subtraction; daemon_cpu (vtepd modes): both vtepd
#               processes' own CPU (/proc/PID/stat) per GB
# It prints a table with every vtepd figure also as a ratio to kernel vxlan from the same run.
#
# usage: sudo lab/bench.sh [--quick] [--modes LIST] [--repeat N] [--baseline BIN] [--json [FILE]]
#                          [--quiet] [--keep] [--profile perf|callgrind [--profile-load tcp|udp]]
#   --quick       short runs (about 10 s a mode instead of about 30 s)
#   --modes LIST  comma-separated modes (default: all): bare_veth, kernel_vxlan, kernel_vxlan6,
#                 ceiling_l2, ceiling_l3, ceiling_ipip, vtepd_l2_vxlan, vtepd_l2_vxlan6,
#                 vtepd_l3_vxlan, vtepd_l3_ipip, vtepd_l2_rco, vtepd_l3_rco, or short names bare,
#                 kernel, kernel6, vtepd_l2, vtepd_l2v6, vtepd_l3vx, vtepd_ipip, vtepd_l2rco,
#                 vtepd_l3rco, ceiling (the three
#                 ceilings), all. Each vtepd mode is also shown as a share of its ceiling (L2
#                 VXLAN of ceiling_l2, L3 VXLAN of ceiling_l3, IPIP of ceiling_ipip) when both ran
#   --repeat N    N rounds over all modes (default 1), interleaved so a change of background load
#                 hits every mode alike; each figure is the best of its rounds (highest rate, lowest
#                 RTT and CPU), which is what the code can do when other work leaves it alone
#   --baseline BIN
#                 A/B run: BIN is an already built "before" vtepd; every selected vtepd mode is
#                 measured twice in each round on the same topology, with BIN and with the current
#                 vtepd (VTEPD_BIN or the cargo build), back to back, which goes first alternating
#                 from round to round (odd rounds: the baseline; an even --repeat puts each first
#                 equally often); a second table gives per vtepd mode the baseline's figures (best
#                 of the rounds, as above), the current ones, current/baseline, and tcp1's
#                 current/baseline in each round (the noise). Not with --profile
#   --trace-armed With --baseline: while the current vtepd is measured, both its daemons have a
#                 `vtepd trace` armed that matches no packet (--ip 10.255.255.254), so every packet
#                 pays the armed check and none is traced; the baseline runs without. With the
#                 same binary as --baseline this is the cost of an armed trace, A/B in one run
#   --plot FILE.svg
#                 also draw the results (lab/bench_plot.py, matplotlib): for each figure, each vtepd
#                 mode's ratio to kernel vxlan and to its ceiling
#   --json [FILE] also write the results as one JSON object to FILE (or to stdout when FILE is
#                 missing or `-`; the table then goes to stderr). Keys: <mode>_<metric> with metric
#                 tcp1_gbps, tcp4_gbps, udp64_pps, udp64_offered_pps, rtt_p50_us, rtt_p99_us,
#                 cpu_s_per_gb, cpu_all_s_per_gb, others_cpus (CPUs busy with other processes during
#                 tcp1), daemon_cpu_s_per_gb (vtepd modes); <mode>_status (ok, n/a, failed); for vtepd
#                 modes <mode>_<tcp1|tcp4|udp64|rtt_p50|rtt_p99|cpu>_ratio (vtepd / kernel vxlan)
#                 and, when its ceiling ran, <mode>_<same>_of_ceiling (vtepd / its ceiling);
#                 and facts of the run (kernel, cpus, load, durations). A figure not measured is null.
#                 With --baseline, for vtepd modes also <mode>_base_<metric> and <mode>_base_status
#                 (the baseline's, same metrics), <mode>_<tcp1|tcp4|udp64|rtt_p50|rtt_p99|cpu|
#                 daemon_cpu>_vs_base (current / baseline), <mode>_tcp1_vs_base_rounds (an array:
#                 tcp1 current / baseline of each round in which both were measured), and
#                 baseline_bin, vtepd_bin (the two binaries' paths)
#   --quiet       print nothing but failures (and the JSON when asked for)
#   --keep        leave the lab up at the end
#   --profile perf|callgrind
#                 instead of measuring, profile both daemons of each selected vtepd mode under load
#                 (10 s; --quick: 3 s) and write reports to target/bench/profile/<mode>-*.txt:
#                 perf: `perf record -g -e cpu-clock` (software clock: no hardware counters in this
#                 VM), time by binary, by symbol, and inclusive by call chain (which syscall);
#                 callgrind: the daemons run under valgrind, user-space instructions by function
#                 and per packet forwarded (immune to a noisy machine; the kernel is invisible to it)
#   --profile-load tcp|udp
#                 the load while profiling: one iperf3 TCP stream (default) or the 64-byte UDP flood
# Environment: VTEPD_BIN (a built vtepd; otherwise cargo builds the release binary), BENCH_VTEPD_ARGS
# (extra `vtepd run` flags, word-split, e.g. "--threads 1"), BENCH_PROFILE_SYSTEM=1 (--profile perf
# samples the whole machine - iperf3, softirqs, idle - instead of the two daemons),
# BENCH_BASELINE_BIN (the baseline binary when --baseline is not given), LAB_SKIP_SETUP=1, LAB_PREFIX.
# Exit status: 0 when every selected mode was measured or is not supported by this vtepd yet (vtepd
# exits with status 2 saying "not supported", or refusing a flag the mode needs: reported as n/a),
# 1 when a mode that should work failed (with either binary of an A/B run), 2 for bad usage.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BENCH_MODES_ALL="bare_veth kernel_vxlan kernel_vxlan6 ceiling_l2 ceiling_l3 ceiling_ipip vtepd_l2_vxlan vtepd_l2_vxlan6 vtepd_l3_vxlan vtepd_l3_ipip vtepd_l2_rco vtepd_l3_rco"
# The ceiling of each vtepd mode.
declare -A BENCH_CEILING=([vtepd_l2_vxlan]=ceiling_l2 [vtepd_l3_vxlan]=ceiling_l3 [vtepd_l3_ipip]=ceiling_ipip
    [vtepd_l2_rco]=ceiling_l2 [vtepd_l3_rco]=ceiling_l3)
# The kernel figure each mode is a ratio to: kernel_vxlan, but for the IPv6 underlay's.
declare -A BENCH_KERNEL=([vtepd_l2_vxlan6]=kernel_vxlan6)
BENCH_VNI=42
BENCH_IPERF_PORT=5201
BENCH_UDP_PORT=9000
BENCH_UDP_PAYLOAD=18 # + 8 UDP + 20 IPv4 = 46-byte packet = 64-byte Ethernet frame with its FCS
# Figures of every mode, and (bench_best) whether more or less is better.
BENCH_METRICS="tcp1_gbps tcp4_gbps udp64_pps udp64_offered_pps rtt_p50_us rtt_p99_us cpu_s_per_gb cpu_all_s_per_gb others_cpus"

bench_usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; }
bench_bad_usage() {
    printf 'lab/bench.sh: %s (try --help)\n' "$*" >&2
    exit 2
}

# bench_mode_name NAME: the full mode name of a full or short name, or nothing.
bench_mode_name() {
    case $1 in
    bare | bare_veth) echo bare_veth ;;
    kernel | kernel_vxlan) echo kernel_vxlan ;;
    kernel6 | kernel_vxlan6) echo kernel_vxlan6 ;;
    vtepd_l2 | vtepd_l2_vxlan) echo vtepd_l2_vxlan ;;
    vtepd_l2v6 | vtepd_l2_vxlan6) echo vtepd_l2_vxlan6 ;;
    vtepd_l3vx | vtepd_l3_vxlan) echo vtepd_l3_vxlan ;;
    vtepd_ipip | vtepd_l3_ipip) echo vtepd_l3_ipip ;;
    vtepd_l2rco | vtepd_l2_rco) echo vtepd_l2_rco ;;
    vtepd_l3rco | vtepd_l3_rco) echo vtepd_l3_rco ;;
    ceiling_l2 | ceiling_l3 | ceiling_ipip) echo "$1" ;;
    ceiling) echo ceiling_l2 ceiling_l3 ceiling_ipip ;;
    esac
}

QUICK=0
MODES=$BENCH_MODES_ALL
JSON_OUT=
ROUNDS=1
PROFILE=
PROFILE_LOAD=tcp
BASELINE_BIN=${BENCH_BASELINE_BIN:-}
PLOT_OUT=
TRACE_ARMED=0
while [ $# -gt 0 ]; do
    case $1 in
    --quick) QUICK=1 ;;
    --modes)
        [ $# -ge 2 ] || bench_bad_usage "--modes needs a list"
        MODES=
        for m in ${2//,/ }; do
            if [ "$m" = all ]; then
                MODES+=" $BENCH_MODES_ALL"
                continue
            fi
            full=$(bench_mode_name "$m")
            [ -n "$full" ] || bench_bad_usage "unknown mode '$m'"
            MODES+=" $full"
        done
        [ -n "$MODES" ] || bench_bad_usage "--modes needs at least one mode"
        shift
        ;;
    --repeat)
        [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]?$ ]] || bench_bad_usage "--repeat needs a count from 1 to 99"
        ROUNDS=$2
        shift
        ;;
    --trace-armed) TRACE_ARMED=1 ;;
    --baseline)
        [[ $# -ge 2 && -n $2 ]] || bench_bad_usage "--baseline needs a vtepd binary"
        BASELINE_BIN=$2
        shift
        ;;
    --plot)
        [[ $# -ge 2 && -n $2 ]] || bench_bad_usage "--plot needs a file name"
        PLOT_OUT=$2
        shift
        ;;
    --json)
        if [ $# -ge 2 ] && [ "${2#--}" = "$2" ]; then
            JSON_OUT=$2
            shift
        else
            JSON_OUT=-
        fi
        ;;
    -q | --quiet) QUIET=1 ;;
    --keep) LAB_KEEP=1 ;;
    --profile)
        [ $# -ge 2 ] && [[ $2 == perf || $2 == callgrind ]] || bench_bad_usage "--profile perf or callgrind"
        PROFILE=$2
        shift
        ;;
    --profile-load)
        [ $# -ge 2 ] && [[ $2 == tcp || $2 == udp ]] || bench_bad_usage "--profile-load tcp or udp"
        PROFILE_LOAD=$2
        shift
        ;;
    -h | --help)
        bench_usage
        exit 0
        ;;
    *) bench_bad_usage "unknown option $1" ;;
    esac
    shift
done
# Each selected mode once, in the canonical order.
SELECTED=
for m in $BENCH_MODES_ALL; do
    [[ " $MODES " != *" $m "* ]] || SELECTED+="${SELECTED:+ }$m"
done
# The baseline of an A/B run: an executable file, named by its absolute path (`ip netns exec` would
# look a bare name up in PATH).
if [ -n "$BASELINE_BIN" ]; then
    [ -e "$BASELINE_BIN" ] || bench_bad_usage "baseline vtepd $BASELINE_BIN: no such file"
    [ -f "$BASELINE_BIN" ] || bench_bad_usage "baseline vtepd $BASELINE_BIN: not a file"
    [ -x "$BASELINE_BIN" ] || bench_bad_usage "baseline vtepd $BASELINE_BIN: not executable"
    [ -z "$PROFILE" ] || bench_bad_usage "--baseline (or BENCH_BASELINE_BIN) does not go with --profile"
    [[ " $SELECTED" == *" vtepd_"* ]] || bench_bad_usage "--baseline needs a vtepd mode among the modes"
fi
if [ "$TRACE_ARMED" = 1 ] && [ -z "$BASELINE_BIN" ]; then
    bench_bad_usage "--trace-armed needs --baseline"
    BASELINE_BIN=$(realpath -- "$BASELINE_BIN")
fi

# Human output goes to stderr when the JSON goes to stdout.
if [ "$JSON_OUT" = - ]; then exec 3>&1 1>&2; else exec 3>&1; fi

if [ "$QUICK" = 1 ]; then
    PINGS=50 TCP_SECS=1 UDP_SECS=1 PROFILE_SECS=3
else
    PINGS=200 TCP_SECS=5 UDP_SECS=3 PROFILE_SECS=10
fi
UDP_THREADS="1 2"
UDP_WARMUP=0.5

for tool in iperf3 jq ping ip rustc awk; do
    command -v "$tool" >/dev/null || lab_die "$tool not found (scripts/setup.sh installs the lab's tools)" || exit 1
done
if [ -n "$PLOT_OUT" ]; then
    /usr/bin/python3 -c 'import matplotlib' 2>/dev/null ||
        lab_die "--plot needs matplotlib for /usr/bin/python3 (apt-get install python3-matplotlib)" || exit 1
fi
case $PROFILE in
perf) command -v perf >/dev/null || lab_die "perf not found (apt-get install linux-perf)" || exit 1 ;;
callgrind) command -v valgrind >/dev/null || lab_die "valgrind not found (apt-get install valgrind)" || exit 1 ;;
esac
lab_prepare
lab_traps
PROFILE_DIR=$LAB_REPO/target/bench/profile
BENCH_STOP_SECS=5
if [ "$PROFILE" = callgrind ]; then
    # `vtepd run` under callgrind (client commands run as they are); valgrind starts and stops slowly.
    LAB_TIMEOUT=60 BENCH_STOP_SECS=60
    mkdir -p "$LAB_DIR" "$PROFILE_DIR"
    cat >"$LAB_DIR/vtepd-callgrind" <<EOF
#!/bin/sh
if [ "\$1" = run ]; then
    exec valgrind --tool=callgrind --callgrind-out-file="$PROFILE_DIR/callgrind.out.%p" "$VTEPD_BIN" "\$@"
fi
exec "$VTEPD_BIN" "\$@"
EOF
    chmod +x "$LAB_DIR/vtepd-callgrind"
    VTEPD_BIN=$LAB_DIR/vtepd-callgrind
fi

# ---------------------------------------------------------------------------------------------
# Results: R[key] = JSON text (a number, a string or null), written out at the end. Figures are
# first collected per round in ROUNDS_OF[key] (space-separated) and reduced by bench_best.

declare -A R ROUNDS_OF
bench_set() { R[$1]=$2; }
bench_set_str() { R[$1]=$(jq -n --arg v "$2" '$v'); }
bench_get() { printf '%s' "${R[$1]:-null}"; }
# bench_record KEY VALUE: one round's figure.
bench_record() {
    ROUNDS_OF[$1]="${ROUNDS_OF[$1]:-}${ROUNDS_OF[$1]:+ }$2"
    R[$1]=$2
}
# bench_best KEY: reduces the key's rounds to the best one: the highest rate, the lowest RTT or CPU;
# the mean for others_cpus (a fact about the run, not a figure to better).
bench_best() {
    local key=$1 how
    [ -n "${ROUNDS_OF[$key]:-}" ] || return 0
    case $key in
    *_gbps | *_pps) how=max ;;
    *_others_cpus) how=mean ;;
    *) how=min ;;
    esac
    R[$key]=$(tr ' ' '\n' <<<"${ROUNDS_OF[$key]}" | awk -v how="$how" '
        { v = $1 + 0; s += v; if (NR == 1 || (how == "max" ? v > b : v < b)) b = v }
        END { if (how == "mean") b = s / NR; print (b == int(b) ? b : sprintf("%.6g", b)) }')
}
# bench_fmt VALUE DECIMALS: VALUE with DECIMALS decimals, or n/a for null.
bench_fmt() {
    if [ "$1" = null ]; then printf 'n/a'; else LC_ALL=C printf "%.${2}f" "$1"; fi
}
# bench_vs_base_name METRIC: the name of a metric's A/B ratio key (<mode>_<name>_vs_base); nothing if
# none.
bench_vs_base_name() {
    case $1 in
    daemon_cpu_s_per_gb) echo daemon_cpu ;;
    *) bench_ratio_name "$1" ;;
    esac
}
# bench_ratio_name METRIC: the name of a metric's ratio key (<mode>_<name>_ratio); nothing if none.
bench_ratio_name() {
    case $1 in
    tcp1_gbps | tcp4_gbps | udp64_pps) echo "${1%_*}" ;;
    rtt_p50_us | rtt_p99_us) echo "${1%_us}" ;;
    cpu_s_per_gb) echo cpu ;;
    esac
}
# bench_div A B [SCALE]: A / B * SCALE, or null when either is null or B is 0.
bench_div() {
    awk -v a="$1" -v b="$2" -v s="${3:-1}" 'BEGIN {
        if (a == "null" || b == "null" || b + 0 == 0) print "null"; else printf "%.6g\n", a / b * s }'
}
# bench_now: seconds since the epoch, with nanoseconds.
bench_now() { date +%s.%N; }

# ---------------------------------------------------------------------------------------------
# CPU accounting (jiffies: 1/BENCH_HZ s)

BENCH_HZ=$(getconf CLK_TCK)
# bench_cpu_busy: busy jiffies of all CPUs (user nice system irq softirq of /proc/stat's cpu line).
bench_cpu_busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
# bench_proc_cpu PID...: user+system jiffies of the processes (all their threads); 0 for none.
bench_proc_cpu() {
    local pid total=0 stat rest f
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        rest=${stat##*) } # the command name may hold spaces and parentheses
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12])) # fields 14 and 15 (utime, stime), counted from 1 with pid and comm
    done
    echo "$total"
}
# bench_others_cpu: jiffies used so far by processes that are not this script or its descendants
# (nor kernel threads, which do our softirq work when it is deferred): user + system, plus the
# same of their reaped children (cutime, cstime), so that a compiler that started and ended
# between two readings is counted through its parent.
bench_others_cpu() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v me="$$" '
        {
            match($0, /.*\) /) # the command name may hold spaces and parentheses
            split(substr($0, RLENGTH + 1), f, " ")
            pid = $1 + 0
            ppid[pid] = f[2] + 0
            used[pid] = f[12] + f[13] + f[14] + f[15]
        }
        END {
            ours[me] = 1
            do {
                grew = 0
                for (p in ppid) if (!(p in ours) && (ppid[p] in ours)) { ours[p] = 1; grew = 1 }
            } while (grew)
            for (p in used) if (!(p in ours) && p != 2 && ppid[p] != 2) total += used[p]
            print total + 0
        }'
}

# bench_background_load SECS: how many CPUs were busy on average over SECS, before we start.
bench_background_load() {
    local b0 b1
    b0=$(bench_cpu_busy)
    sleep "$1"
    b1=$(bench_cpu_busy)
    awk -v d=$((b1 - b0)) -v hz="$BENCH_HZ" -v s="$1" 'BEGIN { printf "%.2f\n", d / hz / s }'
}

# ---------------------------------------------------------------------------------------------
# Topology

bench_ul_ip() { lab_host_ip "h$1"; }
# bench_ul_ip6 N: host hN's IPv6 underlay address.
bench_ul_ip6() { printf '2001:db8:42::%s' "$1"; }

# bench_udpgen_build: compiles scripts/udpgen.rs (std only) into target/bench/ unless up to date;
# sets UDPGEN.
bench_udpgen_build() {
    local src=$LAB_REPO/scripts/udpgen.rs dir=$LAB_REPO/target/bench tmp
    UDPGEN=$dir/udpgen
    [ "$UDPGEN" -nt "$src" ] && return 0
    mkdir -p "$dir" || return
    tmp=$(mktemp "$dir/udpgen.XXXXXX") || return
    lab_say "building the UDP generator (rustc -O scripts/udpgen.rs)"
    rustc --edition 2024 -C opt-level=3 -o "$tmp" "$src" || {
        rm -f "$tmp"
        return 1
    }
    mv -f "$tmp" "$UDPGEN" # atomic: a parallel run never sees half a binary
}

# bench_ceiling_build: sets CEILING_BIN: BENCH_CEILING_BIN, or examples/ceiling.rs built by cargo.
bench_ceiling_build() {
    CEILING_BIN=${BENCH_CEILING_BIN:-}
    [ -z "$CEILING_BIN" ] || return 0
    local cargo quiet=()
    [ "$QUIET" != 1 ] || quiet=(--quiet)
    cargo=$(command -v cargo || true)
    [ -n "$cargo" ] || [ ! -x "${HOME:-/root}/.cargo/bin/cargo" ] || cargo=${HOME:-/root}/.cargo/bin/cargo
    [ -n "$cargo" ] || lab_die "cargo not found: install Rust (rustup), or set BENCH_CEILING_BIN" || return
    lab_say "building the ceiling (cargo build --release --example ceiling)"
    (cd "$LAB_REPO" && "$cargo" build --release --example ceiling "${quiet[@]}") || return
    CEILING_BIN=$LAB_REPO/target/release/examples/ceiling
}

# bench_topology: hosts h1 and h2 joined by one veth pair (their eth0s: the underlay), an iperf3
# server and a UDP sink in h2.
bench_topology() {
    local i
    lab_netns_add h1 && lab_netns_add h2 || return
    ip -n "$(lab_ns h1)" link add eth0 type veth peer name eth0 netns "$(lab_ns h2)" ||
        lab_die "cannot create the underlay veth pair" || return
    for i in 1 2; do
        # The lab's namespaces have IPv6 off (no chatter on the devices): on for the underlay only.
        ip -n "$(lab_ns "h$i")" addr add "$(bench_ul_ip "$i")/24" dev eth0 &&
            ip netns exec "$(lab_ns "h$i")" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0 >/dev/null &&
            ip -n "$(lab_ns "h$i")" addr add "$(bench_ul_ip6 "$i")/64" dev eth0 nodad &&
            ip -n "$(lab_ns "h$i")" link set eth0 up || return
        bench_ul_ip "$i" >"$LAB_DIR/h$i.ip"
        bench_ul_ip6 "$i" >"$LAB_DIR/h$i.ip6"
    done
    # The generator runs from the lab's directory so lab_cleanup recognises (and stops) it.
    cp "$UDPGEN" "$LAB_DIR/udpgen" || return
    [ -z "${CEILING_BIN:-}" ] || cp "$CEILING_BIN" "$LAB_DIR/ceiling" || return
    ip netns exec "$(lab_ns h2)" iperf3 -s -p "$BENCH_IPERF_PORT" --logfile "$LAB_DIR/iperf3-server.log" \
        </dev/null >/dev/null 2>&1 &
    echo $! >"$LAB_DIR/iperf3-server.pid"
    ip netns exec "$(lab_ns h2)" "$LAB_DIR/udpgen" sink "0.0.0.0:$BENCH_UDP_PORT" --secs 3600 \
        </dev/null >/dev/null 2>"$LAB_DIR/udpsink.log" &
    echo $! >"$LAB_DIR/udpsink.pid"
    lab_wait_ping h1 "$(bench_ul_ip 2)" || return
}

# ---------------------------------------------------------------------------------------------
# Tunnels: bench_up_MODE sets DST (the address h1 sends to), RXDEV (h2's overlay device) and
# DAEMONS (PIDs of the vtepd processes); bench_down tears down whatever is up. A bench_up returns 3
# when this vtepd does not support the mode yet.

DAEMONS=()
KERNEL_DEVS=()

bench_up_bare_veth() {
    DST=$(bench_ul_ip 2) RXDEV=eth0
}

bench_up_kernel_vxlan() { bench_kernel_vxlan bench_ul_ip 10.42.0; }
bench_up_kernel_vxlan6() { bench_kernel_vxlan bench_ul_ip6 10.46.0; }

# bench_kernel_vxlan ADDR NET: the kernel's vxlan device vx0 on both hosts, underlay addresses from
# the function ADDR (bench_ul_ip or bench_ul_ip6), overlay NET.1/24 and NET.2/24.
bench_kernel_vxlan() {
    local addr=$1 net=$2 i o ns
    for i in 1 2; do
        o=$((3 - i))
        ns=$(lab_ns "h$i")
        lab_info "h$i: ip link add vx0 type vxlan id $BENCH_VNI local $("$addr" "$i") dstport 4789 dev eth0; flood to $("$addr" "$o"); $net.$i/24"
        ip -n "$ns" link add vx0 type vxlan id "$BENCH_VNI" local "$("$addr" "$i")" dstport 4789 dev eth0 ||
            return
        KERNEL_DEVS+=("$ns")
        bridge -n "$ns" fdb append 00:00:00:00:00:00 dev vx0 dst "$("$addr" "$o")" &&
            ip -n "$ns" addr add "$net.$i/24" dev vx0 &&
            ip -n "$ns" link set vx0 up || return
    done
    DST=$net.2 RXDEV=vx0
}

# bench_vtepd HOST DEV ARGS...: starts `vtepd run --dev DEV --local <host's IP> --control <sock> ARGS`
# (plus BENCH_VTEPD_ARGS) in the host, waits for its control socket and device, sets the device up.
# The host's IP is its IPv4 underlay address, or its IPv6 one when BENCH_FAMILY is 6.
# Returns 3 (and says so) when vtepd exits with status 2 saying the mode is not supported yet.
bench_vtepd() {
    local host=$1 dev=$2 ns sock log pid rc deadline=$((SECONDS + LAB_TIMEOUT))
    shift 2
    ns=$(lab_ns "$host")
    sock=$(lab_sock "$host")
    log=$LAB_DIR/$host.vtepd.log
    local args=(run --dev "$dev" --local "$(cat "$LAB_DIR/$host.ip${BENCH_FAMILY:-}")" --control "$sock" "$@")
    # shellcheck disable=SC2206 # BENCH_VTEPD_ARGS is a list of flags
    args+=(${BENCH_VTEPD_ARGS:-})
    lab_info "$host: vtepd ${args[*]}"
    ip netns exec "$ns" "$VTEPD_BIN" "${args[@]}" </dev/null >"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$LAB_DIR/$host.vtepd.pid"
    DAEMONS+=("$pid")
    until [ -S "$sock" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rc=0
            wait "$pid" || rc=$?
            # A binary from before a mode's flags (an A/B baseline) refuses them as clap does.
            if [ "$rc" = 2 ] && grep -qE "not supported|unexpected argument '--" "$log"; then
                lab_info "$host: this vtepd does not support it yet: $(head -n 1 "$log")"
                return 3
            fi
            lab_die "vtepd on $host exited with status $rc: $(tail -n 3 "$log")" || return
        fi
        [ "$SECONDS" -lt "$deadline" ] || lab_die "no control socket $sock within ${LAB_TIMEOUT}s" || return
        sleep 0.05
    done
    lab_wait_link "$ns" "$dev" && ip -n "$ns" link set "$dev" up
}

bench_up_vtepd_l2_vxlan() {
    local i
    for i in 1 2; do
        bench_vtepd "h$i" vtep0 --vni "$BENCH_VNI" --peer "$(bench_ul_ip $((3 - i)))" \
            --address "10.42.0.$i/24" || return
    done
    DST=10.42.0.2 RXDEV=vtep0
}

bench_up_vtepd_l2_vxlan6() {
    local i BENCH_FAMILY=6 # seen by bench_vtepd (dynamic scope)
    for i in 1 2; do
        bench_vtepd "h$i" vtep0 --vni "$BENCH_VNI" --peer "$(bench_ul_ip6 $((3 - i)))" \
            --address "10.46.0.$i/24" || return
    done
    DST=10.46.0.2 RXDEV=vtep0
}

# L3 VXLAN: the TUN carries IP; both overlay addresses share one subnet, so the destination is
# on-link and vtepd resolves its MAC itself (ARP by head-end replication to the peer, answered by
# the remote vtepd for its own address).
bench_up_vtepd_l3_vxlan() {
    local i
    for i in 1 2; do
        bench_vtepd "h$i" tun0 --mode l3 --encap vxlan --vni "$BENCH_VNI" --peer "$(bench_ul_ip $((3 - i)))" \
            --address "10.44.0.$i/24" || return
    done
    DST=10.44.0.2 RXDEV=tun0
}

# bench_rco MODE: vtepd MODE with remote checksum offload both ways (BENCH_VTEPD_ARGS, seen by
# bench_vtepd, must not set --remcsum-tx or --remcsum-rx itself).
bench_rco() {
    local BENCH_VTEPD_ARGS="${BENCH_VTEPD_ARGS:-} --remcsum-tx on --remcsum-rx on"
    "bench_up_$1"
}
bench_up_vtepd_l2_rco() { bench_rco vtepd_l2_vxlan; }
bench_up_vtepd_l3_rco() { bench_rco vtepd_l3_vxlan; }

bench_up_vtepd_l3_ipip() {
    local i o
    for i in 1 2; do
        o=$((3 - i))
        bench_vtepd "h$i" tun0 --mode l3 --encap ipip \
            --address "10.43.$i.1/24" --route "10.43.$o.0/24=$(bench_ul_ip "$o")" || return
    done
    DST=10.43.2.1 RXDEV=tun0
}

# bench_arm_trace: a `vtepd trace` that matches no packet, armed on both hosts' daemons (stopped by
# bench_down: it is in DAEMONS).
bench_arm_trace() {
    local i pids=()
    for i in 1 2; do
        ip netns exec "$(lab_ns "h$i")" "$VTEPD_BIN" trace --control "$(lab_sock "h$i")" --count 100000 \
            --ip 10.255.255.254 </dev/null >"$LAB_DIR/h$i.trace.log" 2>&1 &
        pids+=($!)
        DAEMONS+=($!)
    done
    # A trace that could not arm exits at once with its reason.
    sleep 0.5
    for i in 1 2; do
        kill -0 "${pids[$((i - 1))]}" 2>/dev/null ||
            lab_die "h$i: the trace did not arm: $(cat "$LAB_DIR/h$i.trace.log")" || return
    done
    lab_info "a trace matching nothing is armed on both daemons"
}

# bench_ceiling_pass LAYER DEV NET: the pass-through ceiling (examples/ceiling.rs) on both hosts over
# a LAYER (l2: TAP, l3: TUN) device DEV, addresses NET.1/24 and NET.2/24.
bench_ceiling_pass() {
    local layer=$1 dev=$2 net=$3 i ns pid
    for i in 1 2; do
        ns=$(lab_ns "h$i")
        lab_info "h$i: ceiling pass --layer $layer --dev $dev --local $(bench_ul_ip "$i") --remote $(bench_ul_ip $((3 - i))); $net.$i/24"
        ip netns exec "$ns" "$LAB_DIR/ceiling" pass --layer "$layer" --dev "$dev" --local "$(bench_ul_ip "$i")" \
            --remote "$(bench_ul_ip $((3 - i)))" </dev/null >"$LAB_DIR/h$i.ceiling.log" 2>&1 &
        pid=$!
        echo "$pid" >"$LAB_DIR/h$i.ceiling.pid"
        DAEMONS+=("$pid")
        lab_wait_link "$ns" "$dev" || return
        ip -n "$ns" link set "$dev" gso_max_size 64000 &&
            ip -n "$ns" addr add "$net.$i/24" dev "$dev" &&
            ip -n "$ns" link set "$dev" up || return
    done
    DST=$net.2 RXDEV=$dev
}

bench_up_ceiling_l2() { bench_ceiling_pass l2 ceil0 10.42.0; }
bench_up_ceiling_l3() { bench_ceiling_pass l3 ceil0 10.44.0; }

# bench_raw MODE: the IPIP ceiling: raw protocol-4 packets from h1 to h2, one and two sending threads
# (recorded as tcp1 and tcp4: Gbit/s of inner bytes received).
bench_raw() {
    local mode=$1 threads sink out gbps secs=$TCP_SECS
    for threads in 1 2; do
        out=$LAB_DIR/raw-sink.out
        ip netns exec "$(lab_ns h2)" "$LAB_DIR/ceiling" raw-sink --secs $((secs + 10)) </dev/null >"$out" 2>&1 &
        sink=$!
        echo "$sink" >"$LAB_DIR/raw-sink.pid"
        sleep 0.3 # the sink's socket open before the first packet
        timeout $((secs + 10)) ip netns exec "$(lab_ns h1)" "$LAB_DIR/ceiling" raw-send --remote "$(bench_ul_ip 2)" \
            --secs "$secs" --threads "$threads" </dev/null >"$LAB_DIR/raw-send.out" 2>&1 ||
            lab_die "$mode: raw-send failed: $(cat "$LAB_DIR/raw-send.out")" || return
        wait "$sink" || lab_die "$mode: raw-sink failed: $(cat "$out")" || return
        rm -f "$LAB_DIR/raw-sink.pid"
        gbps=$(awk '{ for (i = 1; i < NF; i++) if ($i == "inner_gbps") print $(i + 1) }' "$out")
        [ -n "$gbps" ] || lab_die "$mode: no rate from the raw sink: $(cat "$out")" || return
        lab_info "$mode: raw 1500-byte protocol-4 packets, $threads sending thread(s): $gbps Gbit/s of inner bytes received ($(cat "$out"))"
        bench_record "${mode}_tcp$([ "$threads" = 1 ] && echo 1 || echo 4)_gbps" "$gbps"
    done
}

# bench_down: stops our vtepd processes (SIGTERM, then SIGKILL after BENCH_STOP_SECS) and deletes
# kernel devices.
bench_down() {
    local pid ns deadline=$((SECONDS + BENCH_STOP_SECS))
    for pid in "${DAEMONS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${DAEMONS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
        if kill -0 "$pid" 2>/dev/null; then
            printf 'lab: vtepd %s did not stop on SIGTERM; killing it\n' "$pid" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    rm -f "$LAB_DIR"/h?.vtepd.pid "$LAB_DIR"/h?.ceiling.pid
    for ns in "${KERNEL_DEVS[@]}"; do ip -n "$ns" link del vx0 2>/dev/null || true; done
    DAEMONS=() KERNEL_DEVS=()
}

# ---------------------------------------------------------------------------------------------
# Measurements (from h1 to DST in h2)

# bench_ping MODE: RTT p50 and p99 of PINGS pings 10 ms apart.
bench_ping() {
    local mode=$1 out times n p50 p99
    out=$(timeout $((PINGS / 50 + 10)) ip netns exec "$(lab_ns h1)" ping -n -c "$PINGS" -i 0.01 -W 1 "$DST") ||
        lab_die "$mode: ping $DST failed: $(tail -n 2 <<<"$out")" || return
    times=$(sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' <<<"$out" | sort -n)
    n=$(grep -c . <<<"$times") || true
    [ "$n" -gt 0 ] || lab_die "$mode: no ping answers from $DST" || return
    # Nearest-rank percentiles, in microseconds.
    p50=$(awk -v n="$n" 'NR == int((n * 50 + 99) / 100) { print $1 * 1000 }' <<<"$times")
    p99=$(awk -v n="$n" 'NR == int((n * 99 + 99) / 100) { print $1 * 1000 }' <<<"$times")
    bench_record "${mode}_rtt_p50_us" "$p50"
    bench_record "${mode}_rtt_p99_us" "$p99"
    lab_info "$mode: ping $n/$PINGS answered, p50 $p50 us, p99 $p99 us"
}

# bench_tcp MODE STREAMS: iperf3 TCP throughput; with one stream also the CPU per GB.
bench_tcp() {
    local mode=$1 streams=$2 json gbps bytes b0 b1 p0 p1 o0 o1 t0 t1 per_gb tries=0
    b0=$(bench_cpu_busy) o0=$(bench_others_cpu) p0=$(bench_proc_cpu "${DAEMONS[@]}") t0=$(bench_now)
    # The server may still be closing the previous test ("busy"): that alone is retried.
    while :; do
        tries=$((tries + 1))
        if json=$(timeout $((TCP_SECS + 20)) ip netns exec "$(lab_ns h1)" iperf3 -c "$DST" \
            -p "$BENCH_IPERF_PORT" -t "$TCP_SECS" -P "$streams" -J); then
            break
        fi
        if [ "$tries" -ge 3 ] || ! grep -q busy <<<"$json"; then
            lab_die "$mode: iperf3 -P $streams to $DST failed: $(jq -r '.error // empty' <<<"$json" 2>/dev/null)"
            return
        fi
        sleep 1
    done
    b1=$(bench_cpu_busy) o1=$(bench_others_cpu) p1=$(bench_proc_cpu "${DAEMONS[@]}") t1=$(bench_now)
    gbps=$(jq -r '.end.sum_received.bits_per_second // 0 | . / 1e9 * 1000 | round / 1000' <<<"$json")
    bytes=$(jq -r '.end.sum_received.bytes // 0' <<<"$json")
    [ "${bytes%.*}" -gt 0 ] ||
        lab_die "$mode: iperf3 -P $streams moved nothing: $(jq -c '.end.sum_received' <<<"$json")" || return
    bench_record "${mode}_tcp${streams}_gbps" "$gbps"
    lab_info "$mode: TCP x$streams $gbps Gbit/s"
    [ "$streams" = 1 ] || return 0
    per_gb=$(awk -v hz="$BENCH_HZ" 'BEGIN { print 1e9 / hz }') # jiffies per byte -> seconds per GB
    # Other processes' CPU can exceed what /proc/stat saw by a tick or so: never below zero.
    bench_record "${mode}_cpu_s_per_gb" "$(bench_div $((b1 - b0 - o1 + o0 < 0 ? 0 : b1 - b0 - o1 + o0)) "$bytes" "$per_gb")"
    bench_record "${mode}_cpu_all_s_per_gb" "$(bench_div $((b1 - b0)) "$bytes" "$per_gb")"
    bench_record "${mode}_others_cpus" "$(awk -v j=$((o1 - o0)) -v hz="$BENCH_HZ" -v t0="$t0" -v t1="$t1" \
        'BEGIN { printf "%.2f\n", j / hz / (t1 - t0) }')"
    if [ "${#DAEMONS[@]}" -gt 0 ]; then
        bench_record "${mode}_daemon_cpu_s_per_gb" "$(bench_div $((p1 - p0)) "$bytes" "$per_gb")"
    fi
    lab_info "$mode: CPU per GB: $(bench_get "${mode}_cpu_s_per_gb") s ours, $(bench_get "${mode}_cpu_all_s_per_gb") s system-wide (others used $(bench_get "${mode}_others_cpus") CPUs meanwhile)"
}

# bench_rx_packets: packets received so far by h2's overlay device.
bench_rx_packets() {
    ip -n "$(lab_ns h2)" -s -j link show dev "$RXDEV" | jq -r '.[0].stats64.rx.packets'
}

# bench_udp MODE: the 64-byte forwarding rate, the best over the generator thread counts.
bench_udp() {
    local mode=$1 threads c0 c1 t0 t1 pps best=0 best_offered=null out gen offered
    out=$LAB_DIR/udpgen.out
    for threads in $UDP_THREADS; do
        ip netns exec "$(lab_ns h1)" "$LAB_DIR/udpgen" send "$DST:$BENCH_UDP_PORT" --size "$BENCH_UDP_PAYLOAD" \
            --secs "$(awk -v a="$UDP_SECS" -v b="$UDP_WARMUP" 'BEGIN { print a + 2 * b }')" --threads "$threads" \
            </dev/null >"$out" 2>&1 &
        gen=$!
        # Counted in the steady state: after a warm-up, and before the generator stops.
        sleep "$UDP_WARMUP"
        c0=$(bench_rx_packets) t0=$(bench_now)
        sleep "$UDP_SECS"
        c1=$(bench_rx_packets) t1=$(bench_now)
        wait "$gen" || lab_die "$mode: udpgen failed: $(cat "$out")" || return
        pps=$(awk -v c=$((c1 - c0)) -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f\n", c / (t1 - t0) }')
        offered=$(awk '{ for (i = 1; i < NF; i++) if ($i == "pps") print $(i + 1) }' "$out")
        lab_info "$mode: UDP 64-byte, $threads sender thread(s): $pps packets/s received (offered ${offered:-?}/s)"
        if [ "$pps" -gt "$best" ]; then best=$pps best_offered=${offered:-null}; fi
        sleep 0.2 # let the queues drain before the next run
    done
    [ "$best" -gt 0 ] || lab_die "$mode: no 64-byte UDP packet arrived at h2's $RXDEV" || return
    bench_record "${mode}_udp64_pps" "$best"
    bench_record "${mode}_udp64_offered_pps" "$best_offered"
}

# bench_mode MODE [LABEL BIN]: sets the mode up, measures everything, tears it down. Returns 3 for
# n/a. An A/B run names the figures' keys after LABEL (MODE: the current vtepd, MODE_base: the
# baseline) and runs the vtepd binary BIN.
bench_mode() {
    local mode=$1 label=${2:-$1} rc=0
    local VTEPD_BIN=${3:-$VTEPD_BIN} # seen by bench_vtepd (dynamic scope)
    if [ $# -gt 1 ]; then
        lab_say "$mode, $([ "$label" = "$mode" ] && echo current || echo baseline) vtepd $VTEPD_BIN"
    else
        lab_say "$mode"
    fi
    if [ "$mode" = ceiling_ipip ]; then
        bench_raw "$mode" || rc=1
        return "$rc"
    fi
    "bench_up_$mode" || rc=$?
    if [ "$rc" = 0 ]; then
        lab_wait_ping h1 "$DST" || rc=1
    fi
    if [ "$rc" = 0 ] && [ "$TRACE_ARMED" = 1 ] && [ "$label" = "$mode" ] && [[ $mode == vtepd_* ]]; then
        bench_arm_trace || rc=1
    fi
    if [ "$rc" = 0 ]; then
        bench_ping "$label" && bench_tcp "$label" 1 && bench_tcp "$label" 4 && bench_udp "$label" || rc=1
    fi
    [ "$rc" != 1 ] || [ "${#DAEMONS[@]}" = 0 ] || lab_dump_logs
    bench_down
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Profiling

# bench_profile MODE: sets a vtepd mode up, profiles both daemons under PROFILE_LOAD for
# PROFILE_SECS, tears it down, writes and shows the reports. Returns 3 for n/a.
bench_profile() {
    local mode=$1 rc=0 load pids=() b1 b2 a1 a2 n1 n2 n i f total out
    out=$PROFILE_DIR/$mode
    lab_say "$mode: profiling both daemons with $PROFILE under $PROFILE_LOAD load for ${PROFILE_SECS}s"
    "bench_up_$mode" || rc=$?
    if [ "$rc" = 0 ]; then lab_wait_ping h1 "$DST" 30 || rc=1; fi
    if [ "$rc" != 0 ]; then
        bench_down
        return "$rc"
    fi
    pids=("${DAEMONS[@]}")
    b1=$(lab_client h1 stats --json) && b2=$(lab_client h2 stats --json) || rc=1
    if [ "$PROFILE_LOAD" = tcp ]; then
        timeout $((PROFILE_SECS + 20)) ip netns exec "$(lab_ns h1)" iperf3 -c "$DST" -p "$BENCH_IPERF_PORT" \
            -t $((PROFILE_SECS + 1)) >"$out-load.txt" 2>&1 &
    else
        ip netns exec "$(lab_ns h1)" "$LAB_DIR/udpgen" send "$DST:$BENCH_UDP_PORT" --size "$BENCH_UDP_PAYLOAD" \
            --secs $((PROFILE_SECS + 1)) >"$out-load.txt" 2>&1 &
    fi
    load=$!
    if [ "$PROFILE" = perf ]; then
        local scope=(-p "$(IFS=,; echo "${pids[*]}")")
        [ "${BENCH_PROFILE_SYSTEM:-0}" = 1 ] && scope=(-a)
        perf record -q -g -e cpu-clock -F 1999 "${scope[@]}" -o "$out-perf.data" \
            -- sleep "$PROFILE_SECS" 2>"$LAB_DIR/perf.log" || lab_die "perf record failed: $(cat "$LAB_DIR/perf.log")" || rc=1
    else
        sleep "$PROFILE_SECS"
    fi
    wait "$load" || lab_die "$mode: the $PROFILE_LOAD load failed: $(tail -n 3 "$out-load.txt")" || rc=1
    a1=$(lab_client h1 stats --json) && a2=$(lab_client h2 stats --json) || rc=1
    bench_down
    [ "$rc" = 0 ] || return "$rc"
    # Packets each daemon handled: frames from its device plus datagrams from the tunnel.
    n1=$(jq -n --argjson a "$b1" --argjson b "$a1" '($b.rx_device - $a.rx_device) + ($b.rx_tunnel - $a.rx_tunnel)')
    n2=$(jq -n --argjson a "$b2" --argjson b "$a2" '($b.rx_device - $a.rx_device) + ($b.rx_tunnel - $a.rx_tunnel)')
    lab_info "load: $(grep -E 'receiver|^sent' "$out-load.txt" | tail -n 1)"
    lab_info "packets handled while profiled: h1 $n1, h2 $n2"
    if [ "$PROFILE" = perf ]; then
        perf report -i "$out-perf.data" --stdio --no-children --sort dso -g none --percent-limit 0.5 2>/dev/null |
            grep -v '^#' | grep -v '^$' >"$out-perf-dso.txt"
        perf report -i "$out-perf.data" --stdio --no-children --sort sym -g none --percent-limit 0.7 2>/dev/null |
            grep -v '^#' | grep -v '^$' >"$out-perf-self.txt"
        perf report -i "$out-perf.data" --stdio --children --sort sym -g none --percent-limit 3 2>/dev/null |
            grep -v '^#' | grep -v '^$' >"$out-perf-inclusive.txt"
        lab_say "$mode: time by binary ($out-perf-dso.txt)"
        sed 's/^/    /' "$out-perf-dso.txt"
        lab_say "$mode: self time by symbol, top 25 ($out-perf-self.txt)"
        head -n 25 "$out-perf-self.txt" | sed 's/^/    /'
        lab_say "$mode: inclusive time, above 3% ($out-perf-inclusive.txt)"
        sed 's/^/    /' "$out-perf-inclusive.txt"
    else
        i=0
        for pid in "${pids[@]}"; do
            i=$((i + 1))
            f=$PROFILE_DIR/callgrind.out.$pid
            [ -s "$f" ] || lab_die "no callgrind output $f" || return
            callgrind_annotate --inclusive=no "$f" 2>/dev/null | head -n 60 >"$out-callgrind-h$i.txt"
            total=$(sed -n 's/^\([0-9,]*\) (100.0%).*PROGRAM TOTALS.*/\1/p' "$out-callgrind-h$i.txt" | tr -d ,)
            n=$([ "$i" = 1 ] && echo "$n1" || echo "$n2")
            lab_say "$mode h$i: ${total:-?} user-space instructions for $n packets (whole run, start-up included): $(
                awk -v t="${total:-0}" -v n="$n" 'BEGIN { if (n > 0) printf "%.0f", t / n; else print "n/a" }') per packet ($out-callgrind-h$i.txt)"
            sed -n '15,44s/^/    /p' "$out-callgrind-h$i.txt"
        done
    fi
}


# ---------------------------------------------------------------------------------------------
# Output

# bench_table: the results, one row per mode, vtepd figures with their ratio to kernel vxlan.
bench_table() {
    local mode m v r cell
    local -a metrics=(tcp1_gbps tcp4_gbps udp64_pps rtt_p50_us rtt_p99_us cpu_s_per_gb daemon_cpu_s_per_gb)
    printf '\n%-16s %-15s %-15s %-15s %-15s %-15s %-15s %-10s\n' mode "TCP 1 (Gbit/s)" "TCP 4 (Gbit/s)" \
        "UDP 64B (kpps)" "RTT p50 (us)" "RTT p99 (us)" "CPU (s/GB)" "vtepd CPU"
    for mode in $SELECTED; do
        printf '%-16s' "$mode"
        for m in "${metrics[@]}"; do
            v=$(bench_get "${mode}_$m")
            case $m in
            udp64_pps) cell=$(bench_fmt "$(bench_div "$v" 1000)" 0) ;;
            rtt_*) cell=$(bench_fmt "$v" 0) ;;
            *) cell=$(bench_fmt "$v" 2) ;;
            esac
            r=$(bench_ratio_name "$m")
            [ -z "$r" ] || r=$(bench_get "${mode}_${r}_ratio")
            [ -z "$r" ] || [ "$r" = null ] || cell+=" ($(bench_fmt "$r" 2)x)"
            if [ "$m" = daemon_cpu_s_per_gb ]; then printf ' %-10s' "$cell"; else printf ' %-15s' "$cell"; fi
        done
        printf '  %s\n' "$(bench_get "${mode}_status" | tr -d '"')"
    done
    printf '\n(x) = vtepd / kernel_vxlan in this run (vtepd_l2_vxlan6 / kernel_vxlan6): above 1 is better for TCP and UDP, worse for RTT and CPU.\n'
    printf 'UDP 64B: 18-byte UDP payloads (64-byte Ethernet frames), packets/s arriving on the far tunnel device.\n'
    printf 'CPU: CPU seconds per GB during TCP 1, system-wide minus other processes; vtepd CPU: both daemons'"'"' own.\n'
    printf 'Load: %s of %s CPUs busy before the run; load average %s -> %s; %s round(s), best of each figure.\n' \
        "$(bench_get background_cpu_busy)" "$(bench_get cpus)" "$(bench_get loadavg_before)" \
        "$(bench_get loadavg_after)" "$ROUNDS"
}

# bench_ceiling_table: each vtepd mode as a share of its ceiling (when both ran).
bench_ceiling_table() {
    local mode m r v cell any=
    local -a metrics=(tcp1 tcp4 udp64 rtt_p50 rtt_p99 cpu)
    for mode in $SELECTED; do
        [ "$(bench_get "${mode}_tcp1_of_ceiling")" != null ] || [ "$(bench_get "${mode}_rtt_p50_of_ceiling")" != null ] || continue
        if [ -z "$any" ]; then
            any=1
            printf '\n%-16s %-15s %-15s %-15s %-15s %-15s %-15s\n' "vtepd / ceiling" "TCP 1" "TCP 4" "UDP 64B" \
                "RTT p50" "RTT p99" "CPU (s/GB)"
        fi
        printf '%-16s' "$mode"
        for m in "${metrics[@]}"; do
            v=$(bench_get "${mode}_${m}_of_ceiling")
            cell=$(bench_fmt "$v" 2)
            [ "$v" = null ] || cell+=x
            printf ' %-15s' "$cell"
        done
        printf '  (of %s)\n' "${BENCH_CEILING[$mode]}"
    done
    [ -z "$any" ] ||
        printf 'ceiling_ipip is raw 1500-byte protocol-4 packets: its TCP 1 and TCP 4 are one and two sending threads.\n'
}

# bench_ab_table: the A/B table: each vtepd mode's figures with the baseline and the current binary,
# current/baseline, and tcp1's current/baseline in each round.
bench_ab_table() {
    local mode m v row name label cell
    local -a metrics=(tcp1_gbps tcp4_gbps udp64_pps rtt_p50_us rtt_p99_us cpu_s_per_gb daemon_cpu_s_per_gb)
    printf '\nA/B: baseline %s, current %s\n' "$BASELINE_BIN" "$VTEPD_BIN"
    printf '%-16s %-15s %-15s %-15s %-15s %-15s %-15s %-10s\n' mode "TCP 1 (Gbit/s)" "TCP 4 (Gbit/s)" \
        "UDP 64B (kpps)" "RTT p50 (us)" "RTT p99 (us)" "CPU (s/GB)" "vtepd CPU"
    for mode in $SELECTED; do
        [[ $mode == vtepd_* ]] || continue
        printf '%s\n' "$mode"
        for row in base current ratio; do
            case $row in
            base) name="  baseline" label=${mode}_base ;;
            current) name="  current" label=$mode ;;
            ratio) name="  current/base" label= ;;
            esac
            printf '%-16s' "$name"
            for m in "${metrics[@]}"; do
                if [ "$row" = ratio ]; then
                    v=$(bench_get "${mode}_$(bench_vs_base_name "$m")_vs_base")
                    cell=$(bench_fmt "$v" 2)
                    [ "$v" = null ] || cell+=x
                else
                    v=$(bench_get "${label}_$m")
                    case $m in
                    udp64_pps) cell=$(bench_fmt "$(bench_div "$v" 1000)" 0) ;;
                    rtt_*) cell=$(bench_fmt "$v" 0) ;;
                    *) cell=$(bench_fmt "$v" 2) ;;
                    esac
                fi
                if [ "$m" = daemon_cpu_s_per_gb ]; then printf ' %-10s' "$cell"; else printf ' %-15s' "$cell"; fi
            done
            if [ -n "$label" ]; then printf '  %s\n' "$(bench_get "${label}_status" | tr -d '"')"; else printf '\n'; fi
        done
        cell='' v=${TCP1_VS_BASE[$mode]:-}
        for v in ${v//,/ }; do
            if [ "$v" = null ]; then cell+=" n/a"; else cell+=" $(bench_fmt "$v" 2)x"; fi
        done
        printf '%-16s%s\n' "  tcp1 by round" "${cell:- n/a}"
    done
    printf '\ncurrent/base: above 1 is better for TCP and UDP, worse for RTT and CPU; compare it with the spread\n'
    printf 'of tcp1 by round (current/baseline in each round, in order), which is the noise of this run.\n'
    printf 'Each round measures both binaries back to back, the baseline first in odd rounds, the current first in even.\n'
}

# bench_json: every result as one JSON object.
bench_json() {
    local k
    for k in "${!R[@]}"; do printf '%s\t%s\n' "$k" "${R[$k]}"; done | sort |
        jq -R -s 'split("\n") | map(select(length > 0) | split("\t") | {key: .[0], value: (.[1] | fromjson)}) | from_entries'
}

# ---------------------------------------------------------------------------------------------
# Run

bench_udpgen_build || lab_die "cannot build scripts/udpgen.rs" || exit 1
if [[ " $SELECTED" == *" ceiling_"* ]]; then
    bench_ceiling_build || lab_die "cannot build examples/ceiling.rs" || exit 1
fi
bench_set_str started_at "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
bench_set_str kernel "$(uname -r)"
bench_set cpus "$(nproc)"
bench_set_str cpu_model "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
bench_set quick "$([ "$QUICK" = 1 ] && echo true || echo false)"
bench_set rounds "$ROUNDS"
bench_set tcp_secs "$TCP_SECS"
bench_set udp_secs "$UDP_SECS"
bench_set pings "$PINGS"
bench_set udp64_payload_bytes "$BENCH_UDP_PAYLOAD"
bench_set_str vtepd_args "${BENCH_VTEPD_ARGS:-}"
bench_set loadavg_before "$(cut -d ' ' -f 1 /proc/loadavg)"
bench_set background_cpu_busy "$(bench_background_load 1)"
lab_say "benchmark $LAB_PREFIX: modes $SELECTED$([ "$QUICK" = 1 ] && echo ' (quick)'), $ROUNDS round(s); $(bench_get background_cpu_busy) of $(nproc) CPUs busy before we start"
if [ -n "$BASELINE_BIN" ]; then
    bench_set_str baseline_bin "$BASELINE_BIN"
    bench_set_str vtepd_bin "$VTEPD_BIN"
    lab_info "A/B: every vtepd mode with baseline $BASELINE_BIN and current $VTEPD_BIN, back to back"
    if cmp -s "$BASELINE_BIN" "$VTEPD_BIN"; then
        lab_info "the two binaries are identical: an A/A run, the ratios show the noise"
    fi
fi
bench_topology || lab_die "cannot build the topology" || exit 1

if [ -n "$PROFILE" ]; then
    mkdir -p "$PROFILE_DIR"
    for mode in $SELECTED; do
        [[ $mode == vtepd_* ]] || continue
        rc=0
        bench_profile "$mode" || rc=$?
        [ "$rc" != 3 ] || lab_info "$mode: not supported by this vtepd yet"
        [ "$rc" = 0 ] || [ "$rc" = 3 ] || lab_die "$mode: profiling failed" || exit 1
    done
    exit 0
fi

declare -A STATUS TCP1_VS_BASE
failed=
# bench_variant LABEL MODE [BIN]: one round of MODE (bench_mode) unless LABEL is already n/a or
# failed; records LABEL's status. Succeeds when it was measured in this round.
bench_variant() {
    local label=$1 mode=$2 rc=0
    case ${STATUS[$label]:-ok} in n/a | failed) return 1 ;; esac
    if [ $# -gt 2 ]; then bench_mode "$mode" "$label" "$3" || rc=$?; else bench_mode "$mode" || rc=$?; fi
    case $rc in
    0) STATUS[$label]=ok ;;
    3) STATUS[$label]=n/a ;;
    *)
        STATUS[$label]=failed
        failed+=" $label"
        ;;
    esac
    [ "$rc" = 0 ]
}
for ((round = 1; round <= ROUNDS; round++)); do
    [ "$ROUNDS" = 1 ] || lab_say "round $round of $ROUNDS"
    for mode in $SELECTED; do
        if [ -z "$BASELINE_BIN" ] || [[ $mode != vtepd_* ]]; then
            bench_variant "$mode" "$mode" || true
            continue
        fi
        # A/B: both binaries back to back, the baseline first in odd rounds.
        base_ok=0 cur_ok=0
        if [ $((round % 2)) = 1 ]; then
            bench_variant "${mode}_base" "$mode" "$BASELINE_BIN" && base_ok=1
            bench_variant "$mode" "$mode" "$VTEPD_BIN" && cur_ok=1
        else
            bench_variant "$mode" "$mode" "$VTEPD_BIN" && cur_ok=1
            bench_variant "${mode}_base" "$mode" "$BASELINE_BIN" && base_ok=1
        fi
        if [ "$base_ok$cur_ok" = 11 ]; then
            # This round's figures are the last of each key's rounds.
            r=$(bench_div "${ROUNDS_OF[${mode}_tcp1_gbps]##* }" "${ROUNDS_OF[${mode}_base_tcp1_gbps]##* }")
            TCP1_VS_BASE[$mode]="${TCP1_VS_BASE[$mode]:-}${TCP1_VS_BASE[$mode]:+,}$r"
            lab_info "$mode: tcp1 current/baseline in round $round: $r"
        fi
    done
done
bench_set loadavg_after "$(cut -d ' ' -f 1 /proc/loadavg)"

# The labels whose figures were measured: every selected mode, and in an A/B run each vtepd mode's
# baseline (MODE_base).
LABELS=
for mode in $SELECTED; do
    LABELS+="${LABELS:+ }$mode"
    [ -z "$BASELINE_BIN" ] || [[ $mode != vtepd_* ]] || LABELS+=" ${mode}_base"
done
for label in $LABELS; do
    bench_set_str "${label}_status" "${STATUS[$label]}"
    # Every figure key exists for every selected mode: the best of the rounds, or null.
    for m in $BENCH_METRICS daemon_cpu_s_per_gb; do
        [[ $m != daemon_* || $label == vtepd_* || $label == ceiling_* ]] || continue
        if [ "${STATUS[$label]}" = ok ]; then bench_best "${label}_$m"; else R[${label}_$m]=null; fi
        bench_set "${label}_$m" "$(bench_get "${label}_$m")"
    done
done
# Ratios of every vtepd and ceiling figure to kernel vxlan's, and of each vtepd mode's to its
# ceiling's.
for mode in $SELECTED; do
    [[ $mode == vtepd_* || $mode == ceiling_* ]] || continue
    ceiling=${BENCH_CEILING[$mode]:-}
    [[ " $SELECTED " == *" $ceiling "* ]] || ceiling=
    for m in $BENCH_METRICS; do
        r=$(bench_ratio_name "$m")
        [ -n "$r" ] || continue
        bench_set "${mode}_${r}_ratio" "$(bench_div "$(bench_get "${mode}_$m")" "$(bench_get "${BENCH_KERNEL[$mode]:-kernel_vxlan}_$m")")"
        [ -z "$ceiling" ] ||
            bench_set "${mode}_${r}_of_ceiling" "$(bench_div "$(bench_get "${mode}_$m")" "$(bench_get "${ceiling}_$m")")"
    done
done

# A/B: each vtepd figure of the current binary over the baseline's, and tcp1's in each round.
if [ -n "$BASELINE_BIN" ]; then
    for mode in $SELECTED; do
        [[ $mode == vtepd_* ]] || continue
        for m in $BENCH_METRICS daemon_cpu_s_per_gb; do
            r=$(bench_vs_base_name "$m")
            [ -n "$r" ] || continue
            bench_set "${mode}_${r}_vs_base" "$(bench_div "$(bench_get "${mode}_$m")" "$(bench_get "${mode}_base_$m")")"
        done
        bench_set "${mode}_tcp1_vs_base_rounds" "[${TCP1_VS_BASE[$mode]:-}]"
    done
fi

[ "$QUIET" = 1 ] || bench_table
[ "$QUIET" = 1 ] || bench_ceiling_table
[ "$QUIET" = 1 ] || [ -z "$BASELINE_BIN" ] || bench_ab_table
if [ -n "$JSON_OUT" ]; then
    if [ "$JSON_OUT" = - ]; then bench_json >&3; else bench_json >"$JSON_OUT"; fi
fi
if [ -n "$PLOT_OUT" ]; then
    mkdir -p "$LAB_DIR"
    bench_json >"$LAB_DIR/result.json"
    /usr/bin/python3 "$LAB_REPO/lab/bench_plot.py" "$LAB_DIR/result.json" "$PLOT_OUT" ||
        lab_die "cannot draw $PLOT_OUT" || exit 1
    lab_info "chart: $PLOT_OUT"
fi
[ -z "$failed" ] || lab_die "failed:$failed" || exit 1
