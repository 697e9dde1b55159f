#!/usr/bin/env python3
"""Peers of block-sparse attention (issue 16): PyTorch FlexAttention (torch.compile(flex_attention)) and SDPA
with the equivalent boolean mask, on the masks the issue names, measured in one run. Prints one row per
(mask, N) and writes JSON to $OUT/peers_flex.json when OUT is set.

Masks (element predicates; FlexAttention evaluates them as mask_mod, SDPA gets them materialized):
  causal          j <= i
  sliding1024     causal and i - j < 1024
  document8       8 documents of random lengths (fixed seed) packed in one sequence: doc(i) == doc(j)
  longformer      |i - j| <= 256 (window 512) or i or j among 16 global tokens (the first 16 positions)
  random50/25/10  a random 128 x 128 block pattern at that density (all elements of a listed block visible)

TFLOP/s are counted on the visible elements (exact count of the mask): fwd 4 * visible * D * B * H, fwd+bwd
3.5x that (the FlashAttention papers' 2.5x for the backward). Each timing also records the peak memory one call
allocates beyond the live tensors (`*_peak_mib`): issue 16 asks that Longformer's (window 512 + 16 global, D = 64:
FLEX_D=64 FLEX_MASKS=longformer) grow linearly in N. When the flatattn package offers
flatattn.flex_attention (issue 16, step 5) it is measured on the same BlockMask too.

Environment: FLEX_N (comma list, default 4096,8192,16384,32768), FLEX_D (default 128), FLEX_H (default 16),
FLEX_MASKS (comma list, default all), FLEX_SDPA_MAX_N (largest N for the SDPA boolean-mask baseline, default
16384: its N x N mask is materialized), FLEX_MODES (fwd,fwdbwd).
"""
import json
import os
import sys

import torch
import torch._dynamo
import triton
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

BLOCK = 128


def bench(fn):
    return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")  # ms


def dump(res):
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "peers_flex.json"), "w") as f:
            json.dump(res, f, indent=1)


