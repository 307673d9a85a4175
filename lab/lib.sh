#!/usr/bin/env bash
# vtepd network-namespace lab: helpers shared by the topology scripts (lab/*.sh) and the integration
# tests (tests/lab_*.rs).
#
# Use it two ways:
#   . lab/lib.sh                                  # from a topology script (bash), then call lab_* functions
#   LAB_PREFIX=t1 lab/lib.sh COMMAND [ARGS...]    # one helper from outside, e.g. `lab/lib.sh fabric 3 1`,
#                                                 # `lab/lib.sh client h1 fdb show`, `lab/lib.sh cleanup`
# COMMAND is a function name below without its `lab_` prefix (dashes or underscores both work).
#
# Environment:
#   LAB_PREFIX   prefix of every namespace we create (<prefix>-<name>) and of our state directory
#                /run/vtepd-lab-<prefix>; default vl<pid>, so parallel runs do not clash
#   VTEPD_BIN    the vtepd binary (default: target/release/vtepd of this checkout)
#   LAB_VTEP     vtepd (default) or kernel: what `lab_fabric` runs on hosts not named in LAB_IMPLS
#   LAB_IMPLS    per-host implementation list for `lab_fabric`, e.g. "vtepd vtepd kernel"
#   LAB_VNI      VNI of the fabric (default 42)
#   VTEPD_ARGS   extra `vtepd run` flags for every vtepd host of `lab_fabric` (word-split)
#   LAB_UNDERLAY6=1  an IPv6 underlay: hosts' eth0 2001:db8::N/64 and etcd on 2001:db8::254 instead
#                of 192.0.2.N/24 and 192.0.2.254 (IPv6 on only there; lab/store-fabric.sh --ipv6)
#   QUIET=1      print nothing but failures
#   LAB_TIMEOUT  seconds allowed for each bounded wait (default 10)
#
# Layout of a fabric: namespace <prefix>-ul holds the underlay bridge br0 (192.0.2.0/24). Host hN is
# namespace <prefix>-hN with eth0 = 192.0.2.N/24 (its peer, named hN, is a port of br0), a Linux bridge
# cni0 holding the VTEP device (vtepd's TAP `vtep0`, or the kernel's vxlan `vx0`), and pods pM
# (namespace <prefix>-hNpM, eth0 = 10.42.N.(9+M)/16, MAC 02:42:0a:2a:NN:MM, MTU 1450) on veth vpM.
# Nothing is created in the root namespace. IPv6 is off in every namespace so the wire stays quiet.

LAB_PREFIX_GIVEN=${LAB_PREFIX:+1}
LAB_PREFIX=${LAB_PREFIX:-vl$$}
LAB_DIR=/run/vtepd-lab-$LAB_PREFIX
LAB_TIMEOUT=${LAB_TIMEOUT:-10}
LAB_VNI=${LAB_VNI:-42}
LAB_VTEP=${LAB_VTEP:-vtepd}
QUIET=${QUIET:-0}
LAB_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_REPO=$(cd "$LAB_HOME/.." && pwd)
LAB_VTEPD_GIVEN=${VTEPD_BIN:+1}
VTEPD_BIN=${VTEPD_BIN:-$LAB_REPO/target/release/vtepd}
LAB_PY=/usr/bin/python3 # Debian's python, the one with scapy
LAB_POD_MTU=1450
LAB_UNDERLAY_NET=192.0.2
LAB_UNDERLAY6=${LAB_UNDERLAY6:-}

# ---------------------------------------------------------------------------------------------
# Output

# Prints a step for people (nothing in quiet mode).
lab_say() { [ "$QUIET" = 1 ] || printf '==> %s\n' "$*"; }
# Prints a detail for people (nothing in quiet mode).
lab_info() { [ "$QUIET" = 1 ] || printf '    %s\n' "$*"; }
# Prints an error (always) and fails.
lab_die() {
    printf 'lab: error: %s\n' "$*" >&2
    return 1
}

# ---------------------------------------------------------------------------------------------
# Names

