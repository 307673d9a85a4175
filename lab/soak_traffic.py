#!/usr/bin/python3
"""Underlay traffic of scripts/soak.sh: learning churn and malformed bursts, with plain sockets.

usage:
  soak_traffic.py learn --dst IP --src-a IP --src-b IP [options]
      Until --seconds pass: VXLAN datagrams to DST (UDP 4789) from SRC_A, each with a new random
      source MAC (--rate new MACs a second, so a daemon with a short --ageing and a --max-fdb cap
      keeps learning, refusing and ageing out), and --flap MACs that alternate between SRC_A and
      SRC_B every --flap-period seconds (MAC moves, so --mac-move dampening freezes them).
      Datagrams arriving on UDP 4789 (the daemons' floods to this namespace) and IPIP packets are
      read and discarded, so that no ICMP unreachable goes back. At the end prints one JSON object:
      {"learn_frames", "new_macs", "flap_frames", "drained"}.
  soak_traffic.py fill --dst IP --src-a IP --count N [--vni N]
      N datagrams from SRC_A, each with a new random source MAC, as fast as they go (the soak's
      end-of-run check that the learning cap is whole again). Prints {"new_macs": N}.
  soak_traffic.py malformed --vxlan SRC=DST[:VNI][,...] --ipip SRC=DST[,...] [--vni N]
      One burst of bad input: for every VXLAN pair, datagrams from SRC to DST:4789 that are
      truncated (payloads of 0..7 bytes), have the I flag clear, an unknown VNI, a runt inner frame
      (0..13 bytes), a bad UDP checksum (raw socket), random inner frames behind a good header, and
      random bytes; for every IPIP pair, IP-protocol-4 packets from SRC to DST whose inner packet
      is truncated (0..19 bytes), has version 6, IHL below 5, a total length past its end, a bad
      header checksum, is a fragment, has TTL 0, has DST (the target's own underlay address) as
      source, or is random bytes. Prints one JSON object: datagrams sent per kind.

Frames carry ethertype 0x88b5 (local experimental: nothing answers them) to a unicast MAC no
interface has. Needs root (raw sockets) inside the namespace holding the source addresses.
"""

import argparse
import json
import os
import random
import select
import socket
import struct
import sys
import time

VXLAN_PORT = 4789
ETHERTYPE = 0x88B5
# Inner destination of every frame: locally administered unicast, owned by no interface.
INNER_DST = bytes.fromhex("025a5a000001")
# Learned MACs: 02:1e:xx:xx:xx:xx (random); flapping MACs: 02:f1:00:00:00:NN.
LEARN_PREFIX = bytes.fromhex("021e")
FLAP_PREFIX = bytes.fromhex("02f1000000")


def vxlan_header(vni: int, flags: int = 0x08) -> bytes:
    return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"


def frame(src: bytes, payload: bytes = b"vtepd soak") -> bytes:
    return (INNER_DST + src + struct.pack("!H", ETHERTYPE) + payload).ljust(60, b"\0")


def random_mac(rng: random.Random) -> bytes:
    return LEARN_PREFIX + rng.getrandbits(32).to_bytes(4, "big")


