r"""Context-parallel ring attention on several GPUs (NCCL) vs single-GPU flatattn on the same local work
(issue 19's "Done when"). Written for the multi-GPU machine; run with torchrun, one process per GPU:

    torchrun --standalone --nproc_per_node=W bench/context_parallel.py throughput \
        [--tokens-per-gpu 8192,32768] [--json F]
    torchrun --standalone --nproc_per_node=8 bench/context_parallel.py million

throughput: causal (zigzag) and non-causal (contiguous) ring_attention fwd+bwd, bf16, B=1, Hq=32, Hkv=8 (GQA),
D=128 (--heads/--kv-heads/--head-dim), n tokens per GPU. Per-GPU throughput = the FLOPs of this rank's share
of the full-sequence attention (visible pairs × 4·D·Hq × 3.5, docs/design.md) / the slowest rank's median time
(CUDA events, after warm-up, a barrier before each timed call). The single-GPU baseline runs flatattn fwd+bwd on ONE GPU on a problem
with the same FLOPs and mask kind: non-causal, n queries against W·n keys (exactly one rank's pairs); causal, a
causal square sequence of L = n·√W tokens (rounded to 128; L²/2 = W·n²/2 pairs). Ratio = ring / baseline
TFLOP/s; the targets are >= 0.92 causal and >= 0.95 non-causal. Rank 0 prints one line per case and writes --json.

million: a 1M-token causal fwd+bwd (8 GPUs, H = 8, D = 128, bf16, zigzag, n = 131072 per GPU) against a chunked
single-GPU-style reference each rank computes for its own two query chunks with flatattn (chunk [g, g+c) of q
against keys [0, g+c), causal bottom-right), dK/dV from the reference backward summed over ranks (all_reduce).
Prints max and relative (Frobenius) errors of out, dq, dk, dv and asserts rel <= 2e-2 (bf16); the reference is
bf16 flatattn itself, not the fp64 oracle (1M tokens: too large), so this checks the ring's exactness at scale, not
the kernels.

Environment: NCCL; NVLink multicast off (NCCL_NVLS_ENABLE=0, as the device docs require). Nothing here has run
yet (written on a CPU-only machine, 2026-12-06).
"""

from __future__ import annotations

import argparse
import json
import math
import os

import torch
import torch.distributed as dist

from flatattn import torch_ops
import flatattn.distributed as cp


DEV = "cuda"


def _init(smoke):
    global DEV
    if smoke:  # a CPU dry run of the script's plumbing (gloo, float32, tiny shapes): no numbers to report
        DEV = "cpu"
        dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size()
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    return rank, world


def _median_ms(fn, iters, barrier):
    """Median ms of fn() over iters runs (CUDA events; perf_counter on the CPU), each after a barrier."""
    import time

    times = []
    for _ in range(iters):
        if barrier:
            dist.barrier()
        if DEV == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def _time(fn, iters=10, warmup=3):
    """The slowest rank's median ms of fn() (after warm-up)."""
    for _ in range(warmup):
        fn()
    if DEV == "cuda":
        torch.cuda.synchronize()
    ms = torch.tensor([_median_ms(fn, iters, True)], device=DEV)
    dist.all_reduce(ms, op=dist.ReduceOp.MAX)
    return float(ms)


def _fwd_bwd(attn, q, k, v, dout):
    def step():
        q.grad = k.grad = v.grad = None
        attn(q, k, v).backward(dout)
    return step


