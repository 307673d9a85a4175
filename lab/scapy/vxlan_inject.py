#!/usr/bin/python3
"""Sends crafted VXLAN datagrams from the underlay into a VTEP (the lab's bad-input source).

usage: vxlan_inject.py IFACE DST_MAC SRC_IP DST_IP KIND [--count N] [--vni N] [--inner-dst MAC]
                       [--sport N] [--dport N]

KIND is one of:
  good       a well-formed datagram: I flag set, VNI --vni, a 60-byte inner frame
  truncated  UDP payloads shorter than a VXLAN header: one of each length 0..7
  iflag      the I flag clear (flags 0x00, then 0xf7: every other bit set), VNI --vni
  vni        a well-formed datagram for VNI --vni + 1000 (configure the daemon with --vni)
  runt       a VXLAN header followed by an inner frame shorter than an Ethernet header: lengths 0..13
  badcsum    a well-formed datagram whose UDP checksum is wrong (and not zero)

Frames are built at layer 2 (DST_MAC is the VTEP's underlay MAC), so SRC_IP may be any address, a
peer's or a stranger's. Each datagram is sent COUNT times (default 1); the script prints
"sent N" with the number of datagrams sent. They go to UDP port --dport (default 4789). Needs Debian's /usr/bin/python3 (python3-scapy).
"""

import argparse
import sys

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.sendrecv import sendp

VXLAN_PORT = 4789
# The source MAC of the inner frames we inject (locally administered, not used by any lab pod).
INNER_SRC = "02:99:00:00:00:01"


def inner_frame(dst: str) -> bytes:
    frame = Ether(dst=dst, src=INNER_SRC, type=0x88B5) / Raw(b"vtepd-lab bad-input test")
    return bytes(frame).ljust(60, b"\0")


def vxlan_header(flags: int, vni: int) -> bytes:
    return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"


def payloads(kind: str, vni: int, inner_dst: str) -> list[bytes]:
    """UDP payloads for KIND."""
    good = vxlan_header(0x08, vni) + inner_frame(inner_dst)
    if kind in ("good", "badcsum"):
        return [good]
    if kind == "truncated":
        return [good[:n] for n in range(8)]
    if kind == "iflag":
        return [vxlan_header(0x00, vni) + inner_frame(inner_dst), vxlan_header(0xF7, vni) + inner_frame(inner_dst)]
    if kind == "vni":
        return [vxlan_header(0x08, vni + 1000) + inner_frame(inner_dst)]
    if kind == "runt":
        return [vxlan_header(0x08, vni) + inner_frame(inner_dst)[:n] for n in range(14)]
    raise ValueError(kind)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("iface")
    ap.add_argument("dst_mac")
    ap.add_argument("src_ip")
    ap.add_argument("dst_ip")
    ap.add_argument("kind", choices=["good", "truncated", "iflag", "vni", "runt", "badcsum"])
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--vni", type=int, default=42)
    ap.add_argument("--inner-dst", default="ff:ff:ff:ff:ff:ff")
    ap.add_argument("--sport", type=int, default=49152)
    ap.add_argument("--dport", type=int, default=VXLAN_PORT)
    args = ap.parse_args()

    frames = []
    for payload in payloads(args.kind, args.vni, args.inner_dst):
        pkt = (
            Ether(dst=args.dst_mac)
            / IP(src=args.src_ip, dst=args.dst_ip, flags="DF")
            / UDP(sport=args.sport, dport=args.dport)
            / Raw(payload)
        )
        if args.kind == "badcsum":
            good = Ether(bytes(pkt))[UDP].chksum  # scapy fills in the right checksum on build
            bad = good ^ 0x00FF
            if bad in (0, 0xFFFF):  # 0 means "no checksum", 0xffff is how a computed 0 is sent
                bad = good ^ 0x0F0F
            pkt[UDP].chksum = bad
        frames.append(pkt)
    frames = frames * args.count
    sendp(frames, iface=args.iface, verbose=False)
    print(f"sent {len(frames)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
