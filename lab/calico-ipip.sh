#!/usr/bin/env bash
# Calico-style IPIP with vtepd: two nodes on one underlay bridge (192.0.2.0/24), each with two pods
# that have a /32 address and a default route via 169.254.1.1, answered by proxy ARP on the node's
# side of their veth (as Calico does), and a /26 pod block per node (10.244.N.64/26). Each node runs
# `vtepd run --mode l3 --encap ipip` on a TUN device tunl0 with one route per remote pod block via the
# remote node, and installs the matching kernel routes itself. Every pod pings every other pod (small
# and full-size packets, DF set), tshark decodes the underlay capture as IPv4-in-IPv4 with the pods'
# addresses inside and the nodes' outside, an iperf3 TCP transfer runs across the nodes, and everything
# is removed.
#
# usage: sudo lab/calico-ipip.sh [--quiet] [--keep]
#   --quiet   print nothing but failures (for tests); the exit status tells the result
#   --keep    leave the lab up at the end to look around (prints how to remove it)
# IPERF_SECONDS (default 3) sets the length of the iperf3 transfer. Runs scripts/setup.sh and builds
# vtepd first (set VTEPD_BIN to use a built binary, LAB_SKIP_SETUP=1 to skip setup).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lab_parse_args "$@"
[ "$LAB_VTEP" != kernel ] || lab_die "--kernel: no kernel reference here (this kernel has no ipip link type)"
lab_prepare
lab_traps

IPERF_SECONDS=${IPERF_SECONDS:-3}
started=$SECONDS
lab_calico 2 2
pods=(h1p1 h1p2 h2p1 h2p2)
pod_ip() { lab_calico_pod_ip "${1%p*}" "p${1##*p}"; }

for n in h1 h2; do
    lab_info "$n kernel routes on $LAB_IPIP_DEV (installed by vtepd): $(ip -n "$(lab_ns "$n")" route show dev "$LAB_IPIP_DEV" | paste -sd';')"
done

# Every pod reaches every other pod: small packets, then full-size ones (DF set).
for size in 56 $((LAB_IPIP_POD_MTU - 28)); do
    lab_say "ping every pod from every other pod ($((size + 28))-byte IP packets, DF set)"
    for src in "${pods[@]}"; do
        line="$src ->"
        for dst in "${pods[@]}"; do
            [ "$src" != "$dst" ] || continue
            out=$(lab_ping_once "$src" "$(pod_ip "$dst")" "$size") ||
                lab_die "$src cannot reach $dst ($(pod_ip "$dst")): $out"
            line+=" $dst $(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -n 1)ms"
        done
        lab_info "$line"
    done
done

# What the underlay carries: IP protocol 4, pods inside, nodes outside.
lab_say "capture on h2's underlay link while h1p1 pings h2p1; tshark decodes:"
lab_capture h2 eth0 "ip proto 4" ipip
ip netns exec "$(lab_ns h1p1)" ping -c 3 -i 0.2 -W 1 -q "$(pod_ip h2p1)" >/dev/null ||
    lab_die "h1p1 cannot ping h2p1 during the capture"
sleep 0.3
kill "$(cat "$LAB_DIR/ipip.tcpdump.pid")" 2>/dev/null || true
fields=$(lab_ipip_fields ipip "icmp.type == 8")
lab_info "ip.src ip.dst ip.proto ip.flags.df ip.dsfield.ecn ip.ttl (outer,inner):"
while read -r l; do lab_info "  $l"; done <<<"$fields"
want="$(lab_host_ip h1),$(pod_ip h1p1)"$'\t'"$(lab_host_ip h2),$(pod_ip h2p1)"$'\t'"4,1"
[ "$(grep -c "^$want" <<<"$fields")" -ge 3 ] ||
    lab_die "tshark did not decode 3 IPv4-in-IPv4 echo requests $want: $fields"
decoded=$(tshark -r "$LAB_DIR/ipip.pcap" -n -Y "icmp.type == 8" 2>/dev/null | head -n 1)
lab_info "tshark: $decoded"

# A TCP transfer across the nodes.
lab_say "iperf3 TCP from h1p1 to h2p1 for ${IPERF_SECONDS}s"
ip netns exec "$(lab_ns h2p1)" timeout $((IPERF_SECONDS + 20)) iperf3 -s -1 -B "$(pod_ip h2p1)" \
    --logfile "$LAB_DIR/iperf3.server.log" </dev/null >/dev/null 2>&1 &
echo $! >"$LAB_DIR/iperf3.pid"
deadline=$((SECONDS + LAB_TIMEOUT))
until ip netns exec "$(lab_ns h2p1)" ss -ltn 2>/dev/null | grep -q ':5201 '; do
    [ "$SECONDS" -lt "$deadline" ] || lab_die "iperf3 server did not start"
    sleep 0.05
done
json=$(ip netns exec "$(lab_ns h1p1)" timeout $((IPERF_SECONDS + 15)) iperf3 -c "$(pod_ip h2p1)" \
    -t "$IPERF_SECONDS" -J) || lab_die "iperf3 failed: $(jq -r '.error // empty' <<<"$json" 2>/dev/null)"
read -r bytes bps retr < <(jq -r '"\(.end.sum_received.bytes) \(.end.sum_received.bits_per_second) \(.end.sum_sent.retransmits // 0)"' <<<"$json")
[ "${bytes%.*}" -gt 0 ] || lab_die "iperf3 moved no data: $json"
lab_info "$(awk -v b="$bytes" -v r="$bps" -v s="$IPERF_SECONDS" -v t="$retr" \
    'BEGIN { printf "%.1f MB in %ss: %.2f Gbit/s received, %d retransmits", b / 1e6, s, r / 1e9, t }')"

if [ "$QUIET" != 1 ]; then
    for n in h1 h2; do
        lab_say "$n ($(lab_host_ip "$n")): vtepd routes show"
        lab_client "$n" routes show | sed 's/^/    /'
        lab_info "counters: $(lab_client "$n" stats --json | jq -c '{rx_device, tx_tunnel, rx_tunnel, tx_device, drops: (.drops | with_entries(select(.value > 0)))}')"
    done
fi
lab_say "Calico-style IPIP works both ways in $((SECONDS - started)) s; cleaning up"
