#!/usr/bin/env bash
# flannel-style L3 VXLAN: vtepd in L3 mode (a TUN device) interoperating with the Linux kernel vxlan
# device configured the way flannel's vxlan backend configures it, and with an L2 vtepd on the same VNI;
# dual-stack between A and B.
#
#   h1 (192.0.2.1)  node A: vtepd --mode l3 --encap vxlan, TUN vtep0 = 10.244.0.0/32, VNI 1;
#                   pods 10.244.0.0/24 on bridge cni0 (10.244.0.1), MTU 1450. IPv6: --address6
#                   fd00:244::a/128, pods fd00:244::/64 (cni0 fd00:244::1).
#   h2 (192.0.2.2)  node B: kernel `flannel.1` (vxlan id 1 dstport 4789 nolearning, tx checksum
#                   offload off as flannel sets it), 10.244.1.0/32,
#                   and per remote node, as flannel does: `ip neigh replace <vtep ip> lladdr <vtep mac>
#                   nud permanent`, `bridge fdb append <vtep mac> dst <node ip>`, `ip route replace
#                   <subnet> via <vtep ip> dev flannel.1 onlink`; pods 10.244.1.0/24 on cni0 (MTU 1450).
#                   IPv6 the same way on the same device: fd00:244:1::b/128, a permanent neighbour for
#                   fd00:244::a and `fd00:244::/64 via fd00:244::a onlink`; pods fd00:244:1::/64.
#   h3 (192.0.2.3)  node C: vtepd in L2 mode (TAP vtep0 in bridge cni0 = 10.244.2.1/24), VNI 1; its pods
#                   10.244.2.0/24. Node A routes 10.244.2.0/24 via 10.244.2.1 and resolves it by ARP
#                   (flooded to C); C's kernel resolves A's 10.244.0.0 by ARP, answered by vtepd itself.
#
# Node A mirrors B's flannel configuration with vtepd flags: `--route 10.244.1.0/24=10.244.1.0
# --neigh 10.244.1.0=<flannel.1 MAC>` and `vtepd fdb add <flannel.1 MAC> 192.0.2.2`; B is given vtepd's
# MAC, read from `vtepd stats --json` (networks[0].mac). vtepd installs the kernel routes onto its TUN.
# For IPv6 vtepd has only `--route fd00:244:1::/64=fd00:244:1::b`: it resolves that next hop by Neighbor
# Discovery (its solicitation flooded to its peers, B among them, answered by B's kernel).
#
# Checks: ping both ways between A's and B's pods and between A's and C's pods (small and full-MTU,
# DF set); a ping to vtepd's own overlay address (answered by vtepd: icmp_echo_replies); a few seconds
# of iperf3 TCP in each direction between A and B pods (prints Gbit/s); vtepd learned C's gateway by
# ARP (neigh show); `routes del` / `routes add` on the control socket take the overlay route (and its
# kernel route) away and back. IPv6: pings both ways between A's and B's pods (small and full-MTU) and
# to vtepd's address; iperf3 TCP each way; vtepd learned fd00:244:1::b by ND; with B's permanent neighbour gone (and a flood
# entry toward A), B's kernel resolves fd00:244::a by ND, answered by vtepd (nd_adverts). With --quiet
# nothing is printed unless something fails.
#
# usage: sudo lab/flannel-vxlan.sh [--quiet] [--keep]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lab_parse_args "$@"
lab_prepare
lab_traps

VNI=1
IPERF_SECS=${IPERF_SECS:-3}
A_VTEP=10.244.0.0 B_VTEP=10.244.1.0 C_GW=10.244.2.1
A_POD=10.244.0.2 B_POD=10.244.1.2 C_POD=10.244.2.2
A_VTEP6=fd00:244::a B_VTEP6=fd00:244:1::b A_POD6=fd00:244::2 B_POD6=fd00:244:1::2

# ipv6_node HOST PREFIX: IPv6 forwarding, cni0 = PREFIX::1/64 and pod p1 PREFIX::2/64 (default route via
# cni0), without duplicate address detection so the addresses are usable at once.
ipv6_node() {
    local host=$1 p=$2 hns
    hns=$(lab_ns "$host")
    ip netns exec "$hns" sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv6.conf.cni0.accept_dad=0 \
        net.ipv6.conf.cni0.disable_ipv6=0 >/dev/null
    ip -n "$hns" addr add "$p::1/64" dev cni0 nodad
    lab_pod_ipv6 "${host}p1" "$p::2/64"
    ip -n "$(lab_ns "${host}p1")" -6 route add default via "$p::1"
}

