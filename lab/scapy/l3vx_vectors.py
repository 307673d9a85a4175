#!/usr/bin/python3
"""Prints the scapy-built test vectors of tests/l3_vxlan_core.rs (the ARP and Neighbor Discovery
engines and the ICMP echo responder of vtepd's L3 VXLAN mode), as `NAME HEX` lines. scapy is the independent source:
it builds the requests, and the replies vtepd must produce byte for byte from the RFC 826 / RFC
792 fields (vtepd originates IPv4 with ident 0, DF set, TTL 64, TOS 0, like smoltcp), and the
RFC 4861 solicitations and advertisements (hop limit 255, link-layer address options).

Run: /usr/bin/python3 lab/scapy/l3vx_vectors.py
"""
from scapy.all import (ARP, ICMP, IP, Ether, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA,
                       ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6, Raw, raw)

OWN_MAC, OWN_IP = "02:00:00:00:00:01", "10.244.0.0"
PEER_MAC, PEER_IP = "02:00:00:00:00:02", "10.244.0.7"
ROUTER_MAC, POD_IP = "02:00:00:00:00:03", "10.244.1.5"
OWN_IP6, PEER_IP6 = "fd00:1::1", "fd00:1::7"


def nd(dst_mac, src_mac, src, dst, msg, option):
    return Ether(dst=dst_mac, src=src_mac) / IPv6(src=src, dst=dst, hlim=255) / msg / option


vectors = {
    # A peer on our subnet asks who has our address.
    "arp_request": Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC)
    / ARP(op=1, hwsrc=PEER_MAC, psrc=PEER_IP, hwdst="00:00:00:00:00:00", pdst=OWN_IP),
    "arp_reply": Ether(dst=PEER_MAC, src=OWN_MAC)
    / ARP(op=2, hwsrc=OWN_MAC, psrc=OWN_IP, hwdst=PEER_MAC, pdst=PEER_IP),
    # vtepd resolving a next hop.
    "arp_who_has_peer": Ether(dst="ff:ff:ff:ff:ff:ff", src=OWN_MAC)
    / ARP(op=1, hwsrc=OWN_MAC, psrc=OWN_IP, hwdst="00:00:00:00:00:00", pdst=PEER_IP),
    "arp_peer_is_at": Ether(dst=OWN_MAC, src=PEER_MAC)
    / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER_IP, hwdst=OWN_MAC, pdst=OWN_IP),
    # A pod behind a remote node pings our overlay address (through its node's VTEP MAC).
    "echo_request": Ether(dst=OWN_MAC, src=ROUTER_MAC)
    / IP(src=POD_IP, dst=OWN_IP, ttl=63, id=0x1234, flags="DF", tos=0)
    / ICMP(type=8, id=0x4d2, seq=7)
    / Raw(bytes(range(48))),
    "echo_reply": Ether(dst=ROUTER_MAC, src=OWN_MAC)
    / IP(src=OWN_IP, dst=POD_IP, ttl=64, id=0, flags="DF", tos=0)
    / ICMP(type=0, id=0x4d2, seq=7)
    / Raw(bytes(range(48))),
    # A peer on our IPv6 prefix asks for our address (to its solicited-node group) ...
    "ns_for_own": nd("33:33:ff:00:00:01", PEER_MAC, PEER_IP6, "ff02::1:ff00:1",
                     ICMPv6ND_NS(tgt=OWN_IP6), ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)),
    # ... and is answered: solicited, override, not a router.
    "na_from_own": nd(PEER_MAC, OWN_MAC, OWN_IP6, PEER_IP6,
                      ICMPv6ND_NA(tgt=OWN_IP6, R=0, S=1, O=1),
                      ICMPv6NDOptDstLLAddr(lladdr=OWN_MAC)),
    # vtepd resolving an IPv6 next hop, and its answer.
    "ns_for_peer": nd("33:33:ff:00:00:07", OWN_MAC, OWN_IP6, "ff02::1:ff00:7",
                      ICMPv6ND_NS(tgt=PEER_IP6), ICMPv6NDOptSrcLLAddr(lladdr=OWN_MAC)),
    "na_from_peer": nd(OWN_MAC, PEER_MAC, PEER_IP6, OWN_IP6,
                       ICMPv6ND_NA(tgt=PEER_IP6, R=0, S=1, O=1),
                       ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC)),
    # A router advertisement through the tunnel: must never reach the host.
    "router_advert": nd(OWN_MAC, PEER_MAC, "fe80::2", OWN_IP6, ICMPv6ND_RA(),
                        ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC)),
}

for name, pkt in vectors.items():
    print(name, raw(pkt).hex())
