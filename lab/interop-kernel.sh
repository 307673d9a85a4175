#!/usr/bin/env bash
# Interop with the Linux kernel: a mixed fabric on one underlay bridge (192.0.2.0/24) where hosts h1 and
# h2 run vtepd and host h3 runs the kernel's vxlan device vx0 (VNI 42, dstport 4789, learning on, its
# flood list given by `bridge fdb append 00:00:00:00:00:00 dev vx0 dst <vtep>` for h1 and h2). Each host
# has two pods behind a bridge cni0. Every pod pings every other pod (both directions, small and
# full-MTU packets) and a TCP transfer runs each way between h1's and h3's pods, then the script checks that vtepd learned the kernel host's pod MACs (`fdb show
# --json`) and that the kernel learned vtepd's (`bridge fdb show dev vx0`, entries with dst), and
# that vtepd's datagrams, as captured by their receivers, follow the wire rules (DF set, flags 0x08,
# VNI 42; with LAB_CHECK_SRCPORT=1 also UDP source ports from the inner flow in 49152-65535).
#
# usage: sudo lab/interop-kernel.sh [--quiet] [--kernel] [--keep]
#   --quiet   print nothing but failures (for tests); the exit status tells the result
#   --kernel  make all three hosts kernel vxlan devices (a reference run of the same checks)
#   --keep    leave the lab up at the end to look around (prints how to remove it)
# Runs scripts/setup.sh and builds vtepd first (set VTEPD_BIN to use a built binary, LAB_SKIP_SETUP=1
# to skip setup). Exit status 0 when every pod reached every other pod and every FDB learned.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
LAB_IMPLS="vtepd vtepd kernel"
lab_parse_args "$@"
lab_prepare
lab_traps

lab_fabric 3 2
for host in $(lab_hosts); do lab_capture "$host"; done
lab_ping_all 56
lab_ping_all $((LAB_POD_MTU - 28))
lab_check_learned
lab_say "TCP between a vtepd host's pod and the kernel host's pod, both ways"
lab_tcp_check h1p1 h3p1
lab_tcp_check h3p1 h1p1
lab_say "VXLAN datagrams sent by vtepd, as captured by their receivers"
# Stopped first: the counts below are read one by one from each file, which must not grow
# between them.
for host in $(lab_hosts); do lab_capture_stop "$host" >/dev/null || lab_die "capture $host"; done
for tx in $(lab_hosts); do
    [ "$(lab_impl "$tx")" = vtepd ] || continue
    for rx in $(lab_hosts); do
        [ "$rx" = "$tx" ] || lab_check_vxlan_wire "$rx" "$tx"
    done
done

if [ "$QUIET" != 1 ]; then
    for host in $(lab_hosts); do
        lab_say "forwarding database of $host ($(lab_host_ip "$host"), $(lab_impl "$host"))"
        lab_show_fdb "$host" | sed 's/^/    /'
        [ "$(lab_impl "$host")" != vtepd ] || lab_info "counters: $(lab_show_stats "$host")"
    done
fi
lab_say "vtepd and the kernel vxlan device reached each other's pods and learned each other's MACs"