# node HOST SUBNET_PREFIX: a host on the underlay, forwarding, with cni0 = <prefix>.1/24 and one pod
# <prefix>.2/24 (default route via cni0).
node() {
    local host=$1 p=$2 hns pns
    lab_host "$host"
    hns=$(lab_ns "$host")
    ip netns exec "$hns" sysctl -qw net.ipv4.ip_forward=1 >/dev/null
    lab_cni "$host"
    ip -n "$hns" link set cni0 mtu "$LAB_POD_MTU"
    ip -n "$hns" addr add "$p.1/24" dev cni0
    lab_pod "$host" p1 "$p.2/24"
    pns=$(lab_ns "${host}p1")
    ip -n "$pns" route add default via "$p.1"
    lab_info "$host: cni0 $p.1/24, pod ${host}p1 $p.2/24 (MTU $LAB_POD_MTU)"
}

lab_say "flannel-style VXLAN lab $LAB_PREFIX: vtepd L3 (h1), kernel flannel.1 (h2), vtepd L2 (h3), VNI $VNI"
lab_underlay
node h1 10.244.0
node h2 10.244.1
node h3 10.244.2
H1=$(lab_ns h1) H2=$(lab_ns h2) H3=$(lab_ns h3)
ipv6_node h1 fd00:244
ipv6_node h2 fd00:244:1

# Node B: the kernel device, as flannel creates it.
ip -n "$H2" link add flannel.1 type vxlan id "$VNI" local 192.0.2.2 dev eth0 dstport 4789 nolearning
ip -n "$H2" link set flannel.1 mtu "$LAB_POD_MTU"
ip -n "$H2" addr add "$B_VTEP/32" dev flannel.1
# flannel turns TX checksum offload off on flannel.1: here its datagrams leave through a veth, whose
# offload would hand the receiver's socket (vtepd) inner TCP segments with unfinished checksums.
ip netns exec "$H2" ethtool -K flannel.1 tx off >/dev/null
# IPv6 on it with its link-local address (the source of the kernel's own solicitations), no DAD.
ip netns exec "$H2" sysctl -qw net.ipv6.conf.flannel/1.accept_dad=0 \
    net.ipv6.conf.flannel/1.router_solicitations=0 net.ipv6.conf.flannel/1.disable_ipv6=0 >/dev/null
ip -n "$H2" link set flannel.1 up
ip -n "$H2" addr add "$B_VTEP6/128" dev flannel.1 nodad
B_MAC=$(ip netns exec "$H2" cat /sys/class/net/flannel.1/address)
lab_info "h2: kernel flannel.1 $B_VTEP/32 MAC $B_MAC (vxlan id $VNI dstport 4789 nolearning)"

# Node A: vtepd in L3 mode.
SOCK=$(lab_sock h1)
args=(run --mode l3 --encap vxlan --dev vtep0 --local 192.0.2.1 --vni "$VNI" --address "$A_VTEP/32"
    --route "10.244.1.0/24=$B_VTEP" --neigh "$B_VTEP=$B_MAC"
    --route "10.244.2.0/24=$C_GW" --peer 192.0.2.3 --peer 192.0.2.2 --control "$SOCK"
    --address6 "$A_VTEP6/128" --route "fd00:244:1::/64=$B_VTEP6")
