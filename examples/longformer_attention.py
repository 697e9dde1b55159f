"""Hugging Face Longformer self-attention (Beltagy et al. 2020, Sec. 3.1) reproduced with two flatattn calls.

    pip install torch transformers
    python examples/longformer_attention.py --device all      # cpu, cuda or all (cuda skipped without a GPU)

A small `LongformerSelfAttention` (hidden 64, 4 heads of D = 16, attention_window 32, random weights, eval, no
dropout), batch 2 of 256 tokens with different global tokens per sequence (at the start, the middle and the end),
marked as `LongformerModel` hands them to the layer (attention_mask 0 local, +10000 global). flatattn computes:

  (a) every query row with the regular projections (query, key, value): the local band of attention_window / 2
      keys on each side plus the global keys, and the global rows over every key:
      `flatattn.forward(q, k, v, window=(w, w), global_positions=..., global_counts=...)`;
  (b) the global rows with the global projections (query_global over key_global / value_global) over all keys:
      a dense varlen call with each sequence's global rows as its queries.

The output is assembled as HF does: the global rows take (b)'s output, the others (a)'s. Scale 1 / sqrt(D), as
HF's `query /= sqrt(head_dim)`.

Check (docs/design.md's rule, exit status 1 when it fails): the oracle is the same two calls in fp64
(flatattn.reference, on the float32 projections); flatattn must be within 2 * max|yardstick - oracle| + floor +
1e-5 * max|oracle| of the oracle, with HF's own float32 output as the yardstick (and, separately, naive float32
attention). Printed: max|flatattn - HF| and the bound it implies (the rule's bound plus HF's own error).
On CUDA (f16 / bf16 kernels only) flatattn takes the projections rounded to bfloat16: the oracle is fp64 on the
rounded projections, the yardstick naive bfloat16 attention (see compare()).
Padding tokens (attention_mask 0) are not exercised here.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import torch

import flatattn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from rule import judge  # noqa: E402  (the Python port of the project's correctness rule)

# global tokens of each sequence (position 0 as a [CLS], question-like tokens in the middle, the last token)
GLOBALS = ((0, 1, 100), (0, 128, 129, 200, 255))


def make_layer(device, seed=0, hidden=64, heads=4, window=32, std=0.25):
    """An eval-mode LongformerSelfAttention with N(0, std) weights (large enough for peaked softmax rows)."""
    from transformers import LongformerConfig
    from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

    config = LongformerConfig(hidden_size=hidden, num_attention_heads=heads, attention_window=[window],
                              num_hidden_layers=1, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    layer = LongformerSelfAttention(config, layer_id=0)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, std)
    return layer.to(device).eval()


def hf_attention(layer, hidden_states, globals_):
    """HF's output (B, N, hidden): the layer called as LongformerModel calls it (mask 0 local, +10000 global)."""
    b, n, _ = hidden_states.shape
    mask = torch.zeros(b, n, device=hidden_states.device)
    for i, pos in enumerate(globals_):
        mask[i, list(pos)] = 10000.0
    with torch.no_grad():
        return layer(hidden_states, attention_mask=mask, is_index_masked=mask < 0, is_index_global_attn=mask > 0,
                     is_global_attn=True)[0]


def projections(layer, hidden_states, globals_):
    """The six projections as (B, N, H, D) float32 tensors, and the global positions as (B, G) int32 + counts."""
    b, n, e = hidden_states.shape
    h = layer.num_heads
    d = e // h
    with torch.no_grad():
        proj = {name: getattr(layer, name)(hidden_states).view(b, n, h, d)
                for name in ("query", "key", "value", "query_global", "key_global", "value_global")}
    g = max(len(p) for p in globals_)
    gp = torch.zeros(b, g, dtype=torch.int32)
    for i, pos in enumerate(globals_):
        gp[i, :len(pos)] = torch.tensor(pos, dtype=torch.int32)
    gc = torch.tensor([len(p) for p in globals_], dtype=torch.int32)
    dev = hidden_states.device
    return proj, gp.to(dev), gc.to(dev)


