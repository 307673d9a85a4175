#!/usr/bin/env bash
# Regenerates the golden vectors in encap/tests/golden/ from implementations independent of ours:
#   1. the Linux kernel vxlan device, captured with tcpdump on the underlay veth of a namespace pair
#      (several device settings and inner traffic kinds), fields decoded by tshark;
#   2. scapy, for IPIP (the kernel here has no ipip link type) and ECN/DSCP corner cases.
# Needs root, iproute2, ethtool, tcpdump, tshark, iputils ping and Debian's /usr/bin/python3 with scapy.
# Everything runs inside namespaces this script creates (unique names) and removes on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=encap/tests/golden
PY=/usr/bin/python3
P="gg$$"                       # unique prefix for namespaces and devices
WORK=${GOLDEN_WORK:-$(mktemp -d)}
NSA="${P}a" NSB="${P}b"
A=192.0.2.1 B=192.0.2.2
TCPDUMP_PID=

cleanup() {
    if [ -n "$TCPDUMP_PID" ]; then kill "$TCPDUMP_PID" 2>/dev/null || true; fi
    ip netns del "$NSA" 2>/dev/null || true
    ip netns del "$NSB" 2>/dev/null || true
    [ -n "${GOLDEN_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# capture NAME "VXLAN OPTIONS" CONFIG -- builds the pair, runs traffic, writes $OUT/NAME.txt
# (Inner 802.1Q tags come from scapy: this kernel has no 8021q module for a vlan sub-interface.)
capture() {
    local name=$1 opts=$2 config=$3
    ip netns add "$NSA"
    ip netns add "$NSB"
    ip -n "$NSA" link add "${P}va" type veth peer name "${P}vb" netns "$NSB"
    ip -n "$NSA" addr add $A/24 dev "${P}va"
    ip -n "$NSB" addr add $B/24 dev "${P}vb"
    for ns in "$NSA" "$NSB"; do ip -n "$ns" link set lo up; done
    ip -n "$NSA" link set "${P}va" up
    ip -n "$NSB" link set "${P}vb" up
    # Without this the capture shows CHECKSUM_PARTIAL UDP checksums (pseudo-header only): the
    # kernel leaves the rest to the (veth) "hardware".
    ip netns exec "$NSA" ethtool -K "${P}va" tx off >/dev/null
    ip netns exec "$NSB" ethtool -K "${P}vb" tx off >/dev/null
    local n=1
    for pair in "$NSA $A $B" "$NSB $B $A"; do
        set -- $pair
        # shellcheck disable=SC2086
        ip -n "$1" link add vx0 type vxlan id 42 local "$2" remote "$3" $opts
        ip -n "$1" link set vx0 address "02:00:00:00:00:0$n"
        ip -n "$1" link set vx0 up
        ip -n "$1" addr add "10.42.0.$n/24" dev vx0
        n=$((n + 1))
    done
    local peer=10.42.0.2
    ip netns exec "$NSA" timeout 20 tcpdump -U -n -i "${P}va" -w "$WORK/$name.pcap" udp 2>"$WORK/$name.log" &
    TCPDUMP_PID=$!
    # Wait (bounded) until tcpdump says it is listening.
    for _ in $(seq 50); do grep -qs listening "$WORK/$name.log" && break; sleep 0.1; done
    sleep 0.5
    # Inner traffic: ARP (non-IP inner), ICMP with DSCP/ECN bits, UDP with DSCP/ECN bits.
    ip netns exec "$NSA" ping -n -c 1 -W 2 -Q 0xb8 "$peer" >/dev/null
    ip netns exec "$NSA" ping -n -c 1 -W 2 -Q 0x03 "$peer" >/dev/null
    ip netns exec "$NSA" ping -n -c 1 -W 2 -Q 0x29 "$peer" >/dev/null
    ip netns exec "$NSA" $PY -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x2a)
s.sendto(b'vtepd golden udp payload', ('$peer', 5555))
"
    sleep 0.5
    kill "$TCPDUMP_PID"
    wait "$TCPDUMP_PID" 2>/dev/null || true
    TCPDUMP_PID=
    ip netns del "$NSA"
    ip netns del "$NSB"
    $PY scripts/golden_vectors.py kernel "$WORK/$name.pcap" "$OUT/$name.txt" "$config" \
        "kernel vxlan: ip link add vx0 type vxlan id 42 local A remote B $opts"
}

mkdir -p "$OUT"
capture kernel_vxlan_noudpcsum "dstport 4789 ttl 64 tos inherit df set noudpcsum" \
    "dst_port=4789 ttl=64 dscp=inherit udp_checksum=0"
capture kernel_vxlan_udpcsum "dstport 4789 ttl 64 tos inherit df set udpcsum" \
    "dst_port=4789 ttl=64 dscp=inherit udp_checksum=1"
capture kernel_vxlan_fixed_tos "dstport 4789 ttl 64 tos 0x28 df set udpcsum" \
    "dst_port=4789 ttl=64 dscp=10 udp_checksum=1"
capture kernel_vxlan_8472_ttl_inherit "dstport 8472 ttl inherit tos inherit df set udpcsum" \
    "dst_port=8472 ttl=inherit dscp=inherit udp_checksum=1"
$PY scripts/golden_vectors.py scapy "$OUT"
echo "golden vectors written to $OUT"
