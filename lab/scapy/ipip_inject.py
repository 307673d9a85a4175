#!/usr/bin/python3
"""Sends crafted IPv4 packets for the IPIP conformance checks (scapy plays the independent peer).

usage:
  ipip_inject.py tunnel IFACE DST_MAC OUTER_SRC OUTER_DST INNER_SRC INNER_DST [options]
      IPIP packets (outer IPv4, protocol 4, around an ICMP echo request) built at layer 2 and sent
      out of IFACE to DST_MAC, so OUTER_SRC may be anyone's address.
  ipip_inject.py local SRC DST [options]
      a plain IPv4 ICMP echo request written to a raw socket (header included), so the kernel
      routes it as it is: used to send TTL 0 or a forged source into a tunnel device.

options:
  --count N       packets to send (default 1)
  --ttl N         inner TTL (default 64)
  --outer-tos X   outer TOS byte (default 0)
  --inner-tos X   inner TOS byte (default 0)
  --df            set DF on the inner packet
  --id N          ICMP echo identifier (default 0x1234)
  --flows N       (tunnel) UDP datagrams to port 9 instead of echo requests, from source ports
                  40000..40000+N-1 in turn: N inner flows
  --inner6        (tunnel) IPv6 inside, protocol 41 (RFC 4213, as Linux's sit): ICMPv6 echo
                  requests with hop limit --ttl and traffic class --inner-tos

Prints "sent N". Needs Debian's /usr/bin/python3 (python3-scapy).
"""

import argparse
import socket
import sys

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.sendrecv import sendp


def echo(src: str, dst: str, a: argparse.Namespace, seq: int) -> IP:
    flags = "DF" if a.df else 0
    return (
        IP(src=src, dst=dst, ttl=a.ttl, tos=a.inner_tos, flags=flags, id=seq)
        / ICMP(type=8, id=a.id, seq=seq)
        / Raw(b"vtepd ipip conformance".ljust(32, b"."))
    )


def echo6(src: str, dst: str, a: argparse.Namespace, seq: int) -> IPv6:
    return (
        IPv6(src=src, dst=dst, hlim=a.ttl, tc=a.inner_tos)
        / ICMPv6EchoRequest(id=a.id, seq=seq, data=b"vtepd ipip6 conformance".ljust(32, b"."))
    )


def datagram(src: str, dst: str, a: argparse.Namespace, seq: int) -> IP:
    return (
        IP(src=src, dst=dst, ttl=a.ttl, tos=a.inner_tos, id=seq)
        / UDP(sport=40000 + seq % a.flows, dport=9)
        / Raw(b"vtepd ipip flows %d" % seq)
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["tunnel", "local"])
    p.add_argument("args", nargs="+")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--ttl", type=int, default=64)
    p.add_argument("--outer-tos", type=lambda s: int(s, 0), default=0)
    p.add_argument("--inner-tos", type=lambda s: int(s, 0), default=0)
    p.add_argument("--df", action="store_true")
    p.add_argument("--id", type=lambda s: int(s, 0), default=0x1234)
    p.add_argument("--flows", type=int, default=0)
    p.add_argument("--inner6", action="store_true")
    a = p.parse_args()
    sent = 0
    if a.mode == "tunnel":
        if len(a.args) != 6:
            p.error("tunnel needs IFACE DST_MAC OUTER_SRC OUTER_DST INNER_SRC INNER_DST")
        iface, mac, osrc, odst, isrc, idst = a.args
        inner = echo6 if a.inner6 else datagram if a.flows > 0 else echo
        proto = 41 if a.inner6 else 4
        frames = [
            Ether(dst=mac)
            / IP(src=osrc, dst=odst, proto=proto, tos=a.outer_tos, flags="DF", ttl=64)
            / inner(isrc, idst, a, seq)
            for seq in range(1, a.count + 1)
        ]
        sendp(frames, iface=iface, verbose=False)
        sent = len(frames)
    else:
        if len(a.args) != 2:
            p.error("local needs SRC DST")
        src, dst = a.args
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for seq in range(1, a.count + 1):
            s.sendto(bytes(echo(src, dst, a, seq)), (dst, 0))
            sent += 1
    print(f"sent {sent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