lab_info "h1: vtepd ${args[*]}"
ip netns exec "$H1" "$VTEPD_BIN" "${args[@]}" </dev/null >"$LAB_DIR/h1.vtepd.log" 2>&1 &
echo $! >"$LAB_DIR/h1.vtepd.pid"
echo vtepd >"$LAB_DIR/h1.impl"
lab_wait_socket h1
lab_wait_link "$H1" vtep0
lab_client h1 fdb add "$B_MAC" 192.0.2.2 --vni "$VNI"
A_MAC=$(lab_client h1 stats --json | jq -r '.networks[0].mac')
[[ $A_MAC =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || lab_die "vtepd's stats --json has no MAC: '$A_MAC'"
lab_info "h1: vtepd's MAC on VNI $VNI is $A_MAC; static FDB $B_MAC -> 192.0.2.2"
lab_info "h1 routes: $(ip -n "$H1" route show dev vtep0 | tr '\n' ';')"

# Node B learns about node A the way flannel programs a new lease.
ip -n "$H2" neigh replace "$A_VTEP" lladdr "$A_MAC" dev flannel.1 nud permanent
bridge -n "$H2" fdb append "$A_MAC" dev flannel.1 dst 192.0.2.1
ip -n "$H2" route replace 10.244.0.0/24 via "$A_VTEP" dev flannel.1 onlink
ip -n "$H2" -6 neigh replace "$A_VTEP6" lladdr "$A_MAC" dev flannel.1 nud permanent
ip -n "$H2" -6 route replace fd00:244::/64 via "$A_VTEP6" dev flannel.1 onlink
lab_info "h2: neigh $A_VTEP lladdr $A_MAC permanent; fdb $A_MAC dst 192.0.2.1; route 10.244.0.0/24 via $A_VTEP onlink"
lab_info "h2: neigh $A_VTEP6 lladdr $A_MAC permanent; route fd00:244::/64 via $A_VTEP6 onlink"

# Node C: vtepd L2 on the same VNI, its TAP in cni0; the host routes A's pods via A's VTEP address.
lab_vtepd h3 "$VNI" 192.0.2.1
ip -n "$H3" route add 10.244.0.0/24 via "$A_VTEP" dev cni0 onlink
lab_info "h3: vtepd L2 (TAP vtep0 in cni0), route 10.244.0.0/24 via $A_VTEP dev cni0 onlink"

# ping_across FULL "FROM TO"...: a 56-byte and a FULL-byte ping (DF) for each pair.
ping_across() {
    local full=$1 size pair from to out
    shift
    for size in 56 "$full"; do
        for pair in "$@"; do
            read -r from to <<<"$pair"
            out=$(lab_ping_once "$from" "$to" "$size") || lab_die "$from cannot reach $to with $size-byte pings: $out"
            lab_info "$from -> $to ($size bytes): $(sed -n 's/.*time=\([0-9.]*\) ms.*/\1 ms/p' <<<"$out" | tail -n 1)"
        done
    done
}

lab_say "ping across: A <-> B (kernel flannel) and A <-> C (vtepd L2), 56 and $((LAB_POD_MTU - 28)) bytes, DF"
ping_across $((LAB_POD_MTU - 28)) "h1p1 $B_POD" "h2p1 $A_POD" "h1p1 $C_POD" "h3p1 $A_POD"

lab_say "ping vtepd's own overlay address from B's pod (vtepd answers it)"
before=$(lab_client h1 stats --json | jq .icmp_echo_replies)
out=$(lab_ping_once h2p1 "$A_VTEP" 56) || lab_die "h2p1 cannot ping vtepd's address $A_VTEP: $out"
after=$(lab_client h1 stats --json | jq .icmp_echo_replies)
[ "$after" -gt "$before" ] || lab_die "vtepd did not answer the echo itself (icmp_echo_replies $before -> $after)"
lab_info "h2p1 -> $A_VTEP: answered by vtepd (icmp_echo_replies $before -> $after)"

lab_say "neighbours vtepd resolved"
neigh=$(lab_client h1 neigh show --json)
jq -e --arg ip "$C_GW" '.[] | select(.ip == $ip and .kind == "learned")' <<<"$neigh" >/dev/null ||
    lab_die "vtepd did not learn $C_GW by ARP: $neigh"
jq -e --arg ip "$B_VTEP" --arg mac "$B_MAC" '.[] | select(.ip == $ip and .kind == "static" and .mac == $mac)' \
    <<<"$neigh" >/dev/null || lab_die "vtepd lost the static neighbour $B_VTEP: $neigh"
[ "$QUIET" = 1 ] || lab_client h1 neigh show | sed 's/^/    /'

# iperf3 PORT FROM_NODE SERVER_NODE SERVER_IP: a few seconds of TCP; prints Gbit/s received.
iperf() {
    local port=$1 from=$2 srv=$3 ip=$4 log json deadline=$((SECONDS + LAB_TIMEOUT))
    log=$LAB_DIR/iperf-$srv-$port.log
    ip netns exec "$(lab_ns "$srv")" iperf3 -s -p "$port" --logfile "$log" </dev/null >/dev/null 2>&1 &
    echo $! >"$LAB_DIR/iperf-$srv-$port.pid"
    until [ -n "$(ip netns exec "$(lab_ns "$srv")" ss -Hltn "sport = :$port" 2>/dev/null)" ]; do
        [ "$SECONDS" -lt "$deadline" ] || lab_die "iperf3 server in $srv did not start" || return
        sleep 0.05
    done
    json=$(ip netns exec "$(lab_ns "$from")" timeout $((IPERF_SECS + 15)) iperf3 -c "$ip" -p "$port" \
        -t "$IPERF_SECS" -J) || lab_die "iperf3 $from -> $ip failed: $(jq -r '.error // empty' <<<"$json")" || return
    jq -r '.end.sum_received.bits_per_second / 1e9 | . * 100 | round / 100' <<<"$json"
}

# tcp_both_ways PORT A_IP B_IP: iperf3 from A's pod to B_IP on PORT, from B's to A_IP on PORT+1.
tcp_both_ways() {
    local ab ba
    ab=$(iperf "$1" h1p1 h2p1 "$3")
    ba=$(iperf $(($1 + 1)) h2p1 h1p1 "$2")
    awk -v x="$ab" -v y="$ba" 'BEGIN { exit !(x > 0 && y > 0) }' || lab_die "iperf3 moved nothing ($ab / $ba Gbit/s)"
    lab_info "A (vtepd L3) -> B (kernel flannel.1): $ab Gbit/s"
    lab_info "B (kernel flannel.1) -> A (vtepd L3): $ba Gbit/s"
}

lab_say "iperf3 TCP, ${IPERF_SECS}s each way, between A's and B's pods (MTU $LAB_POD_MTU)"
tcp_both_ways 5201 "$A_POD" "$B_POD"

lab_say "routes through the control socket: del and re-add 10.244.1.0/24 on h1"
lab_client h1 routes del 10.244.1.0/24
[ -z "$(ip -n "$H1" route show 10.244.1.0/24 dev vtep0)" ] || lab_die "routes del left the kernel route"
! lab_ping_once h1p1 "$B_POD" 56 0 >/dev/null || lab_die "h1p1 still reaches $B_POD without its route"
lab_client h1 routes add 10.244.1.0/24 "$B_VTEP"
out=$(lab_ping_once h1p1 "$B_POD" 56) || lab_die "h1p1 cannot reach $B_POD after routes add: $out"
lab_info "routes del: $B_POD unreachable; routes add 10.244.1.0/24 $B_VTEP: reachable again"
[ "$QUIET" = 1 ] || lab_client h1 routes show | sed 's/^/    /'

lab_say "IPv6 across A <-> B: 56 and $((LAB_POD_MTU - 48)) bytes, DF; vtepd's own IPv6 address"
ping_across $((LAB_POD_MTU - 48)) "h1p1 $B_POD6" "h2p1 $A_POD6"
out=$(lab_ping_once h2p1 "$A_VTEP6" 56) || lab_die "h2p1 cannot ping vtepd's address $A_VTEP6: $out"
neigh=$(lab_client h1 neigh show --json)
jq -e --arg ip "$B_VTEP6" --arg mac "$B_MAC" '.[] | select(.ip == $ip and .kind == "learned" and .mac == $mac)' \
    <<<"$neigh" >/dev/null || lab_die "vtepd did not learn $B_VTEP6 by ND: $neigh"
[ "$(lab_client h1 stats --json | jq .nd_solicits)" -ge 1 ] || lab_die "vtepd sent no neighbour solicitation"
lab_info "vtepd resolved $B_VTEP6 at $B_MAC by Neighbor Discovery"
lab_say "iperf3 TCP over IPv6, ${IPERF_SECS}s each way"
tcp_both_ways 5203 "$A_POD6" "$B_POD6"

lab_say "B's kernel resolves $A_VTEP6 by Neighbor Discovery (vtepd answers)"
before=$(lab_client h1 stats --json | jq .nd_adverts)
ip -n "$H2" -6 neigh del "$A_VTEP6" dev flannel.1
bridge -n "$H2" fdb append 00:00:00:00:00:00 dev flannel.1 dst 192.0.2.1
out=$(lab_ping_once h2p1 "$A_POD6" 56) || lab_die "h2p1 cannot reach $A_POD6 by ND: $out"
after=$(lab_client h1 stats --json | jq .nd_adverts)
[ "$after" -gt "$before" ] || lab_die "vtepd sent no neighbour advertisement (nd_adverts $before -> $after)"
kn=$(ip -n "$H2" -6 neigh show "$A_VTEP6" dev flannel.1)
[[ $kn == *"lladdr $A_MAC"* && $kn != *PERMANENT* ]] || lab_die "B's kernel did not learn $A_VTEP6 by ND: '$kn'"
lab_info "B: $kn (nd_adverts $before -> $after)"

if [ "$QUIET" != 1 ]; then
    lab_say "vtepd counters on h1: $(lab_client h1 stats --json | jq -c '{rx_tunnel, tx_tunnel, rx_device, tx_device, arp_requests, arp_replies, nd_solicits, nd_adverts, icmp_echo_replies, neigh_learned, drops_total, drops: (.drops | with_entries(select(.value > 0)))}')"
fi
lab_say "vtepd L3 interoperates with flannel's kernel vxlan device and with an L2 vtepd on VNI $VNI"
