#!/usr/bin/env python3
"""Compares an A/B run of scripts/ab_session.sh: for each bench point, the median over rounds of the
baseline ("base") and of this checkout ("new"), new/base, and each side's spread over its rounds (max/min),
so a difference can be read against the noise of the same lease.

    python3 bench/gpu/ab_compare.py OUT_DIR            # prints the tables (markdown)
"""
import glob
import json
import os
import statistics
import sys


def rows(path):
    with open(path) as f:
        data = json.load(f)
    for v in data.values():
        if isinstance(v, list):
            return v
    return []


def collect(out, kind, fields):
    """{(side, key): {field: [values over rounds]}} for bench `kind` (fwd|bwd)."""
    res = {}
    for path in sorted(glob.glob(os.path.join(out, f"{kind}_*_*.json"))):
        side = os.path.basename(path).split("_")[1]
        try:
            rs = rows(path)
        except (OSError, ValueError):
            continue
        for r in rs:
            key = (r["D"], r["N"], bool(r["causal"]))
            for f in fields:
                v = r.get(f, -1)
                if isinstance(v, (int, float)) and v > 0:
                    res.setdefault((side, key), {}).setdefault(f, []).append(v)
    return res


def table(out, kind, fields):
    res = collect(out, kind, fields)
    keys = sorted({k for (_, k) in res})
    print(f"\n### {kind}: TFLOP/s, median over rounds (spread = max/min over rounds)\n")
    print("| D | N | causal | " + " | ".join(f"{f} base | {f} new | new/base" for f in fields) + " |")
    print("|---|---|---|" + "---|---|---|" * len(fields))
    ratios = {f: [] for f in fields}
    for k in keys:
        cells = []
        for f in fields:
            b = res.get(("base", k), {}).get(f, [])
            n = res.get(("new", k), {}).get(f, [])
            if not b or not n:
                cells.append("- | - | -")
                continue
            mb, mn = statistics.median(b), statistics.median(n)
            sb = max(b) / min(b) if len(b) > 1 else 1.0
            sn = max(n) / min(n) if len(n) > 1 else 1.0
            ratios[f].append(mn / mb)
            cells.append(f"{mb:.1f} (±{(sb - 1) * 100:.1f}%) | {mn:.1f} (±{(sn - 1) * 100:.1f}%) | {mn / mb:.3f}")
        print(f"| {k[0]} | {k[1]} | {int(k[2])} | " + " | ".join(cells) + " |")
    for f, rs in ratios.items():
        if rs:
            g = statistics.geometric_mean(rs)
            print(f"\n{kind} {f}: new/base geomean {g:.4f}, min {min(rs):.4f}, max {max(rs):.4f} over {len(rs)} points")


def host(out):
    """host_overhead's rows: per side, the median over runs of each run's median us per call -- the whole call,
    and where CUPTI split it (host_overhead's second pass): entry to the first launch, time inside CUDA runtime
    calls, and the call's own time outside them."""
    fields = [("median_us", "call"), ("to_launch_us", "entry to launch"), ("in_runtime_us", "in runtime"),
              ("own_us", "own")]
    print("\n### host overhead: us per call (median over runs of each run's median)\n")
    print("| call | " + " | ".join(f"{label} base | {label} new" for _, label in fields) + " |")
    print("|---|" + "---|---|" * len(fields))
    vals = {}
    for side in ("base", "new"):
        for path in sorted(glob.glob(os.path.join(out, f"host_{side}_*.json"))):
            try:
                with open(path) as f:
                    d = json.load(f)
            except (OSError, ValueError):
                continue
            for r in d.get("rows", []):
                if r.get("error"):
                    continue
                for f, _ in fields:
                    v = r.get(f)
                    if isinstance(v, (int, float)) and v >= 0:
                        vals.setdefault(r["call"], {}).setdefault((side, f), []).append(v)
    for call, sides in vals.items():
        cells = []
        for f, _ in fields:
            for side in ("base", "new"):
                v = sides.get((side, f), [])
                cells.append(f"{statistics.median(v):.2f}" if v else "-")
        print(f"| {call} | " + " | ".join(cells) + " |")


def main():
    out = sys.argv[1]
    table(out, "fwd", ["flash_tflops", "flat_tflops"])
    table(out, "bwd", ["fwd_tflops", "bwd_tflops", "bwd_det_tflops"])
    host(out)


if __name__ == "__main__":
    main()
