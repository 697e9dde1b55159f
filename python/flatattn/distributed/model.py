"""Predicted efficiency of ring attention: per hop, the compute of one (query shard, key shard) block against
the time to pass one K/V shard (and, in the backward, one fp32 dK/dV accumulator) to the next rank.

    hop time      = max(compute, transfer) + merge   (the transfer of the next shard is overlapped)
    compute       = FLOPs of the hop's blocks / rate + launch · calls
    transfer      = bytes sent per hop / (link GB/s · link efficiency)
    efficiency    = (FLOPs of this rank's share of the full sequence / rate) / Σ hop times

FLOPs are counted as docs/design.md counts them (4·D·Hq per visible (query, key) pair forward, 2.5× that
backward). The rate is the attention main loop's modelled rate on the GPU: tensor TFLOP/s × mma_efficiency of
the kernel path in data/model/hardware/<hw>.json (the planner's calibration, src/model/hardware.h); the same
rate serves the single-GPU baseline, so the efficiency isolates communication and merge costs (a single-GPU run
of the same local work at the same rate is the issue's yardstick). Link: NVLink 4 gives 450 GB/s per direction
per H100 SXM GPU (NVIDIA H100 datasheet: 900 GB/s bidirectional); link_efficiency (default 0.8) is an
assumption, not a measurement: replace both with measured P2P numbers (nccl-tests sendrecv_perf) when known.

Usage: ``python -m flatattn.distributed.model`` prints world sizes 2/4/8, 8k and 32k tokens per GPU, causal
and not; ``--help`` for the knobs.
"""

from __future__ import annotations

import json
import os

__all__ = ["load_gpu", "predict", "table"]

_BYTES = {"bf16": 2, "f16": 2, "f32": 4}


def _hardware_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    real = os.path.dirname(os.path.realpath(__file__))
    for d in (os.path.join(here, "..", "share", "flatattn", "model", "hardware"),  # installed package
              os.path.join(real, "..", "..", "..", "data", "model", "hardware")):  # source tree
        if os.path.isdir(d):
            return os.path.normpath(d)
    raise FileNotFoundError("flatattn: data/model/hardware not found (install the package or run from the tree)")


def load_gpu(hw="h100", path=None):
    """(rate FLOP/s, launch seconds, HBM bytes/s) of preset `hw` (or a JSON file): tensor bf16 TFLOP/s ×
    mma_efficiency of `path` (default: 'sm90' where the file has it, else its default_path)."""
    f = hw if hw.endswith(".json") else os.path.join(_hardware_dir(), hw + ".json")
    with open(f) as fh:
        h = json.load(fh)
    paths = h.get("paths", {})
    path = path or ("sm90" if "sm90" in paths else h.get("default_path", "sm80"))
    eff = paths.get(path, {}).get("mma_efficiency", 0.6)
    return h["tensor_tflops"]["bf16"] * 1e12 * eff, h.get("launch_us", 5.0) * 1e-6, h["hbm_gbps"] * 1e9


def _pairs_per_hop(world, n, causal):
    """Visible (query, key) pairs of each hop of one rank (zigzag when causal: every hop holds n²/2; hop 0 is the
    own shard under the causal mask, n²/2 plus the diagonal, taken as n²/2)."""
    return [n * n / 2 if causal else n * n] * world


def predict(world, n_local, causal, *, batch=1, hq=32, hkv=8, d=128, dtype="bf16", hw="h100", link_gbps=450.0,
            link_efficiency=0.8, backward=True):
    """Predicted per-hop and total times (seconds) and efficiency of one ring_attention call (forward, plus
    backward when `backward`) of `n_local` tokens per rank on `world` ranks."""
    rate, launch, hbm = load_gpu(hw)
    eb = _BYTES[dtype]
    link = link_gbps * 1e9 * link_efficiency
    kv_bytes = 2 * batch * n_local * hkv * d * eb
    dkv_bytes = 2 * batch * n_local * hkv * d * 4
    calls = 1  # zigzag and contiguous layouts fuse each hop into one call (plan_hop)
    fwd = bwd = 0.0
    comp_total = 0.0
    worst = 0.0
    for t, pairs in enumerate(_pairs_per_hop(world, n_local, causal)):
        flops = 4 * d * hq * pairs * batch
        rows = n_local / 2 if causal and t > 0 else n_local
        merge = batch * rows * hq * d * 18 / hbm  # fp32 acc read+write, partial read, weights (bytes per element)
        cf = flops / rate + launch * calls
        send = kv_bytes if t + 1 < world else 0.0
        fwd += max(cf, send / link) + merge
        comp_total += flops / rate
        worst = max(worst, send / link / cf if cf else 0.0)
        if backward:
            cb = 2.5 * flops / rate + launch * calls
            bsend = (kv_bytes if t + 1 < world else 0.0) + dkv_bytes
            bwd += max(cb, bsend / link) + batch * rows * hq * d * 4 * 2 / hbm  # dQ fp32 accumulate
            comp_total += 2.5 * flops / rate
            worst = max(worst, bsend / link / cb)
    total = fwd + bwd
    return {"world": world, "n_local": n_local, "causal": causal, "fwd_s": fwd, "bwd_s": bwd, "total_s": total,
            "ideal_s": comp_total, "efficiency": comp_total / total, "link_over_compute": worst}


def table(worlds=(2, 4, 8), n_locals=(8192, 32768), **kw):
    rows = []
    for causal in (True, False):
        for n in n_locals:
            for w in worlds:
                rows.append(predict(w, n, causal, **kw))
    return rows


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(prog="python -m flatattn.distributed.model", description=__doc__.split("\n\n")[0])
    ap.add_argument("--hw", default="h100")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--hq", type=int, default=32)
    ap.add_argument("--hkv", type=int, default=8)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--link-gbps", type=float, default=450.0, help="per-direction link bandwidth, GB/s")
    ap.add_argument("--link-efficiency", type=float, default=0.8)
    ap.add_argument("--forward-only", action="store_true")
    a = ap.parse_args(argv)
    kw = dict(batch=a.batch, hq=a.hq, hkv=a.hkv, d=a.d, hw=a.hw, link_gbps=a.link_gbps,
              link_efficiency=a.link_efficiency, backward=not a.forward_only)
    print(f"ring attention on {a.hw}: B={a.batch} Hq={a.hq} Hkv={a.hkv} D={a.d} bf16, link {a.link_gbps:g} GB/s x "
          f"{a.link_efficiency:g}, {'fwd' if a.forward_only else 'fwd+bwd'}")
    print(f"{'mask':<7} {'n/GPU':>6} {'W':>2} {'time':>9} {'ideal':>9} {'eff':>6} {'link/compute':>13}")
    for r in table(**kw):
        print(f"{'causal' if r['causal'] else 'full':<7} {r['n_local']:>6} {r['world']:>2} {r['total_s'] * 1e3:>7.2f}ms "
              f"{r['ideal_s'] * 1e3:>7.2f}ms {100 * r['efficiency']:>5.1f}% {r['link_over_compute']:>13.3f}")


if __name__ == "__main__":
    main()