def throughput(args, rank, world):
    g = torch.Generator(device=DEV).manual_seed(1234 + rank)
    dtype = torch.bfloat16 if DEV == "cuda" else torch.float32
    rows = []
    for n in args.tokens_per_gpu:
        for causal in (True, False):
            layout = "zigzag" if causal else "contiguous"

            def r(tokens, h):
                return torch.randn(1, tokens, h, args.head_dim, device=DEV, generator=g).to(dtype)

            q, k, v, dout = r(n, args.heads), r(n, args.kv_heads), r(n, args.kv_heads), r(n, args.heads)
            for t in (q, k, v):
                t.requires_grad_()
            ring_ms = _time(_fwd_bwd(lambda q, k, v: cp.ring_attention(q, k, v, causal=causal, layout=layout),
                                     q, k, v, dout), args.iters)
            total = world * n
            pairs = (total * (total + 1) / 2 if causal else total * total) / world
            flops = 3.5 * 4 * args.head_dim * args.heads * pairs
            # single-GPU baseline on rank 0 only (the others wait at the barrier)
            base = torch.zeros(1, device=DEV)
            if rank == 0:
                if causal:
                    nq = nk = max(128, round(n * math.sqrt(world) / 128) * 128)
                    bpairs = nq * (nq + 1) / 2
                else:
                    nq, nk = n, world * n
                    bpairs = nq * nk
                bq, bk, bv, bd = r(nq, args.heads), r(nk, args.kv_heads), r(nk, args.kv_heads), r(nq, args.heads)
                for t in (bq, bk, bv):
                    t.requires_grad_()
                step = _fwd_bwd(lambda q, k, v: torch_ops.attention(q, k, v, causal=causal)[0], bq, bk, bv, bd)
                for _ in range(3):
                    step()
                ms = _median_ms(step, args.iters, False)
                base[0] = 3.5 * 4 * args.head_dim * args.heads * bpairs / (ms * 1e-3) / 1e12
            dist.barrier()
            dist.broadcast(base, 0)
            ring_tf = flops / (ring_ms * 1e-3) / 1e12
            row = dict(world=world, n_local=n, causal=causal, hq=args.heads, hkv=args.kv_heads, d=args.head_dim,
                       ring_ms=ring_ms, ring_tflops_per_gpu=ring_tf, single_tflops=float(base),
                       ratio=ring_tf / float(base),
                       target=0.92 if causal else 0.95,
                       device=torch.cuda.get_device_name() if DEV == "cuda" else "cpu (smoke run)")
            rows.append(row)
            if rank == 0:
                print(f"W={world} n={n} {'causal' if causal else 'full  '} ring {ring_ms:8.2f} ms "
                      f"{ring_tf:6.1f} TFLOP/s/GPU, single {float(base):6.1f} TFLOP/s, ratio {row['ratio']:.3f} "
                      f"(target {row['target']})", flush=True)
    if rank == 0 and args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def _rel(a, b):
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm().clamp_min(1e-30)), float((a - b).abs().max())


def million(args, rank, world):
    n_total, h, d = args.tokens, 8, args.head_dim
    n = n_total // world
    dtype = torch.bfloat16 if DEV == "cuda" else torch.float32
    g = torch.Generator(device=DEV).manual_seed(99)  # the same full tensors on every rank
    full = [torch.randn(1, n_total, h, d, device=DEV, generator=g).to(dtype) for _ in range(4)]
    q, k, v, dout = (cp.shard(t, rank, world, "zigzag") for t in full)
    for t in (q, k, v):
        t.requires_grad_()
    out = cp.ring_attention(q, k, v, causal=True)
    out.backward(dout)
    # chunked reference: this rank's two query chunks against their causal key prefixes
    c = n // 2
    ref_out, ref_dq = [], []
    dk = torch.zeros(1, n_total, h, d, device=DEV, dtype=torch.float32)
    dv = torch.zeros_like(dk)
    for chunk in (rank, 2 * world - 1 - rank):
        g0 = chunk * c
        qc = full[0][:, g0:g0 + c].detach().requires_grad_()
        kc = full[1][:, :g0 + c].detach().requires_grad_()
        vc = full[2][:, :g0 + c].detach().requires_grad_()
        o, _ = torch_ops.attention(qc, kc, vc, causal=True)  # bottom-right: the last query sees the last key
        o.backward(full[3][:, g0:g0 + c])
        ref_out.append(o.detach())
        ref_dq.append(qc.grad)
        dk[:, :g0 + c] += kc.grad.float()
        dv[:, :g0 + c] += vc.grad.float()
    dist.all_reduce(dk)
    dist.all_reduce(dv)
    errs = {"out": _rel(out, torch.cat(ref_out, 1)), "dq": _rel(q.grad, torch.cat(ref_dq, 1)),
            "dk": _rel(k.grad, cp.shard(dk, rank, world, "zigzag")),
            "dv": _rel(v.grad, cp.shard(dv, rank, world, "zigzag"))}
    worst = torch.tensor([max(e[0] for e in errs.values())], device=DEV)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    print(f"rank {rank}: " + ", ".join(f"{k} rel {e[0]:.2e} max {e[1]:.2e}" for k, e in errs.items()), flush=True)
    if rank == 0:
        print(f"{n_total}-token causal fwd+bwd on {world} ranks: worst relative error {float(worst):.2e} (limit 2e-2)")
    assert float(worst) <= 2e-2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("throughput", "million"))
    ap.add_argument("--tokens-per-gpu", type=lambda s: [int(x) for x in s.split(",")], default=[8192, 32768])
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=1 << 20, help="million: total sequence length")
    ap.add_argument("--json", default="")
    ap.add_argument("--smoke-cpu", action="store_true", help="dry run on the CPU with gloo (plumbing only)")
    args = ap.parse_args()
    rank, world = _init(args.smoke_cpu)
    try:
        (throughput if args.what == "throughput" else million)(args, rank, world)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
