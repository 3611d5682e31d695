#!/usr/bin/env python3
"""Charts of BenchmarkScaling's figures, for deploy/local/bench-scaling.sh.

Reads fanout.tsv and reads.tsv from DIR (bench-scaling.sh writes them) and
writes DIR/fanout.png (deliveries/s and CPU per delivery against followers
per post) and DIR/reads.png (read latency and CPU per read against
following count, one line per strategy). Both x axes are log scale.

    python3 deploy/local/plot-scaling.py docs/scaling

It needs matplotlib (python3 -m pip install matplotlib); without it, it
says so and exits 2, and bench-scaling.sh keeps the tables alone.
"""

import csv
import sys
from pathlib import Path

try:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
except ImportError:
    print(
        "plot-scaling.py: matplotlib is not installed; install it with "
        "`python3 -m pip install matplotlib` and run "
        "`python3 deploy/local/plot-scaling.py docs/scaling` again",
        file=sys.stderr,
    )
    sys.exit(2)

STRATEGIES = ("push", "pull", "hybrid")


def rows(path):
    """The TSV at path as a list of dicts, numbers as floats."""
    with open(path, newline="") as f:
        out = []
        for r in csv.DictReader(f, delimiter="\t"):
            out.append({k: (v if k == "strategy" else float(v)) for k, v in r.items()})
        return out


def plot_fanout(fan, out):
    x = [r["followers"] for r in fan]
    fig, (rate, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    rate.plot(x, [r["deliveries_per_s"] for r in fan], "o-")
    rate.set_ylabel("deliveries/s")
    rate.set_ylim(bottom=0)
    rate.set_title("Fan-out throughput")
    redis = [r["redis_cpu_us_per_delivery"] for r in fan]
    herald = [r["herald_cpu_us_per_delivery"] for r in fan]
    cpu.plot(x, redis, "o-", label="Redis")
    cpu.plot(x, herald, "s-", label="Herald")
    cpu.plot(x, [a + b for a, b in zip(redis, herald)], "^--", label="Redis + Herald")
    cpu.set_ylabel("CPU µs per delivery")
    cpu.set_ylim(bottom=0)
    cpu.set_title("CPU per delivery")
    cpu.legend()
    for ax in (rate, cpu):
        ax.set_xscale("log")
        ax.set_xlabel("followers per post")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def plot_reads(reads, out):
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in STRATEGIES:
        rs = [r for r in reads if r["strategy"] == s]
        if not rs:
            continue
        x = [r["following"] for r in rs]
        (line,) = lat.plot(x, [r["p50_ms"] for r in rs], "o-", label=f"{s} p50")
        lat.plot(x, [r["p99_ms"] for r in rs], "o:", color=line.get_color(), label=f"{s} p99")
        cpu.plot(x, [r["redis_cpu_us_per_read"] for r in rs], "o-", color=line.get_color(), label=f"{s} Redis")
        cpu.plot(x, [r["herald_cpu_us_per_read"] for r in rs], "s:", color=line.get_color(), label=f"{s} Herald")
    lat.set_ylabel("latency, ms")
    lat.set_title("Warm GetHomeTimeline latency")
    cpu.set_ylabel("CPU µs per read")
    cpu.set_title("CPU per read")
    for ax in (lat, cpu):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("accounts followed (hybrid: half of them celebrities)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: plot-scaling.py DIR (with fanout.tsv and reads.tsv)")
    d = Path(argv[1])
    plot_fanout(rows(d / "fanout.tsv"), d / "fanout.png")
    plot_reads(rows(d / "reads.tsv"), d / "reads.png")


if __name__ == "__main__":
    main(sys.argv)
