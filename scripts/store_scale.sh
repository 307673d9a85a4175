#!/usr/bin/env bash
# Store scale harness: how a vtepd daemon copes with a large store-driven fabric. One host runs vtepd
# with --store and NETWORKS L2 networks; HOSTS simulated VTEPs per network are registered in etcd
# (written through etcd's JSON gateway, BATCH per transaction: 1 is every host writing its own), and
# the harness measures how long the daemon takes to have every one in its flood lists (convergence),
# its memory (RSS, peak RSS) and CPU time while doing it, and the cost of one broadcast replicated
# to every peer of a network (BROADCASTS broadcast pings from the TAP: vtepd's CPU time per
# broadcast, copies sent).
#
# usage: sudo scripts/store_scale.sh   (env: HOSTS=500 NETWORKS=2 BATCH=100 BROADCASTS=200
#                                       STORE_TTL=30)
# The simulated VTEPs are addresses of 198.51.100.0/24 and 203.0.113.0/24 (so at most 504 per
# network), routed out of a veth pair in the host whose other end drops what it gets. Needs root;
# runs in namespaces of its own (lab/lib.sh), removed at exit. Set VTEPD_BIN to use a built binary
# (else it builds target/release/vtepd), LAB_SKIP_SETUP=1 to skip scripts/setup.sh.
set -euo pipefail
. "$(dirname "$0")/../lab/lib.sh"
lab_parse_args "$@"
lab_prepare
lab_traps

hosts=${HOSTS:-500}
networks=${NETWORKS:-2}
broadcasts=${BROADCASTS:-200}
batch=${BATCH:-100}
[ "$batch" -ge 1 ] && [ "$batch" -le 128 ] || lab_die "BATCH must be 1..128 (etcd's transaction limit)"
ttl=${STORE_TTL:-30}
[ "$hosts" -ge 1 ] && [ "$hosts" -le 504 ] || lab_die "HOSTS must be 1..504 (two /24s of documentation addresses)"
[ "$networks" -ge 1 ] && [ "$networks" -le 16 ] || lab_die "NETWORKS must be 1..16"
total=$((hosts * networks))
prefix=/vtepd/scale

lab_say "underlay, etcd, and host h1 running vtepd with $networks network(s)"
lab_underlay
lab_etcd
lab_host h1
hns=$(lab_ns h1)
# The simulated VTEPs: routed out of a veth pair to its other end, a pinned neighbour, which
# drops what it gets (not its address, no forwarding).
ip -n "$hns" link add sink0 type veth peer name sink1
ip -n "$hns" link set sink0 up
ip -n "$hns" link set sink1 up
ip -n "$hns" addr add 203.0.113.253/30 dev sink0
ip -n "$hns" neigh replace 203.0.113.254 dev sink0 lladdr "$(ip -n "$hns" -br link show sink1 | awk '{ print $3 }')" nud permanent
ip -n "$hns" route add 198.51.100.0/24 via 203.0.113.254 dev sink0
ip -n "$hns" route add 203.0.113.0/24 via 203.0.113.254 dev sink0
conf=$LAB_DIR/h1.toml
{
    printf 'local = "%s"\nstore = "etcd=%s"\nstore_prefix = "%s"\nstore_ttl = %s\n' \
        "$(lab_host_ip h1)" "$(lab_etcd_url)" "$prefix" "$ttl"
    for ((v = 0; v < networks; v++)); do
        printf '[[network]]\ndev = "vx%s"\nvni = %s\naddress = "10.%s.0.1/16"\n' $((42 + v)) $((42 + v)) $((42 + v))
    done
} >"$conf"
sock=$(lab_sock h1)
ip netns exec "$hns" "$VTEPD_BIN" run --config "$conf" --control "$sock" </dev/null >"$LAB_DIR/h1.vtepd.log" 2>&1 &
echo $! >"$LAB_DIR/h1.vtepd.pid"
pid=$(cat "$LAB_DIR/h1.vtepd.pid")
lab_wait_socket h1

# The registrations, as transactions of BATCH puts for etcd's JSON gateway.
"$LAB_PY" - "$LAB_DIR/txn" "$prefix" "$hosts" "$networks" "$batch" <<'EOF'
import base64, json, os, sys
out, prefix, hosts, networks, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
os.makedirs(out)
b = lambda s: base64.b64encode(s.encode()).decode()
addrs = [f"198.51.100.{i}" for i in range(1, 255)] + [f"203.0.113.{i}" for i in range(1, 251)]
puts = []
for v in range(networks):
    vni = 42 + v
    for a in addrs[:hosts]:
        value = json.dumps({"version": 1, "underlay": a, "vni": vni, "port": 4789})
        puts.append({"requestPut": {"key": b(f"{prefix}/members/{vni}/{a}"), "value": b(value)}})
for i in range(0, len(puts), batch):
    with open(f"{out}/{i // batch:05d}.json", "w") as f:
        json.dump({"success": puts[i:i + batch]}, f)
EOF

