#!/usr/bin/python3
"""Sends COUNT raw Ethernet frames to DST_MAC out of IFACE (the lab's traffic source for wire counts).

usage: send_frames.py IFACE DST_MAC COUNT [--src MAC]

The frames carry ethertype 0x88b5 (IEEE "local experimental"), so no host answers or forwards them:
what the lab then counts on the wire is exactly what this sent. The source MAC defaults to IFACE's
own. A plain AF_PACKET socket, not scapy: it starts in milliseconds.
"""

import argparse
import socket
import sys

ETHERTYPE_LOCAL_EXPERIMENTAL = 0x88B5


def mac_bytes(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise argparse.ArgumentTypeError(f"bad MAC address {text!r}")
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad MAC address {text!r}") from e
    return raw


def iface_mac(iface: str) -> bytes:
    with open(f"/sys/class/net/{iface}/address") as f:
        return mac_bytes(f.read().strip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("iface")
    ap.add_argument("dst", type=mac_bytes)
    ap.add_argument("count", type=int)
    ap.add_argument("--src", type=mac_bytes, help="source MAC (default: the interface's)")
    args = ap.parse_args()
    if args.count < 0:
        ap.error("count must be >= 0")
    src = args.src if args.src is not None else iface_mac(args.iface)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((args.iface, 0))
        for seq in range(args.count):
            payload = b"vtepd-lab" + seq.to_bytes(4, "big")
            frame = args.dst + src + ETHERTYPE_LOCAL_EXPERIMENTAL.to_bytes(2, "big") + payload
            frame += bytes(max(0, 60 - len(frame)))  # pad to the Ethernet minimum
            s.send(frame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