def udp_from(src: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    return s


def send(s: socket.socket, payload: bytes, dst: str) -> bool:
    """Sends one datagram; a full buffer or a transient error loses it (returns False)."""
    try:
        s.sendto(payload, (dst, VXLAN_PORT))
        return True
    except OSError:
        return False


def learn(a: argparse.Namespace) -> int:
    rng = random.Random()
    sa, sb = udp_from(a.src_a), udp_from(a.src_b)
    drain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    drain.bind(("0.0.0.0", VXLAN_PORT))
    drain.setblocking(False)
    # IPIP arriving here (a reply the malformed input provoked, routed to x by ipa) is read too,
    # so that this kernel, which has no IPIP handler, does not answer "protocol unreachable".
    sink = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
    sink.setblocking(False)
    flaps = [FLAP_PREFIX + bytes([i]) for i in range(a.flap)]
    hdr = vxlan_header(a.vni)
    out = {"learn_frames": 0, "new_macs": 0, "flap_frames": 0, "drained": 0}
    start = time.monotonic()
    end = start + a.seconds
    tick = 0.02  # 50 rounds a second
    next_round = start
    flap_side = 0
    next_flap = start
    while True:
        now = time.monotonic()
        if now >= end:
            break
        # New MACs due this round (a whole number a round, the remainder carried).
        due = int((now - start) * a.rate) - out["new_macs"]
        for _ in range(max(0, min(due, 1000))):
            if send(sa, hdr + frame(random_mac(rng)), a.dst):
                out["learn_frames"] += 1
            out["new_macs"] += 1
        if now >= next_flap:
            side = sa if flap_side == 0 else sb
            for m in flaps:
                if send(side, hdr + frame(m), a.dst):
                    out["flap_frames"] += 1
            flap_side ^= 1
            next_flap += a.flap_period
        # Read whatever the daemons flooded to us.
        for sock in (drain, sink):
            while True:
                try:
                    sock.recv(65535)
                    out["drained"] += 1
                except BlockingIOError:
                    break
        next_round += tick
        delay = next_round - time.monotonic()
        if delay > 0:
            select.select([drain, sink], [], [], delay)
        else:
            next_round = time.monotonic()
    print(json.dumps(out), flush=True)
    return 0


def fill(a: argparse.Namespace) -> int:
    rng = random.Random()
    s = udp_from(a.src_a)
    hdr = vxlan_header(a.vni)
    macs = set()
    while len(macs) < a.count:
        macs.add(random_mac(rng))
    for m in macs:
        # A full socket buffer must not lose one: this check counts what was learned.
        while not send(s, hdr + frame(m), a.dst):
            time.sleep(0.001)
        time.sleep(0.0005)
    print(json.dumps({"new_macs": len(macs)}), flush=True)
    return 0


def pairs(spec: str, vni: int) -> list[tuple[str, str, int]]:
    """SRC=DST[:VNI],... as (src, dst, vni) triples."""
    out = []
    for item in filter(None, spec.split(",")):
        src, _, dst = item.partition("=")
        dst, _, v = dst.partition(":")
        out.append((src, dst, int(v) if v else vni))
    return out


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_bad_checksum(src: str, dst: str, payload: bytes) -> bytes:
    """A UDP header + payload (for a raw IPPROTO_UDP socket) whose checksum is wrong and not 0."""
    length = 8 + len(payload)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, length)
    hdr = struct.pack("!HHHH", 49152, VXLAN_PORT, length, 0)
    good = checksum(pseudo + hdr + payload) or 0xFFFF
    bad = good ^ 0x5A5A or 0x1234
    return struct.pack("!HHHH", 49152, VXLAN_PORT, length, bad) + payload


