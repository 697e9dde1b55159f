"""Call overhead of flatattn's Python/PyTorch paths over the C++ entry point, at B=1, N=128, H=8, D=64.

    python bench/python_overhead.py --device cpu          # float32
    python bench/python_overhead.py --device cuda         # bfloat16, on torch's current stream

Paths, each timed as host seconds per call (median of --rounds rounds of --calls back-to-back calls):
  cxx        flatattn::forward called in a C++ loop (flatattn._C._time_forward): the baseline
  binding    flatattn._C.forward from Python with preallocated outputs (DLPack capsules made per call)
  op         torch.ops.flatattn.fwd (the custom op: dispatcher, out/lse allocation, capsules, stream lookup)
  fa         flatattn.flash_attn_func (the FlashAttention-compatible wrapper over the op), no grad
  fa_grad    flash_attn_func with inputs that require grad (autograd node recorded)
  sdpa       torch.nn.functional.scaled_dot_product_attention on the same data, for context
Added overhead = path - cxx. Goal: op - cxx <= 10 us. A second problem with B=0 (no work at all) isolates the
pure call path from the kernel's own time. On CUDA, calls are asynchronous: the host time is what a small
kernel adds when the GPU keeps up (the 'synced' column includes draining the queue).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import subprocess
import time

import torch

import flatattn
from flatattn import _C, torch_ops

OPTS = (None, False, False, -1, -1, 0.0, False, "auto", 0)


def per_call(fn, calls, rounds, cuda):
    host, synced = [], []
    for _ in range(rounds):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        t1 = time.perf_counter()
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        host.append((t1 - t0) / calls)
        synced.append((t2 - t0) / calls)
    return statistics.median(host), statistics.median(synced)


def measure(device, batch, calls, rounds):
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    cuda = device == "cuda"
    q, k, v = (torch.randn(batch, 128, 8, 64, device=device, dtype=dtype) for _ in range(3))
    out = torch.empty_like(q)
    lse = torch.empty(batch, 8, 128, device=device, dtype=torch.float32)
    cap = torch_ops._capsule
    stream = torch._C._cuda_getCurrentRawStream(q.device.index) if cuda else 0
    threads = torch.get_num_threads() if device == "cpu" else 0
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    qs, ks, vs = (t.transpose(1, 2) for t in (q, k, v))

    def cxx():
        return _C._time_forward(cap(q), cap(k), cap(v), cap(out), cap(lse), None, False, "auto", threads, stream,
                                calls)

    paths = {
        "binding": lambda: _C.forward(cap(q), cap(k), cap(v), cap(out), cap(lse), None, None, 0, 0, None, False,
                                      False, -1, -1, 0.0, "auto", threads, stream),
        "op": lambda: torch.ops.flatattn.fwd.default(q, k, v, *OPTS),
        "fa": lambda: flatattn.flash_attn_func(q, k, v),
        "fa_grad": lambda: flatattn.flash_attn_func(qg, kg, vg),
        "sdpa": lambda: torch.nn.functional.scaled_dot_product_attention(qs, ks, vs),
    }
    for fn in paths.values():  # warm-up
        for _ in range(20):
            fn()
    cxx()
    res = {}
    with torch.no_grad():
        for name, fn in paths.items():
            if name == "fa_grad":
                continue
            res[name] = per_call(fn, calls, rounds, cuda)
    res["fa_grad"] = per_call(paths["fa_grad"], calls, rounds, cuda)
    cxx_host = []
    for _ in range(rounds):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        times = cxx()
        if cuda:
            torch.cuda.synchronize()
        cxx_host.append((statistics.median(times), (time.perf_counter() - t0) / calls))
    res["cxx"] = (statistics.median(h for h, _ in cxx_host), statistics.median(s for _, s in cxx_host))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batches", default="1,0", help="batch sizes to measure (0: the no-work problem)")
    ap.add_argument("--note", default="", help="free text stored with the results (what engine, what load)")
    ap.add_argument("--out", default=None, help="JSON file (default: bench/results/python_overhead_<device>.json)")
    args = ap.parse_args()
    info = {"device": args.device, "torch": torch.__version__, "flatattn": flatattn.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "torch_threads": torch.get_num_threads(), "note": args.note}
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        cwd=pathlib.Path(__file__).parent).stdout.strip()
    except OSError:
        pass
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    else:
        try:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                               if line.startswith("model name"))
        except (OSError, StopIteration):
            info["cpu"] = platform.processor()
    results = {}
    for batch in (int(b) for b in args.batches.split(",")):
        r = measure(args.device, batch, args.calls, args.rounds)
        base = r["cxx"][0]
        label = f"B={batch} N=128 H=8 D=64" + (" (no work)" if batch == 0 else "")
        print(f"{label}, {args.device}: host us/call (synced)   added over cxx")
        for name in ("cxx", "binding", "op", "fa", "fa_grad", "sdpa"):
            h, s = r[name]
            added = "" if name in ("cxx", "sdpa") else f"{(h - base) * 1e6:+8.2f}"
            print(f"  {name:8s} {h * 1e6:10.2f} ({s * 1e6:9.2f})   {added}")
        results[f"B{batch}"] = {name: {"host_us": h * 1e6, "synced_us": s * 1e6} for name, (h, s) in r.items()}
        results[f"B{batch}"]["op_added_us"] = (r["op"][0] - base) * 1e6
    out = pathlib.Path(args.out) if args.out else (
        pathlib.Path(__file__).parent / "results" / f"python_overhead_{args.device}.json")
    out.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    summary = ", ".join(f"{k}: {v['op_added_us']:.2f} us" for k, v in results.items())
    print(f"op added overhead over the C++ entry: {summary} (goal <= 10 us); wrote {out}")


if __name__ == "__main__":
    main()
