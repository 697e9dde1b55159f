#!/usr/bin/env python3
"""Turns the persistent warp-specialized forward's H100 A/B (bench/results/stop30-wsp-ab-h100-3b4ea35.json) into the
cost model's measured-times file (data/model/measured/h100-ws-persistent.json, format: src/model/compare.h): per shape
the one-tile and the persistent kernel's time, each the mean of its two rounds. The 46 points of the A/B table in
bench/results/h100-stop30-3b4ea35.md: schedule 2 at D = 128 (the FLATATTN_CUDA_SM90_WS=2 runs) and schedule 1 at
D = 64, 128, 256 (the =1 runs; the =2 runs' D = 64 rows run the same ws1 kernel and are left out, as in the table).

    python3 tools/wsp_ab_measured.py > data/model/measured/h100-ws-persistent.json
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = "bench/results/stop30-wsp-ab-h100-3b4ea35.json"
TILES = {64: (192, 128, 12), 128: (128, 128, 8), 256: (128, 80, 8)}  # policy/ws_tile.h: block_m, block_n, warps


def main():
    runs = json.loads((ROOT / SRC).read_text())["runs"]
    times = {}
    for name, run in runs.items():
        env = dict(kv.split("=") for kv in name.split())
        sched, pers = int(env["FLATATTN_CUDA_SM90_WS"]), int(env["persistent"])
        for r in run["rows"]:
            if sched == 2 and r["D"] != 128:
                continue
            times.setdefault((sched, r["D"], r["N"], r["B"], r["H"], r["causal"], pers), []).append(
                (r["flash_ms"], r["flash_kernel"]))
    out = []
    for (sched, d, n, b, h, causal, pers), ms in sorted(times.items()):
        assert len(ms) == 2 and all(k.endswith("_p") == bool(pers) for _, k in ms), (sched, d, n, causal, pers, ms)
        bm, bn, warps = TILES[d]
        out.append({"kernel": ms[0][1], "dataflow": "flash", "block_m": bm, "block_n": bn, "warps": warps,
                    "stages": 3 if d == 64 else 2, "path": "sm90_ws", "producer_warps": 4, "cta_regs": 64512,
                    "persistent": bool(pers), "B": b, "N": n, "Hq": h, "D": d, "causal": causal,
                    "ms": round(sum(m for m, _ in ms) / 2, 6)})
    doc = {"device": "NVIDIA H100 80GB HBM3 (SXM, 132 SMs), driver 580.159.04, CUDA 13.0",
           "source": SRC + " (stop 30, trees f7cd1e4 (=2) and 3b4ea35 (=1), 2026-12-07, bench_fwd CUDA events, "
                     "FLATATTN_CUDA_SM90_WS_PERSISTENT=0 and 1 alternating, two rounds; ms = their mean); "
                     "written by tools/wsp_ab_measured.py",
           "notes": "bf16, B*N = 16k, Hq*D = 2048; the warp-specialized forward one CTA per tile against its persistent "
                    "kernel (_p), schedule in the kernel name; the model has no schedule: both kernels of a shape share it",
           "results": out}
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")
    print(f"{len(out)} records, {len(out) // 2} shapes", file=sys.stderr)


if __name__ == "__main__":
    main()
