#!/usr/bin/env python3
"""Merges one device run's backward measurements: ours (bench_bwd JSON) and the peers
(peers_sdpa_bwd.py: SDPA flash = FlashAttention-2, cuDNN; its JSON, or its log of one dict per line),
both from the same run. Prints a markdown table (TFLOP/s and ratios) and writes <prefix>.json and,
when matplotlib is present, <prefix>.png.

    merge_bwd.py ours_bwd.json peers_bwd.json|peers.log --prefix bench/results/gpu-bwd-h100-run1 [--base ours_bwd_sm80.json]

--base: a second bench_bwd run of the same build on the same GPU (FLATATTN_CUDA_SM90=0: the sm80 family's
backward on Hopper); adds its backward TFLOP/s (default and deterministic) and the ours / base ratios.
"""
import argparse
import ast
import json


def load_peers(path):
    text = open(path).read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # the log: a header dict, then one row dict per line
        lines = [ast.literal_eval(s) for s in text.splitlines() if s.startswith("{")]
        return dict(lines[0], rows=[r for r in lines[1:] if "N" in r])


def ratio(a, b):
    return a / b if a and b and a > 0 and b > 0 else None


def fmt(x, nd=0):
    return "-" if x is None or x < 0 else f"{x:.{nd}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("peers")
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--base", default=None)
    ap.add_argument("--base-name", default="sm80")
    a = ap.parse_args()
    ours, peers = json.load(open(a.ours)), load_peers(a.peers)
    bk = {(r["D"], r["N"], bool(r["causal"])): r for r in json.load(open(a.base))["rows"]} if a.base else {}
    pk = {(r["D"], r["N"], bool(r["causal"])): r for r in peers["rows"]}
    rows = []
    for r in ours["rows"]:
        p = pk.get((r["D"], r["N"], bool(r["causal"])), {})
        b = bk.get((r["D"], r["N"], bool(r["causal"])), {})
        rows.append(dict(r, base_bwd=b.get("bwd_tflops"), base_det=b.get("bwd_det_tflops"),
                         base_fwdbwd=b.get("fwdbwd_tflops"), base_kernel=b.get("bwd_kernel"),
                         bwd_vs_base=ratio(r["bwd_tflops"], b.get("bwd_tflops")),
                         det_vs_base=ratio(r["bwd_det_tflops"], b.get("bwd_det_tflops")), fa2_bwd=p.get("fa2_bwd_tflops"), fa2_fwdbwd=p.get("fa2_fwdbwd_tflops"),
                         cudnn_bwd=p.get("cudnn_bwd_tflops"), cudnn_fwdbwd=p.get("cudnn_fwdbwd_tflops"),
                         bwd_vs_fa2=ratio(r["bwd_tflops"], p.get("fa2_bwd_tflops")),
                         fb_vs_fa2=ratio(r["fwdbwd_tflops"], p.get("fa2_fwdbwd_tflops")),
                         bwd_vs_cudnn=ratio(r["bwd_tflops"], p.get("cudnn_bwd_tflops")),
                         fb_vs_cudnn=ratio(r["fwdbwd_tflops"], p.get("cudnn_fwdbwd_tflops")),
                         det_cost=(r["bwd_det_ms"] / r["bwd_ms"] - 1) if r["bwd_ms"] > 0 and r["bwd_det_ms"] > 0 else None))
    meta = {k: ours.get(k) for k in ("device", "sms", "driver", "cuda_runtime", "commit", "date")}
    meta.update(torch=peers.get("torch"), cudnn=peers.get("cudnn"))
    print(f"device {meta['device']}, driver {meta['driver']}, CUDA runtime {meta['cuda_runtime']}, commit "
          f"{meta['commit']}, {meta['date']}; torch {meta['torch']}, cuDNN {meta['cudnn']}\n")
    kernels = sorted({r.get("bwd_kernel", "") for r in rows})
    print("ours: " + ", ".join(kernels) + (f"; base ({a.base_name}): " + ", ".join(sorted(
        {r["base_kernel"] or "" for r in rows})) if bk else "") + "\n")
    bn = a.base_name
    print("| D | N | causal | B | ours fwd | ours bwd | ours fwd+bwd | ours bwd det | FA2 bwd | FA2 fwd+bwd | "
          "cuDNN bwd | cuDNN fwd+bwd | bwd / FA2 | fwd+bwd / FA2 | bwd / cuDNN | fwd+bwd / cuDNN | det cost |" +
          (f" {bn} bwd | {bn} bwd det | bwd / {bn} | det / {bn} |" if bk else ""))
    print("|" + "---|" * (21 if bk else 17))
    for r in rows:
        det = "-" if r["det_cost"] is None else f"{100 * r['det_cost']:+.0f}%"
        print(f"| {r['D']} | {r['N']} | {'yes' if r['causal'] else 'no'} | {r['B']} | {fmt(r['fwd_tflops'])} | "
              f"{fmt(r['bwd_tflops'])} | {fmt(r['fwdbwd_tflops'])} | {fmt(r['bwd_det_tflops'])} | {fmt(r['fa2_bwd'])} | "
              f"{fmt(r['fa2_fwdbwd'])} | {fmt(r['cudnn_bwd'])} | {fmt(r['cudnn_fwdbwd'])} | {fmt(r['bwd_vs_fa2'], 2)} | "
              f"{fmt(r['fb_vs_fa2'], 2)} | {fmt(r['bwd_vs_cudnn'], 2)} | {fmt(r['fb_vs_cudnn'], 2)} | "
              f"{det} |" + (f" {fmt(r['base_bwd'])} | {fmt(r['base_det'])} | {fmt(r['bwd_vs_base'], 2)} | "
                            f"{fmt(r['det_vs_base'], 2)} |" if bk else ""))
    json.dump({"meta": meta, "rows": rows}, open(a.prefix + ".json", "w"), indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharey=True)
    for ax, (d, causal) in zip(axes, [(64, False), (64, True), (128, False), (128, True)]):
        sel = [r for r in rows if r["D"] == d and r["causal"] == causal]
        ns = [r["N"] for r in sel]
        for k, label in (("fwdbwd_tflops", "ours"), ("fa2_fwdbwd", "SDPA flash (FA2)"), ("cudnn_fwdbwd", "cuDNN")):
            ax.plot(ns, [r[k] or 0 for r in sel], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_title(f"fwd+bwd, D={d}{', causal' if causal else ''}")
        ax.set_xlabel("N")
    axes[0].set_ylabel("TFLOP/s (bf16)")
    axes[0].legend()
    fig.suptitle(f"{meta['device']}: forward + backward, B*N = 16k, Hq = 16 (commit {meta['commit']})")
    fig.tight_layout()
    fig.savefig(a.prefix + ".png", dpi=110)


if __name__ == "__main__":
    main()
