#!/usr/bin/env bash
# vtepd store-driven fabric: an etcd server on the underlay bridge (192.0.2.254, or 2001:db8::254 with
# --ipv6) and hosts running
# vtepd with only `--store` (no --peer): they find each other through etcd and their pods ping. Then a
# fourth host joins and is reached without touching the others, host h2 dies (SIGKILL) and drops out
# of the others' flood lists when its lease expires, and h4 leaves cleanly (its lease revoked). Each
# step prints the flood lists (`vtepd peers show`) so you can watch hosts come and go.
#
# usage: sudo lab/store-fabric.sh [--ipv6] [--quiet] [--keep]
#   --ipv6    the underlay and the store over IPv6 (hosts 2001:db8::N): VXLAN over IPv6 between them
#   --quiet   print nothing but failures (for tests); the exit status tells the result
#   --keep    leave the lab up at the end to look around (prints how to remove it)
# STORE_TTL (default 3) is the hosts' lease TTL in seconds. Runs scripts/setup.sh and builds vtepd
# first (set VTEPD_BIN to use a built binary, LAB_SKIP_SETUP=1 to skip setup).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
args=()
for a in "$@"; do
    if [ "$a" = --ipv6 ]; then LAB_UNDERLAY6=1; else args+=("$a"); fi
done
lab_parse_args "${args[@]}"
lab_prepare
lab_traps

ttl=${STORE_TTL:-3}
store=(--store "etcd=$(lab_etcd_url)" --store-prefix /vtepd/lab --store-ttl "$ttl" --threads 1)

# store_host N: host hN with one pod, its vtepd given only the store.
store_host() {
    lab_host "h$1"
    lab_cni "h$1"
    lab_pod "h$1" p1
    lab_vtepd "h$1" "$LAB_VNI" "" "${store[@]}"
}

# flood_lists: every running host's flood list, one line each.
flood_lists() {
    local h
    for h in $(lab_hosts); do
        kill -0 "$(cat "$LAB_DIR/$h.vtepd.pid")" 2>/dev/null || continue
        lab_info "$h floods to: $(lab_client "$h" peers show --json | jq -r '[.[0].peers[]] | join(" ")')"
    done
}

# wait_flood HOST N: waits (bounded by the TTL and LAB_TIMEOUT) until HOST floods to N peers.
wait_flood() {
    local deadline=$((SECONDS + ttl + LAB_TIMEOUT))
    until [ "$(lab_client "$1" peers show --json | jq '.[0].peers | length')" = "$2" ]; do
        [ "$SECONDS" -lt "$deadline" ] || lab_die "$1 does not flood to $2 peers" || return
        sleep 0.2
    done
}

lab_say "underlay and etcd"
lab_underlay
lab_etcd
lab_say "three hosts given only the store"
for n in 1 2 3; do store_host "$n"; done
for n in 1 2 3; do wait_flood "h$n" 2; done
flood_lists
lab_ping_all 56

lab_say "h4 joins"
store_host 4
for n in 1 2 3 4; do wait_flood "h$n" 3; done
flood_lists
lab_ping_all 56

lab_say "h2 dies (SIGKILL): it drops out when its lease (${ttl}s) expires"
kill -KILL "$(cat "$LAB_DIR/h2.vtepd.pid")"
started=$SECONDS
for n in 1 3 4; do wait_flood "h$n" 2; done
lab_info "gone from the flood lists after $((SECONDS - started)) s"
flood_lists

lab_say "h4 leaves cleanly (SIGTERM revokes its lease)"
kill -TERM "$(cat "$LAB_DIR/h4.vtepd.pid")"
for n in 1 3; do wait_flood "h$n" 1; done
flood_lists
lab_wait_ping h1p1 "$(lab_pod_ip h3 p1)"
lab_info "h1's store client: $(lab_client h1 stats --json | jq -c .store)"
lab_say "the fabric followed the store; cleaning up"