def make_mask_mod(name, n, device):
    """The mask's element predicate (b, h, q_idx, kv_idx) -> bool, vectorized over tensors."""
    if name == "causal":
        return lambda b, h, q, kv: q >= kv
    if name == "sliding1024":
        return lambda b, h, q, kv: (q >= kv) & (q - kv < 1024)
    if name == "document8":
        g = torch.Generator().manual_seed(8)
        cuts = torch.sort(torch.randperm(n - 1, generator=g)[:7] + 1).values
        lengths = torch.diff(torch.cat([torch.tensor([0]), cuts, torch.tensor([n])]))
        doc = torch.repeat_interleave(torch.arange(8), lengths).to(device)
        return lambda b, h, q, kv: doc[q] == doc[kv]
    if name == "longformer":
        glob = torch.zeros(n, dtype=torch.bool, device=device)
        glob[:16] = True
        return lambda b, h, q, kv: ((q - kv).abs() <= 256) | glob[q] | glob[kv]
    if name.startswith("random"):
        density = int(name[len("random"):]) / 100.0
        nb = (n + BLOCK - 1) // BLOCK
        g = torch.Generator().manual_seed(nb * 1000 + int(density * 100))
        blocks = (torch.rand(nb, nb, generator=g) < density).to(device)
        return lambda b, h, q, kv: blocks[q // BLOCK, kv // BLOCK]
    raise ValueError(f"unknown mask {name}")


def peak_mib(fn, no_grad):
    """Peak memory one call allocates beyond what is live before it (MiB): the step's working set, so that the
    issue's "Longformer memory linear in N" reads off the rows of one mask over N."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    if no_grad:
        with torch.no_grad():
            fn()
    else:
        fn()
    torch.cuda.synchronize()
    return round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)


def visible_count(mask_mod, n, device):
    """Exact number of visible (i, j) pairs, evaluated in row chunks on the GPU."""
    total = 0
    kv = torch.arange(n, device=device)
    for r0 in range(0, n, 1024):
        q = torch.arange(r0, min(n, r0 + 1024), device=device)[:, None]
        total += int(mask_mod(0, 0, q, kv[None, :]).sum())
    return total


def dense_mask(mask_mod, n, device):
    q = torch.arange(n, device=device)[:, None]
    kv = torch.arange(n, device=device)[None, :]
    return mask_mod(0, 0, q, kv)


def main():
    masks = os.environ.get("FLEX_MASKS", "causal,sliding1024,document8,longformer,random50,random25,random10").split(",")
    ns = [int(x) for x in os.environ.get("FLEX_N", "4096,8192,16384,32768").split(",")]
    D = int(os.environ.get("FLEX_D", "128"))
    H = int(os.environ.get("FLEX_H", "16"))
    sdpa_max_n = int(os.environ.get("FLEX_SDPA_MAX_N", "16384"))
    modes = os.environ.get("FLEX_MODES", "fwd,fwdbwd").split(",")
    dev = torch.cuda.get_device_properties(0)
    res = {"device": dev.name, "torch": torch.__version__, "D": D, "H": H, "block": BLOCK, "rows": []}
    print({k: v for k, v in res.items() if k != "rows"}, flush=True)
    # Every (mask, N) is a new BlockMask with its own mask_mod: a recompile each. Past dynamo's default cache size
    # limit (8) the calls fall back to eager FlexAttention silently, at a few TFLOP/s (stop 30's first run).
    torch._dynamo.config.cache_size_limit = 1024
    if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
        torch._dynamo.config.accumulated_cache_size_limit = 1 << 16
    compiled = torch.compile(flex_attention, dynamic=False)
    try:
        import flatattn  # noqa: F401
        ours = getattr(flatattn, "flex_attention", None)
    except ImportError:
        ours = None
    for N in ns:
        B = 1
        q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        do = torch.randn_like(q)
        for name in masks:
            mm = make_mask_mod(name, N, "cuda")
            visible = visible_count(mm, N, "cuda")
            fl = 4.0 * visible * D * B * H
            row = {"mask": name, "N": N, "B": B, "H": H, "D": D, "density": visible / (N * N)}
            bm = create_block_mask(mm, B=None, H=None, Q_LEN=N, KV_LEN=N, device="cuda", BLOCK_SIZE=BLOCK)
            row["block_density"] = float(bm.sparsity()) if hasattr(bm, "sparsity") else None
            runs = {"flex": lambda: compiled(q, k, v, block_mask=bm)}
            if ours is not None:
                runs["flatattn"] = lambda: ours(q, k, v, block_mask=bm)
            if N <= sdpa_max_n:
                am = dense_mask(mm, N, "cuda")
                runs["sdpa_mask"] = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=am)
            for who, fn in runs.items():
                for mode in modes:
                    key = f"{who}_{mode}"
                    try:
                        if mode == "fwd":
                            with torch.no_grad():
                                ms = bench(fn)
                            row[key] = round(fl / ms / 1e9, 1)
                        else:
                            def step():
                                fn().backward(do)
                            ms = bench(step)
                            row[key] = round(3.5 * fl / ms / 1e9, 1)
                        row[key + "_ms"] = round(ms, 4)
                        row[key + "_peak_mib"] = peak_mib(fn if mode == "fwd" else step, mode == "fwd")
                    except Exception as e:  # an unsupported combination is recorded, not fatal
                        row[key] = None
                        row[key + "_error"] = f"{type(e).__name__}: {str(e)[:200]}"
                    q.grad = k.grad = v.grad = None
            res["rows"].append(row)
            print(row, flush=True)
            dump(res)  # after every row: a stage cut by its timeout keeps what it measured
            runs.clear()
            torch.cuda.empty_cache()
        del q, k, v, do
        torch.cuda.empty_cache()
    dump(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
