#!/usr/bin/python3
"""Writes golden vector files for encap's tests (called by scripts/gen-golden.sh).

  golden_vectors.py kernel PCAP OUT CONFIG DESCRIPTION   one file from a kernel vxlan capture
  golden_vectors.py scapy OUTDIR                         the scapy-built IPIP/VXLAN/ECN cases

File format (one case per block, blocks separated by a blank line, '#' lines are comments):
  case NAME
  kind vxlan|ipip
  roles encode decode        encode: our encoder fed the inner packet and the captured per-packet
                             fields must produce `packet` byte for byte; decode: our decoder must
                             accept `packet` and report the `expect` fields
  config k=v ...             vxlan: dst_port ttl dscp udp_checksum; ipip: ttl dscp
  packet HEX                 the whole packet from the outer IPv4 header on
  expect k=v ...             fields decoded by tshark (kernel) or set in scapy
  after HEX                  (optional) the inner frame/packet after RFC 6040 decapsulation
  error NAME                 (optional) decapsulation must fail with this `Invalid` reason
"""
import subprocess
import sys

from scapy.all import IP, UDP, TCP, ICMP, Ether, Dot1Q, IPv6, ICMPv6EchoRequest, Raw, rdpcap, raw
from scapy.layers.vxlan import VXLAN
from scapy.packet import bind_layers

bind_layers(UDP, VXLAN, dport=4790)  # so the wrong-port case still dissects as VXLAN

A, B = "192.0.2.1", "192.0.2.2"
ECN_NAMES = ["NotEct", "Ect1", "Ect0", "Ce"]


def block(name, kind, roles, config, packet, expect, after=None, error=None, comment=None):
    lines = []
    if comment:
        lines.append("# " + comment)
    lines += [f"case {name}", f"kind {kind}", "roles " + " ".join(roles), f"config {config}",
              f"packet {packet.hex()}", "expect " + " ".join(f"{k}={v}" for k, v in expect.items())]
    if after is not None:
        lines.append(f"after {after.hex()}")
    if error is not None:
        lines.append(f"error {error}")
    return "\n".join(lines) + "\n"


def tshark_fields(pcap, fields, occurrence, decode_as):
    cmd = ["tshark", "-r", pcap, "-T", "fields", "-E", "separator=|", "-E", f"occurrence={occurrence}"]
    for d in decode_as:
        cmd += ["-d", d]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines()]


def kernel(pcap, out, config, description):
    port = dict(kv.split("=") for kv in config.split())["dst_port"]
    decode_as = [f"udp.port=={port},vxlan"]
    outer = ["ip.src", "ip.dst", "ip.dsfield", "ip.ttl", "ip.id", "ip.flags.df", "udp.srcport",
             "udp.dstport", "udp.checksum", "vxlan.vni"]
    first = tshark_fields(pcap, outer, "f", decode_as)
    last = tshark_fields(pcap, ["eth.src", "eth.dst"], "l", decode_as)
    pkts = rdpcap(pcap)
    assert len(pkts) == len(first) == len(last) and len(pkts) > 0, "capture is empty or inconsistent"
    body = [f"# {description}\n# captured with tcpdump on the underlay veth; fields decoded by tshark\n"]
    for i, (p, f, l) in enumerate(zip(pkts, first, last)):
        packet = raw(p)[14:]  # drop the veth Ethernet header
        expect = {"src": f[0], "dst": f[1], "tos": f[2], "ttl": f[3], "id": f[4],
                  "df": f[5] if f[5] in "01" else str(int(f[5] == "True")), "sport": f[6],
                  "dport": f[7], "udpcsum": f[8], "vni": f[9], "inner_src": l[0], "inner_dst": l[1]}
        body.append(block(f"{out.split('/')[-1][:-4]}#{i}", "vxlan", ["encode", "decode"], config,
                          packet, expect))
    with open(out, "w") as fh:
        fh.write("\n".join(body))


def ipip_expect(p):
    return {"src": p[IP].src, "dst": p[IP].dst, "tos": hex(p[IP].tos), "ttl": p[IP].ttl,
            "id": hex(p[IP].id), "df": int("DF" in str(p[IP].flags))}


