#!/usr/bin/python3
"""Draws a lab/bench.sh result (its --json output) as an SVG chart.

usage: lab/bench_plot.py RESULT.json OUT.svg

One panel per figure (TCP 1 and 4 streams, the 64-byte rate, RTT p50 and p99, CPU per GB); in
each, every vtepd mode of the run as two bars: its ratio to kernel vxlan and to its ceiling
(examples/ceiling.rs), when those ran. The dashed line is parity (1.0). For rates above 1 is
better; for RTT and CPU below 1 is.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display; writes SVG (and PNG) by the file name
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)

FIGURES = [
    ("tcp1", "TCP, 1 stream", "higher is better"),
    ("tcp4", "TCP, 4 streams", "higher is better"),
    ("udp64", "64-byte packets/s", "higher is better"),
    ("rtt_p50", "RTT p50", "lower is better"),
    ("rtt_p99", "RTT p99", "lower is better"),
    ("cpu", "CPU per GB", "lower is better"),
]
MODES = [
    ("vtepd_l2_vxlan", "L2 VXLAN"),
    ("vtepd_l3_vxlan", "L3 VXLAN"),
    ("vtepd_l3_ipip", "L3 IPIP"),
    ("vtepd_l2_rco", "L2 VXLAN, RCO"),
    ("vtepd_l3_rco", "L3 VXLAN, RCO"),
]
SERIES = [("ratio", "/ kernel vxlan", "#4c72b0"), ("of_ceiling", "/ its ceiling", "#dd8452")]


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        r = json.load(f)
    modes = [(m, name) for m, name in MODES if r.get(f"{m}_status") is not None]
    if not modes:
        sys.stderr.write("bench_plot: no vtepd mode in the result\n")
        return 1
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    width = 0.38
    for ax, (key, title, better) in zip(axes.flat, FIGURES):
        for s, (suffix, label, colour) in enumerate(SERIES):
            xs, ys = [], []
            for i, (m, _) in enumerate(modes):
                v = r.get(f"{m}_{key}_{suffix}")
                if isinstance(v, (int, float)):
                    xs.append(i + (s - 0.5) * width)
                    ys.append(v)
            bars = ax.bar(xs, ys, width, label=label, color=colour)
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(modes)), [name for _, name in modes])
        ax.set_title(f"{title} ({better})", fontsize=10)
        ax.set_ylabel("ratio")
    axes.flat[0].legend(fontsize=8)
    started = r.get("started_at", "?")
    rounds = r.get("rounds", "?")
    fig.suptitle(f"vtepd against kernel vxlan and its ceiling: lab/bench.sh, {started}, {rounds} round(s)")
    fig.savefig(argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
