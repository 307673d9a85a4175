#!/usr/bin/python3
"""Scraper for tests/metrics.rs (run inside the daemon's namespace, under `timeout`).

  scrape HOST:PORT     GET /metrics (5 s timeout), parse it with prometheus_client's
                       OpenMetrics parser (the format served) and its Prometheus text parser
                       (every sample must read the same through both), print JSON
                       {content_type, families: [[name, type]], samples: [[name, labels, value]]}
  hostile HOST:PORT N  open N silent connections, one that sends a request larger than any
                       the server reads, one that asks and never reads; then, with all of them
                       open, check /, a 404, a 405 and one real scrape; print "ready" and wait
                       for a line on stdin (the test uses the control socket meanwhile); then
                       print JSON {evicted, huge, scrape_ok, statuses}
"""
import json
import socket
import sys
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

TIMEOUT = 5


def get(addr, path, method="GET"):
    """(status, content type, body) of one request."""
    req = urllib.request.Request(f"http://{addr}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def key(s):
    return (s.name, tuple(sorted(s.labels.items())), s.value)


def scrape(addr):
    status, ctype, body = get(addr, "/metrics")
    assert status == 200, (status, body)
    fams = list(openmetrics_families(body))
    om = sorted(key(s) for f in fams for s in f.samples)
    text = sorted(key(s) for f in text_families(body) for s in f.samples)
    assert om == text, "the two parsers read different samples"
    return {
        "content_type": ctype,
        "families": [[f.name, f.type] for f in fams],
        "samples": [[n, dict(l), v] for (n, l, v) in om],
    }


def closed_within(sock, secs):
    """Whether the server closed `sock` (EOF or reset) within `secs`; what it sent first."""
    sock.settimeout(secs)
    got = b""
    try:
        while True:
            b = sock.recv(4096)
            if not b:
                return True, got
            got += b
    except socket.timeout:
        return False, got
    except ConnectionError:
        return True, got


def hostile(addr, n):
    host, port = addr.rsplit(":", 1)
    target = (host, int(port))
    silent = [socket.create_connection(target, timeout=TIMEOUT) for _ in range(n)]
    huge = socket.create_connection(target, timeout=TIMEOUT)
    try:
        huge.sendall(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * (1 << 20))
    except (ConnectionError, socket.timeout):
        pass  # the server may close it while we still send: that is the bound at work
    sleeper = socket.create_connection(target, timeout=TIMEOUT)
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sleeper.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    statuses = {
        "/": get(addr, "/")[0],
        "/nope": get(addr, "/nope")[0],
        "POST /metrics": get(addr, "/metrics", "POST")[0],
    }
    root = get(addr, "/")[2]
    first = scrape(addr)
    print("ready", flush=True)
    sys.stdin.readline()
    second = scrape(addr)
    huge_closed, huge_got = closed_within(huge, TIMEOUT)
    evicted, _ = closed_within(silent[0], TIMEOUT)
    print(
        json.dumps(
            {
                "evicted": evicted,
                "huge": {"closed": huge_closed, "status": huge_got.split(b"\r\n")[0].decode()},
                "scrape_ok": len(first["samples"]) > 0 and len(second["samples"]) > 0,
                "root_links": 'href="/metrics"' in root,
                "statuses": statuses,
            }
        )
    )
    for s in silent + [huge, sleeper]:
        s.close()


def main():
    if sys.argv[1] == "scrape":
        print(json.dumps(scrape(sys.argv[2])))
    elif sys.argv[1] == "hostile":
        hostile(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")


if __name__ == "__main__":
    main()