def rebuild(p):
    """Re-dissects a scapy packet from its bytes (so checksums and lengths are filled in)."""
    return p.__class__(raw(p))


def with_ecn(tos, ecn):
    return (tos & 0xfc) | ecn


def rfc6040(outer, inner):
    """The RFC 6040 §4.2 table; None means drop. (ECN values: 0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE.)"""
    if inner == 0:
        return None if outer == 3 else 0
    if inner == 3 or outer == 3:
        return 3
    if inner == 2 and outer == 1:
        return 1
    return inner


def ipip_encoded(name, config, ident, ttl, inner):
    """An encode + decode case: `inner` behind the outer IPv4 header our encoder must write,
    protocol 4 or 41 by the inner version, DF copied from the inner DF (always set for IPv6),
    DSCP from the inner TOS or traffic class or fixed, ECN per RFC 6040 (CE -> ECT(0))."""
    inner = rebuild(inner)
    if inner.version == 4:
        proto, itos, df = 4, inner.tos, "DF" if "DF" in str(inner.flags) else 0
    else:
        proto, itos, df = 41, inner.tc, "DF"
    dscp = dict(kv.split("=") for kv in config.split())["dscp"]
    ecn = 2 if itos & 3 == 3 else itos & 3
    tos = (itos & 0xfc if dscp == "inherit" else int(dscp) << 2) | ecn
    pkt = rebuild(IP(src=A, dst=B, proto=proto, ttl=ttl, tos=tos, id=ident, flags=df) / inner)
    return block(name, "ipip", ["encode", "decode"], config, raw(pkt), ipip_expect(pkt))


def ecn_decoded(name, kind, config, pkt, expect, res, inner):
    """A decode-only case of the RFC 6040 table: `pkt` is refused (`res` None: CE over Not-ECT),
    or its inner frame or packet becomes `inner(res)`."""
    extra = {"error": "EcnCeOverNotEct"} if res is None else {"after": raw(inner(res))}
    return block(name, kind, ["decode"], config, raw(pkt), expect, **extra)


def ipip_ecn_table(prefix, proto, inner):
    """The decapsulation ECN table, every outer ECN against every inner one, on the inner packet
    `inner(ecn)` carried as protocol `proto`."""
    out = []
    for o in range(4):
        for i in range(4):
            pkt = rebuild(IP(src=B, dst=A, proto=proto, ttl=64, tos=with_ecn(0xb8, o), id=5, flags="DF") / inner(i))
            name = f"{prefix}_ecn_outer_{ECN_NAMES[o]}_inner_{ECN_NAMES[i]}"
            out.append(ecn_decoded(name, "ipip", "ttl=64 dscp=inherit", pkt, ipip_expect(pkt), rfc6040(o, i), inner))
    return out


def ipip_cases():
    out = ["# scapy-built IPIP (RFC 2003) vectors: outer IPv4 proto 4, DF copied from the inner DF,\n"
           "# DSCP inherited or fixed, ECN per RFC 6040 (CE -> ECT(0) on encapsulation)\n"]
    enc = [
        ("ipip_icmp_df_ef", "ttl=64 dscp=inherit", 0x1234, 64,
         IP(src="10.0.0.1", dst="10.0.1.1", tos=0xb8, ttl=64, flags="DF", id=7) / ICMP(id=9, seq=1) / Raw(b"x" * 32)),
        ("ipip_udp_ce_nodf", "ttl=64 dscp=inherit", 0, 64,
         IP(src="10.0.0.1", dst="10.0.1.1", tos=0x03, ttl=5, id=300) / UDP(sport=1000, dport=53) / Raw(b"q" * 20)),
        ("ipip_tcp_ttl_inherit", "ttl=inherit dscp=inherit", 0xbeef, 17,
         IP(src="10.0.0.1", dst="10.0.1.1", tos=0x29, ttl=17, flags="DF") / TCP(sport=40000, dport=443, flags="S")),
        ("ipip_fixed_dscp", "ttl=200 dscp=46", 1, 200,
         IP(src="10.0.0.1", dst="10.0.1.1", tos=0x02, ttl=64, flags="DF") / UDP(sport=1, dport=2)),
        ("ipip_inner_options", "ttl=64 dscp=inherit", 2, 64,
         IP(src="10.0.0.1", dst="10.0.1.1", ttl=64, options=b"\x01\x01\x01\x00") / ICMP()),
    ]
    out += [ipip_encoded(*case) for case in enc]
    # The decapsulation ECN table, on an ICMP inner packet with a non-zero DSCP.
    def icmp(ecn):
        return rebuild(IP(src="10.0.0.1", dst="10.0.1.1", tos=with_ecn(0x28, ecn), ttl=9, id=77) / ICMP())
    out += ipip_ecn_table("ipip", 4, icmp)
    out.extend(ipip6_cases())
    return "\n".join(out)


