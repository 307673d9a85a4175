#!/usr/bin/python3
"""Traffic helper for the multicore, churn and integrity tests (run inside a namespace).

  seq-recv PORT SECS          receive sequence-numbered UDP datagrams until SECS pass with
                              nothing new; print JSON {flows, received, reordered, per_flow}
  seq-send DST PORT FLOWS N   send N datagrams on each of FLOWS flows (source ports 40000+i),
                              interleaved, each carrying (flow, seq)
  sink PORT SECS [6]          accept one TCP connection (over IPv6 with 6), read to EOF (at
                              most SECS), print JSON {bytes, sha256}
  source DST PORT FILE MSS CHUNK
                              connect (over IPv6 when DST is an IPv6 address) with
                              TCP_MAXSEG=MSS (0: default), send FILE in writes of CHUNK
                              bytes, print JSON {bytes, sha256}
"""
import hashlib
import json
import socket
import struct
import sys
import time


def seq_recv(port, idle):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    s.settimeout(idle)
    print("ready", flush=True, file=sys.stderr)
    last = {}
    counts = {}
    received = reordered = 0
    while True:
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            if received:
                break
            continue
        if len(data) < 8:
            continue
        flow, seq = struct.unpack("!II", data[:8])
        key = "%s:%d/%d" % (addr[0], addr[1], flow)
        received += 1
        counts[key] = counts.get(key, 0) + 1
        if key in last and seq <= last[key]:
            reordered += 1
        last[key] = seq
    print(json.dumps({"flows": len(last), "received": received,
                      "reordered": reordered, "per_flow": counts}))


def seq_send(dst, port, flows, n):
    socks = []
    for i in range(flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 40000 + i))
        socks.append(s)
    pad = b"\0" * 200
    for seq in range(n):
        for i, s in enumerate(socks):
            s.sendto(struct.pack("!II", i, seq) + pad, (dst, port))
        if seq % 50 == 49:
            time.sleep(0.002)  # stay under the queues' size: loss is allowed, but pointless


def sink(port, secs, v6=False):
    ls = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::" if v6 else "0.0.0.0", port))
    ls.listen(1)
    ls.settimeout(secs)
    print("ready", flush=True, file=sys.stderr)
    c, _ = ls.accept()
    c.settimeout(secs)
    h = hashlib.sha256()
    total = 0
    deadline = time.time() + secs
    while time.time() < deadline:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b)
        total += len(b)
    print(json.dumps({"bytes": total, "sha256": h.hexdigest()}))


def source(dst, port, path, mss, chunk):
    c = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_STREAM)
    if mss:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
    c.settimeout(30)
    for _ in range(100):
        try:
            c.connect((dst, port))
            break
        except (ConnectionRefusedError, socket.timeout):
            time.sleep(0.1)
    h = hashlib.sha256()
    total = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            c.sendall(b)
            h.update(b)
            total += len(b)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)  # wait for the peer to close: everything was read
    print(json.dumps({"bytes": total, "sha256": h.hexdigest()}))


def main():
    a = sys.argv[1:]
    if a[0] == "seq-recv":
        seq_recv(int(a[1]), float(a[2]))
    elif a[0] == "seq-send":
        seq_send(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif a[0] == "sink":
        sink(int(a[1]), float(a[2]), a[3:] == ["6"])
    elif a[0] == "source":
        source(a[1], int(a[2]), a[3], int(a[4]), int(a[5]))
    else:
        sys.exit("unknown command " + a[0])


if __name__ == "__main__":
    main()