def two_calls(forward, proj, gp, gc, window, globals_):
    """Longformer attention from two calls of `forward` (flatattn.forward or flatattn.reference.forward):
    (a) local band + global keys/rows with the regular projections, (b) the global rows with the global ones."""
    q, k, v = proj["query"], proj["key"], proj["value"]
    b, n, h, d = q.shape
    scale = 1.0 / math.sqrt(d)
    w = window // 2
    out_a, _ = forward(q, k, v, softmax_scale=scale, window=(w, w), global_positions=gp, global_counts=gc)
    # (b): sequence i's global rows are the queries of varlen sequence i, over its n keys
    idx = [torch.tensor(pos, device=q.device, dtype=torch.long) for pos in globals_]
    qg = torch.cat([proj["query_global"][i].index_select(0, idx[i]) for i in range(b)]).contiguous()
    kg = proj["key_global"].reshape(b * n, h, d)
    vg = proj["value_global"].reshape(b * n, h, d)
    counts = [len(p) for p in globals_]
    cu_q = torch.tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.int32, device=q.device)
    cu_k = torch.arange(0, (b + 1) * n, n, dtype=torch.int32, device=q.device)
    out_b, _ = forward(qg, kg, vg, softmax_scale=scale, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                       max_seqlen_q=max(counts), max_seqlen_k=n)
    out = out_a.clone()
    for i in range(b):
        out[i].index_copy_(0, idx[i], out_b[int(cu_q[i]):int(cu_q[i + 1])].to(out.dtype))
    return out.reshape(b, n, h * d)


def _oracle(precision):
    def forward(q, k, v, max_seqlen_q=0, max_seqlen_k=0, **kw):
        cpu = {key: (x.cpu() if torch.is_tensor(x) else x) for key, x in kw.items()}
        return flatattn.reference.forward(q.cpu(), k.cpu(), v.cpu(), precision=precision, **cpu)
    return forward


def compare(device, seed=0, batch=2, seq_len=256, hidden=64, heads=4, window=32, globals_=GLOBALS, dtype=None):
    """Runs HF and flatattn on `device`; returns a dict of the verdicts and errors (see the module docstring).

    dtype: flatattn's input dtype (default float32 on the CPU, bfloat16 on CUDA, whose kernels take f16 / bf16 only).
    Below float32 the projections are rounded to it first; the oracle is fp64 on the rounded projections and the
    yardstick naive attention in that dtype (HF's float32 output saw unrounded projections, so it is no yardstick
    there); flatattn must then also be within that bound plus naive's own distance from HF, of HF."""
    dtype = dtype or (torch.float32 if device == "cpu" else torch.bfloat16)
    low = dtype != torch.float32
    layer = make_layer(device, seed, hidden, heads, window)
    gen = torch.Generator().manual_seed(seed + 1)
    hidden_states = torch.randn(batch, seq_len, hidden, generator=gen).to(device)
    out_hf = hf_attention(layer, hidden_states, globals_)
    proj, gp, gc = projections(layer, hidden_states, globals_)
    proj = {name: x.to(dtype) for name, x in proj.items()}
    out_fa = two_calls(flatattn.forward, proj, gp, gc, window, globals_)
    cpu_proj = {name: x.cpu() for name, x in proj.items()}
    ref = two_calls(_oracle("f64"), cpu_proj, gp.cpu(), gc.cpu(), window, globals_)
    naive = two_calls(_oracle("input"), cpu_proj, gp.cpu(), gc.cpu(), window, globals_)
    rule_dtype = str(dtype).replace("torch.", "")
    v_naive = judge(out_fa, ref, naive, rule_dtype)  # naive attention in the input dtype as the yardstick
    diff = float((out_fa.cpu().double() - out_hf.cpu().double()).abs().max())
    if low:
        naive_hf = float((naive.double() - out_hf.cpu().double()).abs().max())
        bound = v_naive.bound + v_naive.naive_err + naive_hf
        return dict(device=device, dtype=rule_dtype, diff=diff, bound=bound, hf=None, naive=v_naive,
                    passed=v_naive.passed and diff <= bound)
    v_hf = judge(out_fa, ref, out_hf, "float32")  # HF's float32 output as the yardstick
    hf_err = v_hf.naive_err
    return dict(device=device, dtype=rule_dtype, diff=diff, bound=v_hf.bound + hf_err, hf=v_hf, naive=v_naive,
                passed=v_hf.passed and v_naive.passed and diff <= v_hf.bound + hf_err)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    ok = True
    for dev in devices:
        if dev == "cuda" and not (torch.cuda.is_available() and flatattn.cuda_built()):
            if args.device == "cuda":
                print("cuda: no GPU or flatattn built without CUDA", file=sys.stderr)
                return 1
            print("cuda: skipped (no GPU or flatattn built without CUDA)")
            continue
        r = compare(dev, seed=args.seed)
        print(f"{dev} ({r['dtype']}): max|flatattn - HF| = {r['diff']:.3g} <= bound {r['bound']:.3g} "
              f"(rule vs the fp64 oracle, HF as yardstick: {r['hf']}; naive {r['dtype']} as yardstick: {r['naive']}) "
              f"{'PASS' if r['passed'] else 'FAIL'}")
        ok &= r["passed"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