def ipip6_cases():
    """IPv6 in IPv4 (RFC 4213, protocol 41, as Linux's sit sends it): DF set (IPv6 is never
    fragmented on the way), DSCP from the traffic class or fixed, TTL fixed or from the hop
    limit, ECN per RFC 6040; and the decapsulation table on an IPv6 inner header."""
    out = ["# IPv6 in IPv4 (RFC 4213): outer IPv4 proto 41, DF set, traffic class as the inner TOS\n"]
    enc = [
        ("ipip6_icmp_ef", "ttl=64 dscp=inherit", 0x4321, 64,
         IPv6(src="fd00:1::5", dst="fd00:2::7", tc=0xb9, hlim=63) / ICMPv6EchoRequest(id=9, seq=1, data=b"y" * 24)),
        ("ipip6_udp_ce_hlim_inherit", "ttl=inherit dscp=inherit", 7, 9,
         IPv6(src="fd00:1::5", dst="fd00:2::7", tc=0x2b, hlim=9, fl=0x12345) / UDP(sport=1000, dport=53) / Raw(b"q" * 11)),
        ("ipip6_fixed_dscp", "ttl=200 dscp=10", 8, 200,
         IPv6(src="fd00:1::5", dst="fd00:2::7", tc=0x02, hlim=64) / TCP(sport=40000, dport=443, flags="S")),
    ]
    out += [ipip_encoded(*case) for case in enc]
    def echo(ecn):
        return rebuild(IPv6(src="fd00:1::5", dst="fd00:2::7", tc=with_ecn(0x28, ecn), hlim=9) / ICMPv6EchoRequest())
    out += ipip_ecn_table("ipip6", 41, echo)
    return out


def vxlan_expect(p):
    e = ipip_expect(p)
    e.update({"sport": p[UDP].sport, "dport": p[UDP].dport, "udpcsum": hex(p[UDP].chksum),
              "vni": p[VXLAN].vni, "inner_src": p[VXLAN][Ether].src, "inner_dst": p[VXLAN][Ether].dst})
    return e


def vxlan_pkt(inner, tos, sport, ident, vni=42, flags=0x08, csum=None, dport=4789, ttl=64, reserved=0):
    u = UDP(sport=sport, dport=dport) if csum is None else UDP(sport=sport, dport=dport, chksum=csum)
    v = VXLAN(flags=flags, vni=vni, reserved2=reserved)
    return rebuild(IP(src=A, dst=B, ttl=ttl, tos=tos, id=ident, flags="DF") / u / v / inner)


