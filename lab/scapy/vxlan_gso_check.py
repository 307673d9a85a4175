#!/usr/bin/python3
"""Checks the VXLAN datagrams one VTEP sent, as two tcpdump captures saw them; prints JSON.

usage: vxlan_gso_check.py wire PCAP SRC_IP --vni N --mtu M
       vxlan_gso_check.py whole PCAP SRC_IP --vni N --mtu M

Only IPv4/UDP datagrams from SRC_IP to port 4789 count; checksums are recomputed with scapy.

wire: a capture where datagrams are as a wire carries them (segmented and checksummed in
  software before they reached the capture). Per datagram: IP length <= MTU, DF set, VXLAN flags
  0x08 with the reserved bits zero and VNI N, UDP checksum right (or zero: none), and when the
  inner frame is IPv4 its header checksum right, and when it is TCP its checksum right. Also
  counts the datagrams that continue a run: same UDP source port, IP ID one more and the same
  length as the datagram just before it (what the kernel's UDP GSO segmentation produces).
  Prints {datagrams, max_len, over_mtu, no_df, bad_vxlan, bad_udp_csum, zero_udp_csum,
  inner_ipv4, bad_inner_ip_csum, inner_tcp, bad_inner_tcp_csum, run_continuations}.

whole: a capture where one UDP GSO send (UDP_SEGMENT) shows as one datagram longer than the MTU
  (on the sender's own underlay link with offloads on), or one GRO merge does (on a receiving
  link with GRO on). Each such super-datagram is cut
  where its segments must be (each segment: VXLAN header + inner Ethernet frame whose IPv4
  total length gives its size): every segment must carry the right VXLAN header, all but the
  last must have the same size, none may make a datagram above the MTU, and the segments must
  fill the payload exactly. Prints {datagrams, single, gso_sends, gso_segments, bad_split,
  gso_size_max, bad_gso_vxlan}.
"""

import argparse
import json
import struct
import sys

from scapy.utils import RawPcapReader, checksum

VXLAN_PORT = 4789
ETH_LEN = 14
IP_LEN = 20
UDP_LEN = 8
VXLAN_LEN = 8


def datagrams(path, src):
    """Yields (ip_header, udp_header_and_payload) of the VXLAN datagrams from src."""
    want = bytes(int(x) for x in src.split("."))
    for data, _meta in RawPcapReader(path):
        if len(data) < ETH_LEN + IP_LEN + UDP_LEN or data[12:14] != b"\x08\x00":
            continue
        ip = data[ETH_LEN:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[0] >> 4 != 4 or ip[9] != 17 or ip[12:16] != want or len(ip) < ihl + UDP_LEN:
            continue
        tot = struct.unpack("!H", ip[2:4])[0]
        udp = ip[ihl:tot]
        if struct.unpack("!H", udp[2:4])[0] != VXLAN_PORT:
            continue
        yield ip[:ihl], udp


def vxlan_ok(hdr, vni):
    return len(hdr) >= VXLAN_LEN and hdr[0] == 0x08 and hdr[1:4] == b"\0\0\0" and \
        hdr[4:7] == vni.to_bytes(3, "big") and hdr[7] == 0


def l4_sum_ok(src, dst, proto, seg):
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(seg))
    return checksum(pseudo + seg) == 0


def wire(args):
    r = dict(datagrams=0, max_len=0, over_mtu=0, no_df=0, bad_vxlan=0, bad_udp_csum=0,
             zero_udp_csum=0, inner_ipv4=0, bad_inner_ip_csum=0, inner_tcp=0,
             bad_inner_tcp_csum=0, run_continuations=0)
    prev = None
    for iph, udp in datagrams(args.pcap, args.src):
        r["datagrams"] += 1
        length = len(iph) + len(udp)
        r["max_len"] = max(r["max_len"], length)
        r["over_mtu"] += length > args.mtu
        r["no_df"] += not (iph[6] & 0x40)
        sport = struct.unpack("!H", udp[0:2])[0]
        ipid = struct.unpack("!H", iph[4:6])[0]
        if prev and prev == (sport, (ipid - 1) & 0xFFFF, length):
            r["run_continuations"] += 1
        prev = (sport, ipid, length)
        if udp[6:8] == b"\0\0":
            r["zero_udp_csum"] += 1
        elif not l4_sum_ok(iph[12:16], iph[16:20], 17, udp):
            r["bad_udp_csum"] += 1
        vx = udp[UDP_LEN:]
        if not vxlan_ok(vx, args.vni):
            r["bad_vxlan"] += 1
            continue
        frame = vx[VXLAN_LEN:]
        if len(frame) < ETH_LEN + IP_LEN or frame[12:14] != b"\x08\x00":
            continue
        inner = frame[ETH_LEN:]
        ihl = (inner[0] & 0x0F) * 4
        r["inner_ipv4"] += 1
        if checksum(inner[:ihl]) != 0:
            r["bad_inner_ip_csum"] += 1
        if inner[9] == 6:
            tot = struct.unpack("!H", inner[2:4])[0]
            r["inner_tcp"] += 1
            if not l4_sum_ok(inner[12:16], inner[16:20], 6, inner[ihl:tot]):
                r["bad_inner_tcp_csum"] += 1
    return r


def whole(args):
    r = dict(datagrams=0, single=0, gso_sends=0, gso_segments=0, bad_split=0, gso_size_max=0,
             bad_gso_vxlan=0)
    for iph, udp in datagrams(args.pcap, args.src):
        r["datagrams"] += 1
        if len(iph) + len(udp) <= args.mtu:
            r["single"] += 1
            continue
        r["gso_sends"] += 1
        payload = udp[UDP_LEN:]
        sizes = []
        off = 0
        while off < len(payload):
            seg = payload[off:]
            if not vxlan_ok(seg, args.vni):
                r["bad_gso_vxlan"] += 1
            frame = seg[VXLAN_LEN:]
            if len(frame) < ETH_LEN + IP_LEN or frame[12:14] != b"\x08\x00":
                break
            size = VXLAN_LEN + ETH_LEN + struct.unpack("!H", frame[16:18])[0]
            sizes.append(size)
            off += size
        ok = (
            off == len(payload)
            and len(sizes) >= 2
            and all(s == sizes[0] for s in sizes[:-1])
            and sizes[-1] <= sizes[0]
            and len(iph) + UDP_LEN + sizes[0] <= args.mtu
        )
        if not ok:
            r["bad_split"] += 1
            continue
        r["gso_segments"] += len(sizes)
        r["gso_size_max"] = max(r["gso_size_max"], sizes[0])
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["wire", "whole"])
    p.add_argument("pcap")
    p.add_argument("src")
    p.add_argument("--vni", type=int, required=True)
    p.add_argument("--mtu", type=int, required=True)
    args = p.parse_args()
    print(json.dumps(wire(args) if args.mode == "wire" else whole(args)))


if __name__ == "__main__":
    sys.exit(main())