# cpu_ticks: vtepd's user + system CPU time so far, in clock ticks; rss KEY: its VmRSS or VmHWM in KiB.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
rss() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }
flooded() { lab_client h1 stats --json | jq '[.networks[].peers] | add'; }
hz=$(getconf CLK_TCK)
# wait_converged WHEN: waits (at most 120 s) until every registration is in vtepd's flood lists.
wait_converged() {
    local deadline=$((SECONDS + 120))
    until [ "$(flooded 2>/dev/null)" = "$total" ]; do
        [ "$SECONDS" -lt "$deadline" ] || lab_die "not converged within 120 s $1: $(flooded 2>/dev/null) of $total"
        sleep 0.05
    done
}

rss0=$(rss VmRSS)
lab_say "writing $total registrations ($networks network(s) x $hosts hosts, $batch per transaction)"
cpu0=$(cpu_ticks)
t0=$(date +%s.%N)
for f in "$LAB_DIR"/txn/*.json; do
    ip netns exec "$(lab_ns ul)" curl -sf -m 10 -X POST "$(lab_etcd_url)/v3/kv/txn" -d @"$f" >/dev/null ||
        lab_die "etcd refused $f"
done
t_written=$(date +%s.%N)
wait_converged "from the first write"
t1=$(date +%s.%N)
cpu1=$(cpu_ticks)
rss1=$(rss VmRSS)
hwm=$(rss VmHWM)

lab_say "one broadcast to the $hosts peers of VNI 42, $broadcasts times"
before=$(lab_client h1 stats --json)
cpu2=$(cpu_ticks)
ip netns exec "$hns" ping -b -q -c "$broadcasts" -i 0.01 -W 0.01 10.42.255.255 >/dev/null 2>&1 || true
sleep 1
cpu3=$(cpu_ticks)
after=$(lab_client h1 stats --json)
# The send system calls of the same broadcasts again, counted by strace -c (when there is one;
# its tracing slows vtepd, so its CPU time above is measured without it).
sends=-
if command -v strace >/dev/null; then
    strace -f -c -e trace=sendmmsg,sendmsg,sendto -o "$LAB_DIR/strace.txt" -p "$pid" 2>/dev/null &
    spid=$!
    deadline=$((SECONDS + 10))
    until [ "$(awk '$1 == "TracerPid:" { print $2 }' "/proc/$pid/status")" != 0 ]; do
        [ "$SECONDS" -lt "$deadline" ] || lab_die "strace did not attach"
        sleep 0.05
    done
    ip netns exec "$hns" ping -b -q -c "$broadcasts" -i 0.01 -W 0.01 10.42.255.255 >/dev/null 2>&1 || true
    sleep 1
    kill -INT "$spid"
    wait "$spid" || true
    sends=$(awk '$NF == "sendmmsg" { print $4 }' "$LAB_DIR/strace.txt")
fi
copies=$(($(jq .flood_copies <<<"$after") - $(jq .flood_copies <<<"$before")))
sent=$(($(jq .tx_tunnel <<<"$after") - $(jq .tx_tunnel <<<"$before")))
drops=$(($(jq .drops_total <<<"$after") - $(jq .drops_total <<<"$before")))

lab_say "vtepd restarted against the $total registrations (a cold start)"
kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
rm -f "$sock"
t2=$(date +%s.%N)
ip netns exec "$hns" "$VTEPD_BIN" run --config "$conf" --control "$sock" </dev/null >>"$LAB_DIR/h1.vtepd.log" 2>&1 &
echo $! >"$LAB_DIR/h1.vtepd.pid"
pid=$(cat "$LAB_DIR/h1.vtepd.pid")
lab_wait_socket h1
wait_converged "after a restart"
t3=$(date +%s.%N)
cold_cpu=$(cpu_ticks)
cold_hwm=$(rss VmHWM)

awk -v t0="$t0" -v tw="$t_written" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" -v c2="$cpu2" -v c3="$cpu3" \
    -v hz="$hz" -v r0="$rss0" -v r1="$rss1" -v hwm="$hwm" -v total="$total" -v b="$broadcasts" \
    -v copies="$copies" -v sent="$sent" -v drops="$drops" -v hosts="$hosts" \
    -v t2="$t2" -v t3="$t3" -v cc="$cold_cpu" -v ch="$cold_hwm" -v sends="$sends" 'BEGIN {
    printf "registrations        %d\n", total
    printf "converged after      %.2f s from the first write (%.2f s after the last)\n", t1 - t0, t1 - tw
    printf "vtepd CPU            %.2f s while converging\n", (c1 - c0) / hz
    printf "vtepd RSS            %.1f MiB before, %.1f MiB after (peak %.1f MiB)\n", r0 / 1024, r1 / 1024, hwm / 1024
    printf "broadcasts           %d to %d peers: %d flood copies, %d sent, %d dropped\n", b, hosts, copies, sent, drops
    printf "per broadcast        %.2f ms of vtepd CPU (%.2f us per copy)\n", (c3 - c2) / hz * 1000 / b, (c3 - c2) / hz * 1e6 / (copies > 0 ? copies : 1)
    if (sends != "-" && sends != "")
        printf "sendmmsg calls       %.1f per broadcast (strace -c over %d more broadcasts; %d peers / 64 a call = %d)\n", sends / b, b, hosts, int((hosts + 63) / 64)
    printf "cold start           all %d in the flood lists %.2f s after vtepd started (CPU %.2f s, peak RSS %.1f MiB)\n", total, t3 - t2, cc / hz, ch / 1024
}'
