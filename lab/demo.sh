#!/usr/bin/env bash
# vtepd demo: three hosts on one underlay bridge (192.0.2.0/24), each running vtepd (VNI 42, peers = the
# other two) with a Linux bridge cni0 holding its TAP and two pods (flannel style: one 10.42.0.0/16
# overlay subnet, MTU 1450). Every pod pings every other pod, with small and with full-MTU packets
# (DF set), then each host's learned forwarding database is printed, and everything is removed.
#
# usage: sudo lab/demo.sh [--quiet] [--kernel] [--keep]
#   --quiet   print nothing but failures (for tests); the exit status tells the result
#   --kernel  run the same topology with the Linux kernel vxlan device instead of vtepd (a reference)
#   --keep    leave the lab up at the end to look around (prints how to remove it)
# Runs scripts/setup.sh and builds vtepd first (set VTEPD_BIN to use a built binary, LAB_SKIP_SETUP=1
# to skip setup). Exit status 0 when every pod reached every other pod.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lab_parse_args "$@"
lab_prepare
lab_traps

started=$SECONDS
lab_fabric 3 2
lab_ping_all 56
# Full-size packets: 1450-byte IP packets in 1514-byte inner frames, 1500-byte underlay packets.
lab_ping_all $((LAB_POD_MTU - 28))

if [ "$QUIET" != 1 ]; then
    for host in $(lab_hosts); do
        lab_say "forwarding database of $host ($(lab_host_ip "$host"), $(lab_impl "$host"))"
        lab_show_fdb "$host" | sed 's/^/    /'
        [ "$(lab_impl "$host")" != vtepd ] || lab_info "counters: $(lab_show_stats "$host")"
    done
fi
lab_say "all pods reached each other in $((SECONDS - started)) s; cleaning up"