def vxlan_cases():
    out = ["# scapy-built VXLAN-over-IPv4 vectors: VLAN-tagged and IPv6 inner frames, ECN/DSCP corner\n"
           "# cases, the decapsulation ECN table applied to the inner header, and malformed headers\n"]
    m1, m2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
    cfg = "dst_port=4789 ttl=64 dscp=inherit udp_checksum=1"
    # Encode + decode: the outer TOS follows the inner one through an 802.1Q tag, CE -> ECT(0).
    inner = Ether(src=m1, dst=m2) / Dot1Q(vlan=100, prio=5) / IP(src="10.1.0.1", dst="10.1.0.2", tos=0xbb) / UDP(sport=7, dport=8) / Raw(b"vlan")
    p = vxlan_pkt(inner, 0xba, 50000, 7)
    out.append(block("vxlan_vlan_inner_ce", "vxlan", ["encode", "decode"], cfg, raw(p), vxlan_expect(p)))
    inner = Ether(src=m1, dst=m2) / IPv6(src="fd00::1", dst="fd00::2", tc=0x29) / UDP(sport=7, dport=8) / Raw(b"v6")
    p = vxlan_pkt(inner, 0x29, 65535, 0, vni=0xffffff)
    out.append(block("vxlan_ipv6_inner_max_vni", "vxlan", ["encode", "decode"], cfg, raw(p), vxlan_expect(p)))
    inner = Ether(src=m1, dst="ff:ff:ff:ff:ff:ff", type=0x0806) / Raw(bytes(28))
    p = vxlan_pkt(inner, 0x00, 49152, 1, vni=1)
    out.append(block("vxlan_arp_inner_dscp_fixed", "vxlan", ["encode", "decode"],
                     "dst_port=4789 ttl=64 dscp=0 udp_checksum=1", raw(p), vxlan_expect(p)))
    # Decode only: ECN combinations applied to IPv4 and IPv6 inner headers.
    for o, i in [(3, 2), (3, 0), (1, 2), (2, 0), (3, 3), (0, 1)]:
        for v6 in (False, True):
            def frame(ecn):
                if v6:
                    l3 = IPv6(src="fd00::1", dst="fd00::2", tc=with_ecn(0x28, ecn)) / UDP(sport=7, dport=8)
                else:
                    l3 = IP(src="10.1.0.1", dst="10.1.0.2", tos=with_ecn(0x28, ecn)) / UDP(sport=7, dport=8)
                return rebuild(Ether(src=m1, dst=m2) / l3 / Raw(b"ecn"))
            p = vxlan_pkt(frame(i), with_ecn(0, o), 50001, 3)
            name = f"vxlan_ecn_{'v6' if v6 else 'v4'}_outer_{ECN_NAMES[o]}_inner_{ECN_NAMES[i]}"
            out.append(ecn_decoded(name, "vxlan", cfg, p, vxlan_expect(p), rfc6040(o, i), frame))
    base = Ether(src=m1, dst=m2) / IP(src="10.1.0.1", dst="10.1.0.2") / ICMP()
    # Reserved VXLAN bits set (ignored on receive), and a zero UDP checksum (accepted).
    p = vxlan_pkt(base, 0, 50002, 4, flags=0x0c, reserved=0xab)
    out.append(block("vxlan_reserved_bits_ignored", "vxlan", ["decode"], cfg, raw(p), vxlan_expect(p)))
    p = vxlan_pkt(base, 0, 50003, 5, csum=0)
    out.append(block("vxlan_zero_udp_checksum", "vxlan", ["decode"], cfg, raw(p), vxlan_expect(p)))
    # Rejected: a wrong non-zero UDP checksum, the I flag clear, another UDP port.
    good = vxlan_pkt(base, 0, 50004, 6)
    p = vxlan_pkt(base, 0, 50004, 6, csum=good[UDP].chksum ^ 0x0101)
    out.append(block("vxlan_bad_udp_checksum", "vxlan", ["decode"], cfg, raw(p), vxlan_expect(p), error="UdpChecksum"))
    p = vxlan_pkt(base, 0, 50005, 7, flags=0x00)
    out.append(block("vxlan_i_flag_clear", "vxlan", ["decode"], cfg, raw(p), vxlan_expect(p), error="VxlanIFlagClear"))
    p = vxlan_pkt(base, 0, 50006, 8, dport=4790)
    out.append(block("vxlan_wrong_port", "vxlan", ["decode"], cfg, raw(p), vxlan_expect(p), error="UdpPort"))
    return "\n".join(out)


def main():
    if sys.argv[1] == "kernel":
        kernel(*sys.argv[2:6])
    elif sys.argv[1] == "scapy":
        d = sys.argv[2]
        with open(f"{d}/scapy_ipip.txt", "w") as fh:
            fh.write(ipip_cases())
        with open(f"{d}/scapy_vxlan.txt", "w") as fh:
            fh.write(vxlan_cases())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