def ipv4(src: str, dst: str, payload: bytes, ttl: int = 64, flags_frag: int = 0x4000,
         version: int = 4, ihl: int = 5, total: int | None = None, good_csum: bool = True) -> bytes:
    total = 20 + len(payload) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total & 0xFFFF, random.getrandbits(16),
                      flags_frag, ttl, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
    csum = checksum(hdr)
    if not good_csum:
        csum ^= 0x0F0F
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def malformed(a: argparse.Namespace) -> int:
    rng = random.Random()
    sent: dict[str, int] = {}

    def count(kind: str, ok: bool) -> None:
        if ok:
            sent[kind] = sent.get(kind, 0) + 1

    inner = frame(bytes.fromhex("02bad0000001"))
    for src, dst, vni in pairs(a.vxlan, a.vni):
        good = vxlan_header(vni)
        s = udp_from(src)
        for n in range(8):
            count("vxlan_truncated", send(s, good[:n], dst))
        for flags in (0x00, 0xF7):
            count("vxlan_iflag", send(s, vxlan_header(vni, flags) + inner, dst))
        count("vxlan_unknown_vni", send(s, vxlan_header(vni + 1000) + inner, dst))
        for n in range(14):
            count("vxlan_runt", send(s, good + inner[:n], dst))
        for _ in range(16):
            # A good header, then random bytes: random MACs (multicast sources among them),
            # random ethertypes, IPv4 and ARP with garbage behind them.
            body = bytearray(rng.randbytes(rng.randrange(14, 1400)))
            if rng.random() < 0.5:
                body[12:14] = rng.choice([b"\x08\x00", b"\x08\x06", b"\x86\xdd"])
            count("vxlan_random_inner", send(s, good + bytes(body), dst))
        for _ in range(16):
            count("vxlan_random", send(s, rng.randbytes(rng.randrange(0, 1400)), dst))
        s.close()
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        raw.bind((src, 0))
        for _ in range(4):
            try:
                raw.sendto(udp_bad_checksum(src, dst, good + inner), (dst, 0))
                count("vxlan_bad_udp_checksum", True)
            except OSError:
                pass
        raw.close()

    for src, dst, _ in pairs(a.ipip, 0):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
        s.bind((src, 0))

        def ipip(kind: str, packet: bytes) -> None:
            try:
                s.sendto(packet, (dst, 0))
                count(kind, True)
            except OSError:
                pass

        isrc, idst = "10.244.3.65", "10.244.1.64"
        payload = struct.pack("!HHHH", 40000, 9, 8 + 16, 0) + b"vtepd soak ipip!"
        whole = ipv4(isrc, idst, payload)
        for n in range(20):
            ipip("ipip_truncated", whole[:n])
        ipip("ipip_version", ipv4(isrc, idst, payload, version=6))
        for ihl in (0, 4):
            ipip("ipip_ihl", ipv4(isrc, idst, payload, ihl=ihl))
        ipip("ipip_total_length", ipv4(isrc, idst, payload, total=len(whole) + 100))
        ipip("ipip_total_length", ipv4(isrc, idst, payload, total=12))
        ipip("ipip_checksum", ipv4(isrc, idst, payload, good_csum=False))
        ipip("ipip_fragment", ipv4(isrc, idst, payload, flags_frag=0x2000))
        ipip("ipip_fragment", ipv4(isrc, idst, payload, flags_frag=0x0010))
        ipip("ipip_ttl_zero", ipv4(isrc, idst, payload, ttl=0))
        ipip("ipip_own_source", ipv4(dst, idst, payload))
        for _ in range(16):
            ipip("ipip_random", rng.randbytes(rng.randrange(0, 1400)))
        for _ in range(8):
            # A good-looking header (version 4, IHL 5) over random bytes.
            body = bytearray(rng.randbytes(rng.randrange(20, 1400)))
            body[0] = 0x45
            ipip("ipip_random_header", bytes(body))
        s.close()
    print(json.dumps(sent, sort_keys=True), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("learn")
    p.add_argument("--dst", required=True)
    p.add_argument("--src-a", required=True)
    p.add_argument("--src-b", required=True)
    p.add_argument("--vni", type=int, default=42)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--flap", type=int, default=16)
    p.add_argument("--flap-period", type=float, default=0.5)
    p.add_argument("--seconds", type=float, required=True)
    p = sub.add_parser("fill")
    p.add_argument("--dst", required=True)
    p.add_argument("--src-a", required=True)
    p.add_argument("--vni", type=int, default=42)
    p.add_argument("--count", type=int, required=True)
    p = sub.add_parser("malformed")
    p.add_argument("--vxlan", default="")
    p.add_argument("--ipip", default="")
    p.add_argument("--vni", type=int, default=42)
    a = ap.parse_args()
    if os.environ.get("SOAK_PY_SEED"):
        random.seed(int(os.environ["SOAK_PY_SEED"]))
    return {"learn": learn, "fill": fill, "malformed": malformed}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
