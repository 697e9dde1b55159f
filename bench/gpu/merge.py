#!/usr/bin/env python3
"""Merges one device run's measurements into bench/results: ours (bench_fwd JSON) and the peers
(peers_sdpa.py JSON: SDPA flash = FlashAttention-2, cuDNN, memory-efficient, cuBLAS ceiling), all
from the same run. Writes <prefix>.md (table of TFLOP/s and ratios), <prefix>.json, <prefix>.png.

    merge.py ours.json peers_sdpa.json --prefix OUT/gpu-fwd-h100 [--base ours_sm80.json]

--base: a second bench_fwd run of the same build on the same GPU (e.g. FLATATTN_CUDA_SM90=0: the sm80 family on
Hopper); adds its Flash TFLOP/s and flash/base columns.
"""
import argparse
import json


def load(p):
    with open(p) as f:
        return json.load(f)


def key(r):
    return (r["D"], r["N"], bool(r["causal"]))


def fmt(x, nd=0):
    return "-" if x is None or x < 0 else f"{x:.{nd}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("peers")
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--note", default="")
    ap.add_argument("--base", default=None)
    ap.add_argument("--base-name", default="sm80")
    a = ap.parse_args()
    ours, peers = load(a.ours), load(a.peers)
    pk = {key(r): r for r in peers["rows"]}
    bk = {key(r): r for r in load(a.base)["rows"]} if a.base else {}
    rows = []
    for r in ours["rows"]:
        p = pk.get(key(r), {})
        fl, ft = r["flash_tflops"], r["flat_tflops"]
        best = max(x for x in (fl, ft) if x is not None) if (fl or ft) else -1
        faster = "flat" if ft is not None and ft > 0 and ft > fl else "flash"
        picked = r["auto_dataflow"]
        picked_tf = ft if picked == "flat" else fl
        fa2, cud, eff = p.get("fa2_fwd"), p.get("cudnn_fwd"), p.get("eff_fwd")
        base = bk.get(key(r), {}).get("flash_tflops")
        rows.append(dict(r, fa2=fa2, cudnn=cud, eff=eff, faster=faster, best=best, picked_tflops=picked_tf,
                         base_flash=base, flash_vs_base=(fl / base) if base and base > 0 and fl > 0 else None,
                         planner_ok=(picked == faster) if ft is not None and ft > 0 else (picked == "flash"),
                         flash_vs_fa2=(fl / fa2) if fa2 and fl > 0 else None,
                         flash_vs_cudnn=(fl / cud) if cud and fl > 0 else None,
                         flat_vs_flash=(ft / fl) if ft is not None and ft > 0 and fl > 0 else None))
    both = [r for r in rows if r["flat_vs_flash"] is not None]
    planner_hits = sum(r["planner_ok"] for r in rows)
    gate = [r for r in rows if r["N"] >= 1024 and r["D"] in (64, 128) and r["flash_vs_fa2"] is not None]
    meta = {k: ours.get(k) for k in ("device", "sms", "driver", "cuda_runtime", "commit", "date")}
    meta.update(torch=peers.get("torch"), cudnn=peers.get("cudnn"), gemm_bf16_tflops=peers.get("gemm_bf16_tflops"),
                copy_TBps=peers.get("copy_TBps"))
    summary = dict(
        planner_picks_faster=f"{planner_hits}/{len(rows)}",
        gate_rows=len(gate),
        gate_min_ratio_vs_fa2=min((r["flash_vs_fa2"] for r in gate), default=None),
        gate_rows_at_or_above_1=sum(r["flash_vs_fa2"] >= 1.0 for r in gate),
        flat_faster_points=[(r["D"], r["N"], r["causal"], round(r["flat_vs_flash"], 3)) for r in both
                            if r["flat_vs_flash"] > 1.0])
    with open(a.prefix + ".json", "w") as f:
        json.dump(dict(meta=meta, summary=summary, rows=rows), f, indent=1)

    L = []
    L.append(f"# CUDA forward vs PyTorch SDPA backends, one run ({meta['device']})\n")
    L.append(f"Device {meta['device']} ({meta['sms']} SMs), driver {meta['driver']}, CUDA runtime "
             f"{meta['cuda_runtime']}, torch {meta['torch']}, cuDNN {meta['cudnn']}; commit {meta['commit']}; "
             f"{meta['date']}. Ceilings in the same run: cuBLAS bf16 GEMM {fmt(meta['gemm_bf16_tflops'])} TFLOP/s, "
             f"device copy {fmt(meta['copy_TBps'], 2)} TB/s.\n")
    L.append("bf16, B*N = 16k tokens, Hq*D = 2048, (B, H, N, D) tensors; TFLOP/s = 4*B*H*N^2*D / time (halved "
             "for causal). `flash`/`flat` = our kernels forced; `fa2` = SDPA flash backend (FlashAttention-2), "
             "`cudnn`, `eff` = memory-efficient. `auto` = what our planner picked. Medians of many calls "
             "(ours: CUDA events, 30 calls; peers: triton do_bench).\n")
    if a.note:
        L.append(a.note + "\n")
    bn = a.base_name
    L.append("| D | N | causal | flash | flat | fa2 | cudnn | eff | flash/fa2 | flash/cudnn | flat/flash | auto |" +
             (f" {bn} | flash/{bn} |" if bk else ""))
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if bk else ""))
    for r in rows:
        L.append(f"| {r['D']} | {r['N']} | {'y' if r['causal'] else 'n'} | {fmt(r['flash_tflops'])} | "
                 f"{fmt(r['flat_tflops'])} | {fmt(r['fa2'])} | {fmt(r['cudnn'])} | {fmt(r['eff'])} | "
                 f"{fmt(r['flash_vs_fa2'], 2)} | {fmt(r['flash_vs_cudnn'], 2)} | {fmt(r['flat_vs_flash'], 2)} | "
                 f"{r['auto_dataflow']}{'' if r['planner_ok'] else ' (slower)'} |" +
                 (f" {fmt(r['base_flash'])} | {fmt(r['flash_vs_base'], 2)} |" if bk else ""))
    L.append("")
    L.append(f"Planner picked the faster kernel on {summary['planner_picks_faster']} grid points. "
             f"Gate (N >= 1k, D = 64/128): {summary['gate_rows_at_or_above_1']}/{summary['gate_rows']} points at "
             f">= 1.0x FA2, minimum {fmt(summary['gate_min_ratio_vs_fa2'], 2)}x.")
    L.append(f"FLAT faster than Flash at: {summary['flat_faster_points'] or 'no point'}.")
    with open(a.prefix + ".md", "w") as f:
        f.write("\n".join(L) + "\n")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        ds = sorted({r["D"] for r in rows})
        fig, axes = plt.subplots(2, len(ds), figsize=(5 * len(ds), 8), squeeze=False)
        for j, d in enumerate(ds):
            for i, causal in enumerate((False, True)):
                ax = axes[i][j]
                sel = sorted((r for r in rows if r["D"] == d and bool(r["causal"]) == causal), key=lambda r: r["N"])
                xs = [r["N"] for r in sel]
                for name, field, style in (("flatattn flash", "flash_tflops", "o-"), ("flatattn flat", "flat_tflops", "s-"),
                                           ("SDPA FA2", "fa2", "^--"), ("cuDNN", "cudnn", "v--"), ("mem-eff", "eff", "x:")):
                    ys = [r[field] if r[field] is not None and r[field] > 0 else float("nan") for r in sel]
                    ax.plot(xs, ys, style, label=name)
                if meta["gemm_bf16_tflops"]:
                    ax.axhline(meta["gemm_bf16_tflops"], color="gray", lw=0.8, ls="-.", label="cuBLAS GEMM")
                ax.set_xscale("log", base=2)
                ax.set_title(f"D={d} {'causal' if causal else 'non-causal'}")
                ax.set_xlabel("N")
                ax.set_ylabel("TFLOP/s")
                ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"flatattn forward vs SDPA backends, bf16, {meta['device']}, {meta['date']}")
        fig.tight_layout()
        fig.savefig(a.prefix + ".png", dpi=90)
    except ImportError:
        print("matplotlib missing: no PNG")
    print("\n".join(L[-2:]))


if __name__ == "__main__":
    main()
