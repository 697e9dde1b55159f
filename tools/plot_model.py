#!/usr/bin/env python3
"""Plot a `flatattn model --csv` sweep: runtime and utilization vs N, one line per dataflow.

usage: plot_model.py SWEEP.csv OUT.png

Needs matplotlib (python3 -m pip install matplotlib). Exit status 3 when it is missing.
"""
import csv
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_model.py: matplotlib is not installed; fix: python3 -m pip install matplotlib", file=sys.stderr)
        return 3

    src, out = sys.argv[1], sys.argv[2]
    with open(src, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["feasible"] == "1"]
    if not rows:
        print(f"plot_model.py: {src} has no feasible rows to plot", file=sys.stderr)
        return 1

    series = {}
    for r in rows:
        series.setdefault(r["dataflow"], []).append((int(r["n"]), float(r["runtime_s"]), float(r["utilization"])))
    first = rows[0]
    fig, (ax_t, ax_u) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, pts in series.items():
        pts.sort()
        ns = [p[0] for p in pts]
        ax_t.plot(ns, [p[1] for p in pts], marker="o", label=name)
        ax_u.plot(ns, [p[2] for p in pts], marker="o", label=name)
    for ax in (ax_t, ax_u):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length N")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax_t.set_yscale("log")
    ax_t.set_ylabel(f"runtime (s), {first['scope']} scope")
    ax_u.set_ylabel("utilization = ideal / actual (attention)")
    ax_u.set_ylim(0, 1.05)
    fig.suptitle(f"{first['workload']} on {first['hardware']} (map space {first['mapspace']})")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
