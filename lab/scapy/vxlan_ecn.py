#!/usr/bin/python3
"""ECN through a VXLAN receiver: crafted datagrams with chosen outer and inner ECN bits, and what
came out on the receiver's device.

usage: vxlan_ecn.py send IFACE DST_MAC SRC_IP DST_IP INNER_DST_MAC CASE...
       vxlan_ecn.py check PCAP

send: for each CASE, written ID:OUTER:INNER (ECN codepoints 0-3: Not-ECT, ECT(1), ECT(0), CE),
  one VXLAN datagram (VNI 42, DF, UDP checksum filled in) from SRC_IP to DST_IP:4789 whose inner
  frame (to INNER_DST_MAC) is an IPv4/UDP packet 10.9.0.2:(5000+ID) -> 10.9.0.1:9 with the
  inner ECN bits, carrying "ecn-case-ID"; the outer header carries the outer ECN bits. Sent in
  the order given. Prints "sent N".
check: the IPv4/UDP packets to port 9 carrying "ecn-case-ID" in PCAP (a capture on the
  receiver's device: Ethernet frames from a TAP, IP packets from a TUN); prints JSON
  {ID: [[ecn, ip_checksum_ok], ...]} in capture order.
"""

import json
import sys

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.sendrecv import sendp
from scapy.utils import RawPcapReader, checksum

INNER_SRC_MAC = "02:99:00:00:00:02"
MARK = b"ecn-case-"


def send(iface, dst_mac, src_ip, dst_ip, inner_dst, cases):
    frames = []
    for case in cases:
        ident, outer, inner = (int(x) for x in case.split(":"))
        frame = (
            Ether(dst=dst_mac)
            / IP(src=src_ip, dst=dst_ip, flags="DF", tos=outer & 3)
            / UDP(sport=49152 + ident, dport=4789)
            / VXLAN(flags=0x08, vni=42)
            / Ether(src=INNER_SRC_MAC, dst=inner_dst)
            / IP(src="10.9.0.2", dst="10.9.0.1", tos=inner & 3)
            / UDP(sport=5000 + ident, dport=9)
            / Raw(MARK + str(ident).encode())
        )
        frames.append(frame)
    sendp(frames, iface=iface, verbose=False)
    print(f"sent {len(frames)}")


def check(path):
    seen = {}
    reader = RawPcapReader(path)
    # DLT_EN10MB (a TAP) or DLT_RAW (a TUN: 101 in a pcap file, 12 in some libpcaps).
    ethernet = reader.linktype == 1
    for data, _meta in reader:
        if ethernet:
            if len(data) < 42 or data[12:14] != b"\x08\x00":
                continue
            ip = data[14:]
        else:
            ip = data
        if len(ip) < 28 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or int.from_bytes(ip[ihl + 2:ihl + 4], "big") != 9:
            continue
        payload = ip[ihl + 8:]
        if not payload.startswith(MARK):
            continue
        ident = payload[len(MARK):].decode(errors="replace")
        seen.setdefault(ident, []).append([ip[1] & 3, checksum(ip[:ihl]) == 0])
    print(json.dumps(seen))


def main():
    a = sys.argv[1:]
    if len(a) >= 7 and a[0] == "send":
        send(a[1], a[2], a[3], a[4], a[5], a[6:])
    elif len(a) == 2 and a[0] == "check":
        check(a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