# Full namespace name of a lab node: lab_ns h1 -> <prefix>-h1.
lab_ns() { printf '%s-%s' "$LAB_PREFIX" "$1"; }
# Underlay address of host hN.
lab_host_ip() {
    if [ -n "$LAB_UNDERLAY6" ]; then printf '2001:db8::%s' "${1#h}"; else printf '%s.%s' "$LAB_UNDERLAY_NET" "${1#h}"; fi
}
# lab_underlay_addr NAME DEV IP: gives DEV in namespace NAME underlay address IP (/24, or /64 on an
# IPv6 underlay: IPv6 turned on for DEV first, the address added without duplicate detection).
lab_underlay_addr() {
    if [ -z "$LAB_UNDERLAY6" ]; then
        ip -n "$(lab_ns "$1")" addr add "$3/24" dev "$2"
    else
        lab_ipv6_on "$1" "$2" && ip -n "$(lab_ns "$1")" addr add "$3/64" dev "$2" nodad
    fi
}
# Overlay address of pod M on host hN (without prefix length).
lab_pod_ip() { printf '10.42.%s.%s' "${1#h}" $((9 + ${2#p})); }
# MAC address of pod M on host hN.
lab_pod_mac() { printf '02:42:0a:2a:%02x:%02x' "${1#h}" "${2#p}"; }
# Control socket of the vtepd on a host.
lab_sock() { printf '%s/%s.sock' "$LAB_DIR" "$1"; }

# ---------------------------------------------------------------------------------------------
# Building blocks

# Creates namespace <prefix>-NAME (recorded for cleanup) with lo up and IPv6 off.
lab_netns_add() {
    local ns
    ns=$(lab_ns "$1")
    mkdir -p "$LAB_DIR"
    ip netns add "$ns" || lab_die "cannot create namespace $ns" || return
    echo "$ns" >>"$LAB_DIR/netns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null &&
        ip -n "$ns" link set lo up || lab_die "cannot set up namespace $ns"
}

# Creates the underlay: namespace <prefix>-ul holding bridge br0.
lab_underlay() {
    lab_netns_add ul || return
    ip -n "$(lab_ns ul)" link add br0 type bridge mcast_snooping 0 &&
        ip -n "$(lab_ns ul)" link set br0 up
}

# lab_host NAME [IP]: host namespace with eth0 (default address: lab_host_ip NAME) on the underlay bridge.
lab_host() {
    local name=$1 ip=${2:-$(lab_host_ip "$1")} ul hns
    ul=$(lab_ns ul)
    hns=$(lab_ns "$name")
    lab_netns_add "$name" || return
    ip -n "$ul" link add "$name" type veth peer name eth0 netns "$hns" &&
        ip -n "$ul" link set "$name" master br0 up &&
        lab_underlay_addr "$name" eth0 "$ip" &&
        ip -n "$hns" link set eth0 up || lab_die "cannot attach $name to the underlay" || return
    echo "$ip" >"$LAB_DIR/$name.ip"
}

# lab_cni HOST: a Linux bridge cni0 in the host, for its pods and its VTEP device.
lab_cni() {
    local hns
    hns=$(lab_ns "$1")
    ip -n "$hns" link add cni0 type bridge mcast_snooping 0 && ip -n "$hns" link set cni0 up
}

# lab_pin_neigh NODE IP MAC: a permanent neighbour entry on NODE's eth0, so the kernel never
# re-probes it (a unicast ARP probe ~5 s after a ping otherwise crosses the tunnel by itself).
lab_pin_neigh() {
    ip -n "$(lab_ns "$1")" neigh replace "$2" lladdr "$3" dev eth0 nud permanent
}

# lab_pod HOST POD [CIDR] [MAC]: pod namespace <prefix>-HOSTPOD behind the host's cni0 (veth vPOD).
lab_pod() {
    local host=$1 pod=$2 cidr=${3:-$(lab_pod_ip "$1" "$2")/16} mac=${4:-$(lab_pod_mac "$1" "$2")}
    local hns pns
    hns=$(lab_ns "$host")
    pns=$(lab_ns "$host$pod")
    lab_netns_add "$host$pod" || return
    ip -n "$hns" link add "v$pod" mtu "$LAB_POD_MTU" type veth peer name eth0 netns "$pns" &&
        ip -n "$hns" link set "v$pod" master cni0 up &&
        ip -n "$pns" link set eth0 address "$mac" mtu "$LAB_POD_MTU" up &&
        ip -n "$pns" addr add "$cidr" dev eth0 || lab_die "cannot create pod $host$pod" || return
}

# lab_ipv6_on NAME DEV: turns IPv6 on for DEV in namespace NAME (lab_netns_add turns it off) with
# nothing on the wire by itself: no link-local address, no router solicitations, and its MLD reports
# sent at once rather than spread over a second. Add addresses with `nodad`.
lab_ipv6_on() {
    local c=net.ipv6.conf.$2
    ip netns exec "$(lab_ns "$1")" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 $c.disable_ipv6=1 \
        $c.router_solicitations=0 $c.addr_gen_mode=1 $c.mldv1_unsolicited_report_interval=1 \
        $c.mldv2_unsolicited_report_interval=1 >/dev/null &&
        ip netns exec "$(lab_ns "$1")" sysctl -qw $c.disable_ipv6=0 >/dev/null ||
        lab_die "cannot turn IPv6 on for $2 in $1"
}

# lab_pod_ipv6 NODE CIDR: IPv6 on for a pod's eth0 (lab_ipv6_on), with address CIDR.
lab_pod_ipv6() {
    lab_ipv6_on "$1" eth0 &&
        ip -n "$(lab_ns "$1")" -6 addr add "$2" dev eth0 nodad ||
        lab_die "cannot turn IPv6 on in $1" || return
}

# lab_wait_link NS DEV: waits (bounded) until DEV exists in namespace NS.
lab_wait_link() {
    local deadline=$((SECONDS + LAB_TIMEOUT))
    until ip -n "$1" link show "$2" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || lab_die "device $2 did not appear in $1 within ${LAB_TIMEOUT}s" || return
        sleep 0.05
    done
}

# lab_wait_socket HOST: waits (bounded) for the host's vtepd control socket; fails early if vtepd exited.
lab_wait_socket() {
    local host=$1 sock pid deadline=$((SECONDS + LAB_TIMEOUT))
    sock=$(lab_sock "$host")
    pid=$(cat "$LAB_DIR/$host.vtepd.pid")
    until [ -S "$sock" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            lab_die "vtepd on $host exited before opening $sock; its log:" || true
            sed 's/^/    /' "$LAB_DIR/$host.vtepd.log" >&2
            return 1
        fi
        [ "$SECONDS" -lt "$deadline" ] || lab_die "no control socket $sock within ${LAB_TIMEOUT}s" || return
        sleep 0.05
    done
}

# lab_vtepd HOST VNI PEERS [FLAGS...]: starts vtepd in the host (TAP vtep0, control socket lab_sock HOST),
# PEERS a comma-separated list; waits for its socket and device and puts the TAP in cni0.
lab_vtepd() {
    local host=$1 vni=$2 peers=$3 hns ip sock p
    shift 3
    hns=$(lab_ns "$host")
    ip=$(cat "$LAB_DIR/$host.ip")
    sock=$(lab_sock "$host")
    [ -x "$VTEPD_BIN" ] || lab_die "vtepd binary $VTEPD_BIN not found (build it, or set VTEPD_BIN)" || return
    local args=(run --dev vtep0 --local "$ip" --vni "$vni" --control "$sock")
    for p in ${peers//,/ }; do args+=(--peer "$p"); done
    args+=("$@")
    lab_info "$host: vtepd ${args[*]}"
    ip netns exec "$hns" "$VTEPD_BIN" "${args[@]}" </dev/null >"$LAB_DIR/$host.vtepd.log" 2>&1 &
    echo $! >"$LAB_DIR/$host.vtepd.pid"
    echo vtepd >"$LAB_DIR/$host.impl"
    lab_wait_socket "$host" || return
    lab_wait_link "$hns" vtep0 || return
    ip -n "$hns" link set vtep0 master cni0 && ip -n "$hns" link set vtep0 up
}

# lab_etcd: an etcd server (Debian's etcd-server) in the underlay namespace, on lab_etcd_ip (which
# br0 is given) port 2379, its data in the lab's state directory; waits until it answers. Its client
# URL is lab_etcd_url. Stopped by lab_cleanup like the daemons (recorded PID).
lab_etcd_ip() {
    if [ -n "$LAB_UNDERLAY6" ]; then echo 2001:db8::254; else echo "$LAB_UNDERLAY_NET.254"; fi
}
lab_etcd_url() {
    if [ -n "$LAB_UNDERLAY6" ]; then printf 'http://[%s]:2379' "$(lab_etcd_ip)"; else printf 'http://%s:2379' "$(lab_etcd_ip)"; fi
}
lab_etcd() {
    local ul url peer=http://127.0.0.1:2380 deadline=$((SECONDS + LAB_TIMEOUT))
    ul=$(lab_ns ul)
    url=$(lab_etcd_url)
    command -v etcd >/dev/null || lab_die "etcd not found (scripts/setup.sh installs etcd-server)" || return
    lab_underlay_addr ul br0 "$(lab_etcd_ip)" || return
    ip netns exec "$ul" etcd --name lab --data-dir "$LAB_DIR/etcd" --listen-client-urls "$url" \
        --advertise-client-urls "$url" --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "lab=$peer" </dev/null >"$LAB_DIR/etcd.log" 2>&1 &
    echo $! >"$LAB_DIR/etcd.pid"
    until ip netns exec "$ul" curl -sf -m 1 "$url/health" 2>/dev/null | grep -q true; do
        [ "$SECONDS" -lt "$deadline" ] || lab_die "etcd did not answer within ${LAB_TIMEOUT}s" || return
        sleep 0.1
    done
    lab_info "etcd on $url (namespace $ul)"
}

# lab_kernel_vtep HOST VNI PEERS [DEV]: the Linux kernel vxlan device (default vx0) as the host's VTEP:
# dstport 4789, learning on, flood list = PEERS (comma-separated) through all-zero FDB entries.
# LAB_KERNEL_VXLAN: more ip-link vxlan options (word-split, e.g. "udpcsum remcsumtx remcsumrx").
lab_kernel_vtep() {
    local host=$1 vni=$2 peers=$3 dev=${4:-vx0} hns ip p opts
    read -r -a opts <<<"${LAB_KERNEL_VXLAN:-}"
    hns=$(lab_ns "$host")
    ip=$(cat "$LAB_DIR/$host.ip")
    lab_info "$host: kernel vxlan $dev id $vni local $ip dstport 4789 ${opts[*]}, flood to $peers"
    ip -n "$hns" link add "$dev" type vxlan id "$vni" local "$ip" dstport 4789 dev eth0 "${opts[@]}" ||
        lab_die "cannot create vxlan device on $host" || return
    # With tx checksum offload on, the kernel leaves the inner TCP/UDP checksum unfinished
    # (CHECKSUM_PARTIAL) for a NIC to complete, and over veth nothing ever completes it: a
    # userspace VTEP receives the inner segment with only the pseudo-header sum in it. flannel turns
    # it off on its vxlan device for the same reason. (ICMP is always checksummed in software.)
    # With remote checksum offload (remcsumtx) that is what the option is for: the VXLAN header
    # tells the receiver where the checksum is, and the offload stays on.
    if [[ " ${opts[*]} " != *" remcsumtx "* ]]; then
        ip netns exec "$hns" ethtool -K "$dev" tx off >/dev/null ||
            lab_die "cannot turn off tx checksum offload on $host $dev" || return
    fi
    for p in ${peers//,/ }; do
        bridge -n "$hns" fdb append 00:00:00:00:00:00 dev "$dev" dst "$p" || return
    done
    ip -n "$hns" link set "$dev" master cni0 && ip -n "$hns" link set "$dev" up
    echo kernel >"$LAB_DIR/$host.impl"
    echo "$dev" >"$LAB_DIR/$host.dev"
}

# lab_tcp_check FROM_POD TO_POD: a 4 MiB iperf3 TCP transfer from FROM_POD (e.g. h1p1) to TO_POD's
# address, within a deadline; fails the lab if it does not complete.
lab_tcp_check() {
    local from=$1 to=$2 ip out srv deadline
    ip=$(lab_pod_ip "${to%p*}" "p${to##*p}")
    ip netns exec "$(lab_ns "$to")" timeout 30 iperf3 -s -1 -B "$ip" >/dev/null 2>&1 &
    srv=$!
    deadline=$((SECONDS + LAB_TIMEOUT))
    until ip netns exec "$(lab_ns "$to")" ss -Hltn "sport = :5201" | grep -q .; do
        [ "$SECONDS" -lt "$deadline" ] || lab_die "iperf3 server in $to not listening" || return
        sleep 0.05
    done
    if ! out=$(ip netns exec "$(lab_ns "$from")" timeout 20 iperf3 -c "$ip" -n 4M --connect-timeout 3000 2>&1); then
        kill "$srv" 2>/dev/null
        wait "$srv" 2>/dev/null
        lab_die "TCP from $from to $to ($ip) failed: $(printf '%s' "$out" | tail -n 1)" || return
    fi
    wait "$srv" 2>/dev/null
    lab_info "TCP $from -> $to: $(printf '%s\n' "$out" | awk '/receiver/ {print $7, $8}')"
}

# lab_client HOST ARGS...: runs the vtepd client against the host's daemon (`lab_client h1 fdb show --json`).
lab_client() {
    local host=$1
    shift
    "$VTEPD_BIN" "$@" --control "$(lab_sock "$host")"
}

# lab_impl HOST: prints vtepd or kernel.
lab_impl() { cat "$LAB_DIR/$1.impl"; }

# lab_wait_ping FROM_NODE DST_IP [SECONDS]: pings from a node (e.g. h1p1) until one answer or the deadline.
lab_wait_ping() {
    local ns deadline=$((SECONDS + ${3:-$LAB_TIMEOUT}))
    ns=$(lab_ns "$1")
    until ip netns exec "$ns" ping -c 1 -W 1 -q "$2" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || lab_die "$1 cannot ping $2 within ${3:-$LAB_TIMEOUT}s" || return
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------------------------
# Whole topologies

# lab_fabric NHOSTS NPODS: the flannel-style fabric of the layout above. Hosts run LAB_IMPLS (or LAB_VTEP),
# VNI LAB_VNI, each host's peers being all the others; vtepd hosts get VTEPD_ARGS.
lab_fabric() {
    local nhosts=$1 npods=$2 i j peers impls impl
    read -r -a impls <<<"${LAB_IMPLS:-}"
    lab_say "fabric $LAB_PREFIX: $nhosts hosts on underlay bridge ${LAB_UNDERLAY_NET}.0/24, $npods pods each, VNI $LAB_VNI"
    lab_underlay || return
    for ((i = 1; i <= nhosts; i++)); do
        lab_host "h$i" || return
        lab_cni "h$i" || return
        for ((j = 1; j <= npods; j++)); do
            lab_pod "h$i" "p$j" || return
            lab_info "h${i}p$j: $(lab_pod_ip "h$i" "p$j")/16 $(lab_pod_mac "h$i" "p$j") mtu $LAB_POD_MTU behind h$i cni0"
        done
    done
    for ((i = 1; i <= nhosts; i++)); do
        peers=
        for ((j = 1; j <= nhosts; j++)); do
            [ "$j" = "$i" ] || peers+="${peers:+,}$(lab_host_ip "h$j")"
        done
        impl=${impls[$((i - 1))]:-$LAB_VTEP}
        case $impl in
        vtepd)
            # shellcheck disable=SC2086 # VTEPD_ARGS is a list of flags
            lab_vtepd "h$i" "$LAB_VNI" "$peers" ${VTEPD_ARGS:-} || return
            ;;
        kernel) lab_kernel_vtep "h$i" "$LAB_VNI" "$peers" || return ;;
        *) lab_die "unknown VTEP implementation '$impl' (vtepd or kernel)" || return ;;
        esac
    done
}

# lab_pods: prints every pod node of the fabric (h1p1 h1p2 ...), one a line.
lab_pods() {
    local ns
    while read -r ns; do
        ns=${ns#"$LAB_PREFIX"-}
        [[ $ns =~ ^h[0-9]+p[0-9]+$ ]] && echo "$ns"
    done <"$LAB_DIR/netns"
    return 0
}

# lab_hosts: prints every host of the fabric (h1 h2 ...), one a line.
lab_hosts() {
    local ns
    while read -r ns; do
        ns=${ns#"$LAB_PREFIX"-}
        [[ $ns =~ ^h[0-9]+$ ]] && echo "$ns"
    done <"$LAB_DIR/netns"
    return 0
}

# lab_ping_all [SIZE]: every pod pings every other pod (payload SIZE, DF set); fails if any pair fails.
# Prints one line per source pod with the round-trip time to each destination. The first answer from a
# pod may take a moment (ARP, FDB learning), so each pair is retried until its deadline.
lab_ping_all() {
    local size=${1:-56} src dst dst_ip out rtt line failed=0 pods wait=$LAB_TIMEOUT
    mapfile -t pods < <(lab_pods)
    lab_say "ping every pod from every other pod (${#pods[@]} pods, $((size + 28))-byte IP packets, DF set)"
    for src in "${pods[@]}"; do
        line="$src ->"
        for dst in "${pods[@]}"; do
            [ "$src" != "$dst" ] || continue
            dst_ip=$(lab_pod_ip "${dst%p*}" "p${dst##*p}")
            if out=$(lab_ping_once "$src" "$dst_ip" "$size" "$wait"); then
                rtt=$(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -n 1)
                line+=" $dst ${rtt}ms"
            else
                line+=" $dst FAIL"
                printf 'lab: FAIL %s -> %s (%s): no answer (retried for %ss)\n' "$src" "$dst" "$dst_ip" "$wait" >&2
                failed=$((failed + 1))
                wait=0
                # Quiet runs (tests) stop at the first failure; people see the whole matrix, each
                # further pair getting a single try.
                [ "$QUIET" != 1 ] || lab_die "pod $src cannot reach $dst" || return
            fi
        done
        lab_info "$line"
    done
    [ "$failed" = 0 ] || lab_die "$failed pod pairs could not reach each other"
}

# lab_ping_once FROM_NODE DST_IP SIZE [SECONDS]: one answered ping, retried until the deadline (default
# LAB_TIMEOUT; 0 = a single try); prints ping's output.
lab_ping_once() {
    local ns out deadline=$((SECONDS + ${4:-$LAB_TIMEOUT}))
    ns=$(lab_ns "$1")
    until out=$(ip netns exec "$ns" ping -c 1 -W 1 -M do -s "$3" "$2" 2>&1); do
        [ "$SECONDS" -lt "$deadline" ] || {
            printf '%s\n' "$out"
            return 1
        }
        sleep 0.1
    done
    printf '%s\n' "$out"
}

# lab_show_fdb HOST: prints the host's forwarding database (vtepd's `fdb show`, or the kernel's).
lab_show_fdb() {
    local host=$1
    case $(lab_impl "$host") in
    vtepd) lab_client "$host" fdb show ;;
    kernel) bridge -n "$(lab_ns "$host")" fdb show dev "$(cat "$LAB_DIR/$host.dev")" | grep -w self ;;
    esac
}

# lab_fdb_learned HOST: prints "MAC REMOTE" (lower case) for every learned entry of the host's VTEP FDB:
# vtepd's `fdb show --json` entries of kind learned, or the kernel vxlan device's dynamic entries.
lab_fdb_learned() {
    local host=$1 json
    case $(lab_impl "$host") in
    vtepd)
        json=$(lab_client "$host" fdb show --json) || lab_die "fdb show --json failed on $host" || return
        jq -r '.[] | select(.kind == "learned") | "\(.mac | ascii_downcase) \(.remote)"' <<<"$json" ||
            lab_die "fdb show --json on $host printed something that is not the contract's JSON: $json"
        ;;
    kernel)
        json=$(bridge -n "$(lab_ns "$host")" -j fdb show dev "$(cat "$LAB_DIR/$host.dev")") || return
        jq -r '.[] | select(.dst != null and .state != "permanent" and .mac != "00:00:00:00:00:00")
            | "\(.mac | ascii_downcase) \(.dst)"' <<<"$json"
        ;;
    esac
}

# lab_fdb_del HOST MAC: deletes the MAC from the host's VTEP FDB (vtepd's `fdb del`, or `bridge fdb del`).
lab_fdb_del() {
    local host=$1 mac=$2
    case $(lab_impl "$host") in
    vtepd) lab_client "$host" fdb del "$mac" --vni "$LAB_VNI" ;;
    kernel) bridge -n "$(lab_ns "$host")" fdb del "$mac" dev "$(cat "$LAB_DIR/$host.dev")" ;;
    esac
}

# lab_check_learned: every host's VTEP must have learned every pod MAC of every other host, pointing at
# that host's underlay address. Prints what each host learned; fails on the first missing entry.
lab_check_learned() {
    local host other pod learned missing=0 mac want
    for host in $(lab_hosts); do
        learned=$(lab_fdb_learned "$host") || return
        lab_say "$host ($(lab_impl "$host")) learned $(grep -c . <<<"$learned") remote MACs"
        for other in $(lab_hosts); do
            [ "$other" != "$host" ] || continue
            for pod in $(lab_pods | grep "^${other}p"); do
                mac=$(lab_pod_mac "$other" "p${pod##*p}")
                want="$mac $(lab_host_ip "$other")"
                if grep -qxF "$want" <<<"$learned"; then
                    lab_info "$mac -> $(lab_host_ip "$other") ($pod behind $other, $(lab_impl "$other"))"
                else
                    printf 'lab: FAIL %s (%s) has not learned %s -> %s (%s)\n' "$host" "$(lab_impl "$host")" \
                        "$mac" "$(lab_host_ip "$other")" "$pod" >&2
                    missing=$((missing + 1))
                fi
            done
        done
    done
    [ "$missing" = 0 ] || lab_die "$missing FDB entries were not learned"
}

# lab_show_stats HOST: one line of the host's vtepd counters (`stats --json`); nothing for a kernel host.
lab_show_stats() {
    local host=$1 json
    [ "$(lab_impl "$host")" = vtepd ] || return 0
    json=$(lab_client "$host" stats --json) || lab_die "stats --json failed on $host" || return
    jq -r '"rx_device \(.rx_device), tx_tunnel \(.tx_tunnel) (\(.flood_copies) flood copies), rx_tunnel \(.rx_tunnel), tx_device \(.tx_device), fdb_entries \(.fdb_entries), drops \([.drops[]] | add // 0)"' <<<"$json" ||
        lab_die "stats --json on $host printed something that is not the contract's JSON: $json"
}

# ---------------------------------------------------------------------------------------------
# Traffic and wire counting

# lab_send_frames NODE DST_MAC COUNT [SRC_MAC]: sends COUNT Ethernet frames out of the node's eth0
# (ethertype 0x88b5, local experimental: nothing answers them). SRC_MAC defaults to eth0's own.
lab_send_frames() {
    local ns
    ns=$(lab_ns "$1")
    ip netns exec "$ns" "$LAB_PY" "$LAB_HOME/send_frames.py" eth0 "$2" "$3" ${4:+--src "$4"}
}

# lab_capture NODE [DEV] [FILTER] [NAME] [DIRECTION]: starts tcpdump on the node's DEV (default eth0,
# the underlay link), keeping the packets it receives (DIRECTION in, the default; out: the packets it
# sends) that match FILTER (default: VXLAN datagrams, udp dst port 4789) in $LAB_DIR/NAME.pcap (NAME
# defaults to NODE); waits until it listens. Packets reach the file at once, to be counted while the
# capture runs; with LAB_CAPTURE_BULK=1 they are buffered instead (a 64 MiB ring of variable-size
# blocks, which a bulk TCP transfer does not overrun): read the file after lab_capture_stop NAME.
lab_capture() {
    local node=$1 dev=${2:-eth0} filter=${3:-udp dst port 4789} name=${4:-$1} dir=${5:-in} ns log pid
    local deadline=$((SECONDS + LAB_TIMEOUT)) mode=(-U --immediate-mode)
    rm -f "$LAB_DIR/$name.bulk"
    if [ "${LAB_CAPTURE_BULK:-0}" = 1 ]; then
        mode=(-B 65536)
        : >"$LAB_DIR/$name.bulk"
    fi
    ns=$(lab_ns "$node")
    log=$LAB_DIR/$name.tcpdump.log
    ip netns exec "$ns" tcpdump -Z root -i "$dev" -Q "$dir" -nn "${mode[@]}" -w "$LAB_DIR/$name.pcap" \
        "$filter" </dev/null >/dev/null 2>"$log" &
    pid=$!
    echo "$pid" >"$LAB_DIR/$name.tcpdump.pid"
    until grep -q 'listening on' "$log" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || lab_die "tcpdump on $node $dev failed: $(cat "$log")" || return
        [ "$SECONDS" -lt "$deadline" ] || lab_die "tcpdump on $node $dev not listening within ${LAB_TIMEOUT}s" || return
        sleep 0.02
    done
}

# lab_capture_stop NAME...: stops each capture NAME (SIGTERM: tcpdump writes out what it holds),
# waits (bounded) until its tcpdump has exited, and prints how many packets the kernel dropped
# from it, one line per NAME in order. Captures that end together are best stopped in one call:
# the wait for a bulk capture's last block is then paid once.
lab_capture_stop() {
    local name pid log i pids=() deadline=$((SECONDS + LAB_TIMEOUT))
    # A bulk capture's last block reaches tcpdump only when the kernel retires it, at most a
    # second (tcpdump's timeout) after its first packet; tcpdump stopped before that loses it.
    for name in "$@"; do
        if [ -e "$LAB_DIR/$name.bulk" ]; then
            sleep 1.5
            break
        fi
    done
    for name in "$@"; do
        pid=$(cat "$LAB_DIR/$name.tcpdump.pid") || return
        pids+=("$pid")
        kill -TERM "$pid" 2>/dev/null
    done
    i=0
    for name in "$@"; do
        pid=${pids[i]} i=$((i + 1))
        log=$LAB_DIR/$name.tcpdump.log
        while kill -0 "$pid" 2>/dev/null; do
            [ "$SECONDS" -lt "$deadline" ] || lab_die "tcpdump of capture $name did not exit" || return
            sleep 0.05
        done
        rm -f "$LAB_DIR/$name.tcpdump.pid"
        sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel$/\1/p' "$log" | grep . ||
            lab_die "capture $name: tcpdump reported no statistics: $(cat "$log")" || return
    done
}

# lab_wire_port HOST: makes the underlay bridge's port toward HOST behave like a NIC without
# offloads (tx checksumming and with it segmentation off): what reaches HOST is what a wire would
# carry, every UDP GSO send cut into its datagrams and every checksum filled in, in software.
lab_wire_port() {
    ip netns exec "$(lab_ns ul)" ethtool -K "$1" tx off >/dev/null ||
        lab_die "cannot turn off tx offloads on the underlay port toward $1"
}

# lab_gro HOST: makes runs of datagrams to a socket with UDP_GRO reach it merged: GRO on for the
# host's underlay link, and TSO off on the bridge port that feeds it (veth hands forwarded packets
# to its receive NAPI, where GRO happens, only when the sending end cannot make TSO packets).
lab_gro() {
    ip netns exec "$(lab_ns ul)" ethtool -K "$1" tso off >/dev/null &&
        ip netns exec "$(lab_ns "$1")" ethtool -K eth0 gro on >/dev/null ||
        lab_die "cannot set up GRO toward $1"
}

# lab_vxlan_gso_check MODE NAME TX_HOST: lab/scapy/vxlan_gso_check.py on capture NAME for the VXLAN
# datagrams sent by TX_HOST (VNI LAB_VNI, TX_HOST's eth0 MTU). MODE wire: each datagram as a wire
# carries it (size, DF, checksums, VXLAN header); MODE whole: a capture where UDP GSO sends (or GRO
# merges) show whole, cut into their segments. Prints the script's JSON.
lab_vxlan_gso_check() {
    local mode=$1 name=$2 tx=$3 mtu
    mtu=$(ip netns exec "$(lab_ns "$tx")" cat /sys/class/net/eth0/mtu) || return
    "$LAB_PY" "$LAB_HOME/scapy/vxlan_gso_check.py" "$mode" "$LAB_DIR/$name.pcap" "$(cat "$LAB_DIR/$tx.ip")" \
        --vni "$LAB_VNI" --mtu "$mtu"
}

# lab_count_pcap NAME [FILTER]: how many packets of capture NAME match FILTER.
lab_count_pcap() {
    local out
    out=$(tcpdump -r "$LAB_DIR/$1.pcap" --count ${2:+"$2"} 2>&1)
    [[ $out =~ (^|$'\n')([0-9]+)\ packets?($|$'\n') ]] || lab_die "cannot count packets of $1: $out" || return
    echo "${BASH_REMATCH[2]}"
}

# lab_count HOST INNER_DST_MAC: how many VXLAN datagrams the host received carrying a frame to that MAC
# (from the capture lab_capture HOST started).
lab_count() {
    local hex=${2//:/}
    [[ $hex =~ ^[0-9a-fA-F]{12}$ ]] || lab_die "bad MAC $2" || return
    # UDP header (8) + VXLAN header (8): the inner destination MAC starts at udp[16].
    lab_count_pcap "$1" "udp dst port 4789 and udp[16:4] = 0x${hex:0:8} and udp[20:2] = 0x${hex:8:4}"
}

# lab_inject NODE HOST SRC_IP KIND [ARGS...]: runs lab/scapy/vxlan_inject.py in NODE (a namespace on the
# underlay, e.g. one made with `lab_host x 192.0.2.99`), sending KIND datagrams to HOST's underlay
# address and MAC with source SRC_IP. Prints "sent N".
lab_inject() {
    local node=$1 host=$2 src=$3 kind=$4 mac
    shift 4
    mac=$(ip netns exec "$(lab_ns "$host")" cat /sys/class/net/eth0/address) || return
    ip netns exec "$(lab_ns "$node")" "$LAB_PY" "$LAB_HOME/scapy/vxlan_inject.py" eth0 "$mac" "$src" \
        "$(cat "$LAB_DIR/$host.ip")" "$kind" --vni "$LAB_VNI" "$@"
}

# lab_check_vxlan_wire RX_HOST TX_HOST: checks the VXLAN datagrams RX_HOST captured (lab_capture) from
# TX_HOST's underlay address against the wire rules in ARCHITECTURE.md: DF set, flags byte 0x08 with the
# reserved bits zero, VNI LAB_VNI. With LAB_CHECK_SRCPORT=1 also the UDP source port: in 49152-65535 and
# varying with the inner flow (more than one port across the captured flows); otherwise the ports seen
# are only reported. Prints a summary line.
lab_check_vxlan_wire() {
    local rx=$1 tx=$2 from total good ports in_range
    from="udp dst port 4789 and ip src $(cat "$LAB_DIR/$tx.ip")"
    total=$(lab_count_pcap "$rx" "$from") || return
    [ "$total" -gt 0 ] || lab_die "$rx captured no VXLAN datagrams from $tx" || return
    good=$(lab_count_pcap "$rx" "$from and ip[6] & 0x40 != 0 and udp[8:4] = 0x08000000 and udp[12:4] = $((LAB_VNI << 8))") ||
        return
    [ "$good" = "$total" ] ||
        lab_die "$rx: only $good of $total VXLAN datagrams from $tx have DF, flags 0x08 and VNI $LAB_VNI" || return
    in_range=$(lab_count_pcap "$rx" "$from and udp[0:2] >= 49152") || return
    ports=$(tcpdump -r "$LAB_DIR/$rx.pcap" -nn "$from" 2>/dev/null |
        sed -n 's/.* IP [0-9.]*\.\([0-9]*\) > .*/\1/p' | sort -nu | tr '\n' ' ')
    lab_info "$rx <- $tx ($(lab_impl "$tx")): $total datagrams, all DF, flags 0x08, VNI $LAB_VNI; source ports: $ports"
    if [ "${LAB_CHECK_SRCPORT:-0}" = 1 ]; then
        [ "$in_range" = "$total" ] ||
            lab_die "$rx: $((total - in_range)) of $total VXLAN datagrams from $tx have a source port below 49152 ($ports)" ||
            return
        [ "$(wc -w <<<"$ports")" -gt 1 ] ||
            lab_die "$rx: all $total VXLAN datagrams from $tx have the same source port $ports" || return
    fi
}

# lab_udp_csum_errors NODE: the kernel's count of UDP datagrams dropped for a bad checksum in the node
# (Udp InCsumErrors of /proc/net/snmp, read inside its namespace).
lab_udp_csum_errors() {
    ip netns exec "$(lab_ns "$1")" awk '
        $1 == "Udp:" && !seen { for (i = 2; i <= NF; i++) col[$i] = i; seen = 1; next }
        $1 == "Udp:" && seen { print $col["InCsumErrors"]; exit }' /proc/net/snmp
}

# ---------------------------------------------------------------------------------------------
# Calico-style IPIP (L3 mode over TUN)
#
# Node hN (namespace <prefix>-hN, underlay 192.0.2.N) owns the pod block 10.244.N.64/26. Pod pM
# (namespace <prefix>-hNpM) has eth0 = 10.244.N.(64+M)/32, MTU LAB_IPIP_POD_MTU, and a default route
# via 169.254.1.1, which nothing owns: the host side of its veth (caliNpM, MAC ee:ee:ee:ee:ee:ee)
# answers ARP for it by proxy ARP, and the node routes 10.244.N.(64+M)/32 to that veth. vtepd runs
# `--mode l3 --encap ipip` on TUN device tunl0 (address 10.244.N.64/32, as Calico gives its tunl0)
# with one route per remote pod block via the remote node; it installs the kernel routes itself.

LAB_IPIP_DEV=${LAB_IPIP_DEV:-tunl0}
LAB_IPIP_POD_MTU=${LAB_IPIP_POD_MTU:-1480}

# Pod block of node hN.
lab_calico_block() { printf '10.244.%s.64/26' "${1#h}"; }
# Address of pod M on node hN.
lab_calico_pod_ip() { printf '10.244.%s.%s' "${1#h}" $((64 + ${2#p})); }

# lab_calico_node NAME: a host on the underlay that forwards, with a default route (via the
# underlay's .254, which nothing answers: only so that proxy ARP has a route for 169.254.1.1).
lab_calico_node() {
    local hns
    lab_host "$1" || return
    hns=$(lab_ns "$1")
    ip netns exec "$hns" sysctl -qw net.ipv4.ip_forward=1 >/dev/null &&
        ip -n "$hns" route add default via "$LAB_UNDERLAY_NET.254" dev eth0 ||
        lab_die "cannot make $1 a router" || return
}

# lab_calico_pod NODE POD: a pod with a /32 and gateway 169.254.1.1, behind proxy ARP on the node.
lab_calico_pod() {
    local node=$1 pod=$2 hns pns ip veth
    hns=$(lab_ns "$node")
    pns=$(lab_ns "$node$pod")
    ip=$(lab_calico_pod_ip "$node" "$pod")
    veth=cali${node#h}$pod
    lab_netns_add "$node$pod" || return
    ip -n "$hns" link add "$veth" mtu "$LAB_IPIP_POD_MTU" address ee:ee:ee:ee:ee:ee type veth \
        peer name eth0 netns "$pns" mtu "$LAB_IPIP_POD_MTU" &&
        ip netns exec "$hns" sysctl -qw "net.ipv4.conf.$veth.proxy_arp=1" >/dev/null &&
        ip -n "$hns" link set "$veth" up &&
        ip -n "$hns" route add "$ip/32" dev "$veth" scope link &&
        ip -n "$pns" link set eth0 up &&
        ip -n "$pns" addr add "$ip/32" dev eth0 &&
        ip -n "$pns" route add 169.254.1.1 dev eth0 scope link &&
        ip -n "$pns" route add default via 169.254.1.1 dev eth0 ||
        lab_die "cannot create pod $node$pod" || return
}

# IPv6 address of pod M on node hN (IPIP with --address6; see lab_calico_pod6).
lab_calico_pod_ip6() { printf 'fd00:%s::%x' "${1#h}" $((64 + ${2#p})); }

# lab_calico_pod6 NODE POD: gives a pod of lab_calico_pod IPv6 too, as Calico does: fd00:N::(64+M in hex)/128
# on its eth0 with the default route via the host veth's link-local fe80::ecee:eeff:feee:eeee
# (from its MAC ee:ee:ee:ee:ee:ee), a route to it on the node, and IPv6 forwarding on the node.
# IPv6 is turned on for those two devices only (without duplicate address detection, so their
# addresses are usable at once).
lab_calico_pod6() {
    local node=$1 pod=$2 hns pns veth ip
    hns=$(lab_ns "$node")
    pns=$(lab_ns "$node$pod")
    veth=cali${node#h}$pod
    ip=$(lab_calico_pod_ip6 "$node" "$pod")
    ip netns exec "$hns" sysctl -qw net.ipv6.conf.all.forwarding=1 "net.ipv6.conf.$veth.accept_dad=0" \
        "net.ipv6.conf.$veth.disable_ipv6=0" >/dev/null &&
        ip netns exec "$pns" sysctl -qw net.ipv6.conf.eth0.accept_dad=0 \
            net.ipv6.conf.eth0.disable_ipv6=0 >/dev/null &&
        ip -n "$pns" addr add "$ip/128" dev eth0 nodad &&
        ip -n "$pns" route add default via fe80::ecee:eeff:feee:eeee dev eth0 &&
        ip -n "$hns" route add "$ip/128" dev "$veth" ||
        lab_die "cannot give pod $node$pod IPv6" || return
}

# lab_vtepd_ipip NODE ROUTES [FLAGS...]: starts vtepd L3 IPIP in the node on LAB_IPIP_DEV with
# address = the first address of the node's block, ROUTES a comma-separated list of CIDR=IP; waits
# for its control socket and device.
lab_vtepd_ipip() {
    local node=$1 routes=$2 hns ip r addr
    shift 2
    hns=$(lab_ns "$node")
    ip=$(cat "$LAB_DIR/$node.ip")
    addr=$(lab_calico_block "$node")
    addr=${addr%/26}/32
    [ -x "$VTEPD_BIN" ] || lab_die "vtepd binary $VTEPD_BIN not found (build it, or set VTEPD_BIN)" || return
    local args=(run --mode l3 --encap ipip --dev "$LAB_IPIP_DEV" --local "$ip" --address "$addr"
        --control "$(lab_sock "$node")")
    for r in ${routes//,/ }; do args+=(--route "$r"); done
    args+=("$@")
    lab_info "$node: vtepd ${args[*]}"
    ip netns exec "$hns" "$VTEPD_BIN" "${args[@]}" </dev/null >"$LAB_DIR/$node.vtepd.log" 2>&1 &
    echo $! >"$LAB_DIR/$node.vtepd.pid"
    echo vtepd >"$LAB_DIR/$node.impl"
    lab_wait_socket "$node" || return
    lab_wait_link "$hns" "$LAB_IPIP_DEV"
}

# lab_calico NNODES NPODS: the Calico IPIP topology: NNODES nodes with NPODS pods each, every node
# running vtepd with a route to every other node's pod block via that node.
lab_calico() {
    local nnodes=$1 npods=$2 i j routes
    lab_say "Calico-style IPIP $LAB_PREFIX: $nnodes nodes on ${LAB_UNDERLAY_NET}.0/24, $npods pods each"
    lab_underlay || return
    for ((i = 1; i <= nnodes; i++)); do
        lab_calico_node "h$i" || return
        for ((j = 1; j <= npods; j++)); do
            lab_calico_pod "h$i" "p$j" || return
            lab_info "h${i}p$j: $(lab_calico_pod_ip "h$i" "p$j")/32, default via 169.254.1.1 (proxy ARP on cali$i"p$j"), mtu $LAB_IPIP_POD_MTU"
        done
    done
    for ((i = 1; i <= nnodes; i++)); do
        routes=
        for ((j = 1; j <= nnodes; j++)); do
            [ "$j" = "$i" ] || routes+="${routes:+,}$(lab_calico_block "h$j")=$(lab_host_ip "h$j")"
        done
        lab_vtepd_ipip "h$i" "$routes" || return
    done
}

# lab_ipip_sink NODE [SECONDS]: holds raw IP-protocol-4 and 41 sockets open in NODE (default 120 s), so
# that its kernel, which has no IPIP or sit handler, does not answer IPIP packets with "protocol
# unreachable" (for a node that plays a remote IPIP peer with scapy).
lab_ipip_sink() {
    ip netns exec "$(lab_ns "$1")" timeout "${2:-120}" "$LAB_PY" -c \
        "import socket,time; s=[socket.socket(socket.AF_INET, socket.SOCK_RAW, p) for p in (4, 41)]; time.sleep(1e9)" \
        "$LAB_DIR/sink" </dev/null >/dev/null 2>&1 &
    echo $! >"$LAB_DIR/$1.sink.pid"
}

# lab_ipip_inject NODE HOST OUTER_SRC INNER_SRC INNER_DST [OPTIONS...]: from NODE's eth0, sends IPIP
# packets (scapy, lab/scapy/ipip_inject.py) to HOST's underlay address and MAC with outer source
# OUTER_SRC around ICMP echo requests INNER_SRC -> INNER_DST. Prints "sent N".
lab_ipip_inject() {
    local node=$1 host=$2 osrc=$3 isrc=$4 idst=$5 mac
    shift 5
    mac=$(ip netns exec "$(lab_ns "$host")" cat /sys/class/net/eth0/address) || return
    ip netns exec "$(lab_ns "$node")" "$LAB_PY" "$LAB_HOME/scapy/ipip_inject.py" tunnel eth0 "$mac" \
        "$osrc" "$(cat "$LAB_DIR/$host.ip")" "$isrc" "$idst" "$@"
}

# lab_ipip_local NODE SRC DST [OPTIONS...]: writes an ICMP echo request SRC -> DST to a raw socket in
# NODE (header included: TTL and source as given), for the kernel to route. Prints "sent N".
lab_ipip_local() {
    local node=$1
    shift
    ip netns exec "$(lab_ns "$node")" "$LAB_PY" "$LAB_HOME/scapy/ipip_inject.py" local "$@"
}

# lab_ipip_fields NAME [FILTER]: tshark's decoding of capture NAME: one line per packet with the
# comma-separated values of ip.src ip.dst ip.proto ip.flags.df ip.dsfield.ecn ip.ttl (outer header
# first, then the inner one), tab-separated.
lab_ipip_fields() {
    tshark -r "$LAB_DIR/$1.pcap" -n ${2:+-Y "$2"} -T fields -E separator=/t \
        -e ip.src -e ip.dst -e ip.proto -e ip.flags.df -e ip.dsfield.ecn -e ip.ttl 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# Lifecycle

# lab_prepare: for topology scripts run by people: needs root; runs scripts/setup.sh (unless
# LAB_SKIP_SETUP=1) and builds vtepd with cargo unless VTEPD_BIN is set.
lab_prepare() {
    [ "$(id -u)" = 0 ] || lab_die "the lab creates network namespaces: run it as root (sudo $0)" || return
    if [ "${LAB_SKIP_SETUP:-0}" != 1 ]; then
        lab_say "installing what the lab needs (scripts/setup.sh)"
        if [ "$QUIET" = 1 ]; then "$LAB_REPO/scripts/setup.sh" >/dev/null; else "$LAB_REPO/scripts/setup.sh"; fi || return
    fi
    if [ -z "$LAB_VTEPD_GIVEN" ] && { [ "$LAB_VTEP" = vtepd ] || [ -n "${LAB_IMPLS:-}" ]; }; then
        local cargo quiet=()
        [ "$QUIET" != 1 ] || quiet=(--quiet)
        cargo=$(command -v cargo || true)
        [ -n "$cargo" ] || [ ! -x "${HOME:-/root}/.cargo/bin/cargo" ] || cargo=${HOME:-/root}/.cargo/bin/cargo
        [ -n "$cargo" ] || lab_die "cargo not found: install Rust (rustup), or set VTEPD_BIN" || return
        lab_say "building vtepd (cargo build --release --bin vtepd)"
        (cd "$LAB_REPO" && "$cargo" build --release --bin vtepd "${quiet[@]}") || return
        VTEPD_BIN=$LAB_REPO/target/release/vtepd
    fi
}

# lab_dump_logs: prints the daemons' logs (used when something failed).
lab_dump_logs() {
    local f
    for f in "$LAB_DIR"/*.vtepd.log; do
        [ -s "$f" ] || continue
        printf -- '--- %s\n' "$(basename "$f")" >&2
        tail -n 40 "$f" >&2
    done
}

# lab_cleanup: stops the processes this lab started (by their recorded PIDs, after checking that each
# still runs our command line) and deletes this lab's namespaces and state directory.
lab_cleanup() {
    [ -d "$LAB_DIR" ] || return 0
    local f pid pids=() deadline ns
    for f in "$LAB_DIR"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        # A recorded PID is ours only if its command line still names our state directory.
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$LAB_DIR/"; then
            kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        fi
    done
    deadline=$((SECONDS + 5))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
        if kill -0 "$pid" 2>/dev/null; then
            printf 'lab: process %s did not stop on SIGTERM; killing it\n' "$pid" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    if [ -f "$LAB_DIR/netns" ]; then
        # Pods first, underlay last: reverse creation order.
        while read -r ns; do
            ip netns del "$ns" 2>/dev/null
        done < <(tac "$LAB_DIR/netns")
    fi
    rm -rf "$LAB_DIR"
}

# lab_on_exit: EXIT trap of the topology scripts: on failure shows the daemons' logs; cleans up unless
# LAB_KEEP=1; keeps the exit status.
lab_on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    set +e # a failing write (a closed pipe) must not cut the cleanup short
    [ "$rc" = 0 ] || lab_dump_logs
    if [ "${LAB_KEEP:-0}" = 1 ]; then
        printf 'lab: kept; look around with `ip netns exec %s-h1p1 ...`, clean up with `LAB_PREFIX=%s %s cleanup`\n' \
            "$LAB_PREFIX" "$LAB_PREFIX" "$LAB_HOME/lib.sh"
    else
        lab_cleanup
    fi
    exit "$rc"
}

# lab_traps: the traps of a topology script: clean up on exit (lab_on_exit), turn INT and TERM into an
# exit, and ignore SIGPIPE, so that output to a pipe whose reader is gone (`lab/demo.sh | head`) fails
# a write instead of killing the script before its cleanup.
lab_traps() {
    trap lab_on_exit EXIT
    trap 'exit 130' INT TERM
    trap '' PIPE
}

# lab_parse_args ARGS...: the options every topology script takes.
lab_parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
        -q | --quiet) QUIET=1 ;;
        --kernel) LAB_VTEP=kernel LAB_IMPLS= ;;
        --keep) LAB_KEEP=1 ;;
        -h | --help)
            sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *)
            printf '%s: unknown option %s (try --help)\n' "$0" "$1" >&2
            exit 2
            ;;
        esac
        shift
    done
}

# Run as a command: `lab/lib.sh COMMAND ARGS...`.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    [ $# -gt 0 ] || {
        sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
        exit 2
    }
    # Each command runs in its own process: without a shared LAB_PREFIX they could not find each other's lab.
    [ -n "$LAB_PREFIX_GIVEN" ] || {
        echo "lab/lib.sh: set LAB_PREFIX (a short name for this lab) when running commands" >&2
        exit 2
    }
    cmd=lab_${1//-/_}
    shift
    declare -F "$cmd" >/dev/null || {
        echo "lab/lib.sh: no command ${cmd#lab_}" >&2
        exit 2
    }
    "$cmd" "$@"
fi
