# flatattn's CPU engine vs PyTorch's CPU SDPA (torch.nn.functional.scaled_dot_product_attention on CPU
# tensors: PyTorch's own CPU flash kernel) on the same inputs and thread count, plus the machine's GEMM
# rates (torch.matmul bf16 and fp32 on the CPU: the library GEMM ceiling) measured in the same run.
# Issue 21's comparison. Writes JSON to $OUT/peers_torch_cpu.json (or ./peers_torch_cpu.json) and prints
# one line per cell.
#
# Each cell: median of REPS timed calls after WARMUP untimed ones, torch's and flatattn's calls alternating
# (interleaved in the same process, so both see the same load), flatattn and torch on the same tensors
# ((B, H, N, D) contiguous; flatattn reads them as strided (B, N, H, D) views, no copy), 1 and 2 threads
# by default (THREADS=1,2: torch.set_num_threads and flatattn's num_threads), bf16 and fp32 (DTYPES; f16 too),
# forward and fwd+bwd. fwd+bwd is torch autograd (sdpa, out.backward(dout)) against flatattn.forward then
# flatattn.backward (the native calls; autograd would add only Python overhead). The os load average is
# recorded with each cell: on a shared machine the numbers are noisy.
# Agreement: flatattn's out (and dq, dk, dv) against torch's, max |diff| / max(|torch|, 1) under a
# tolerance (bf16 3e-2, fp32 1e-3); both kernels are checked against the fp64 oracle elsewhere.
#
# Environment: SHAPES (comma list of names below, default gpt2,gpt2_causal,llama4k), THREADS, DTYPES,
# MODES (fwd,fwdbwd), REPS (3), WARMUP (1), CLOCK (wall | cpu: process CPU time), FLATATTN_CPU_MATMUL (auto|amx|fp32, read by flatattn); DTYPES may
# also name fp32_bf16: fp32 tensors with flatattn's fp32_matmul="bf16" (the opt-in) against torch's fp32 SDPA.
# DATAFLOW (auto | flash | flat: flatattn's dataflow, forced, for a planner check on another machine), GEMM_N
# (the GEMM rate's square size, default 2048), GEMM_DTYPES (the GEMM rates taken: default bf16 and fp32, plus f16
# when DTYPES names it: on a CPU without AVX512-FP16 or AMX-FP16 torch's f16 matmul is a scalar loop that takes
# minutes at 2048^3, seen on an AMD EPYC with AVX512-BF16 only).
# FLOPs as `flatattn run` counts them: fwd 4 B Hq Nq Nk D (causal: half), fwd+bwd 3.5x that.
# Run: LD_LIBRARY_PATH=/tmp/kvstubs /tmp/cpuvenv/bin/python bench/cpu/peers_torch_cpu.py
# Table: python bench/cpu/peers_torch_cpu.py --md peers_torch_cpu.json
import json, os, platform, statistics, subprocess, time

import torch
import torch.nn.functional as F
import flatattn

SHAPES = {  # name: (B, N, Hq, Hkv, D, causal) -- issue 21's shapes
    "gpt2": (8, 1024, 12, 12, 64, False),
    "gpt2_causal": (8, 1024, 12, 12, 64, True),
    "llama4k": (1, 4096, 32, 8, 128, True),
    "n16k": (1, 16384, 8, 8, 64, True),
    "n16k_full": (1, 16384, 8, 8, 64, False),
}
# fp32_bf16: fp32 tensors, flatattn with fp32_matmul="bf16" (the opt-in: bf16 products on the matrix units),
# torch's SDPA in fp32 as it runs by default; judged against torch with the bf16 tolerance.
DT = {"bf16": torch.bfloat16, "f16": torch.float16, "fp32": torch.float32, "fp32_bf16": torch.float32}
TOL = {"bf16": 3e-2, "f16": 1e-2, "fp32": 1e-3, "fp32_bf16": 3e-2}
KW = {"fp32_bf16": {"fp32_matmul": "bf16"}}  # flatattn keywords per DTYPES entry


def env_list(name, default):
    return [x for x in os.environ.get(name, default).split(",") if x]


REPS, WARMUP = int(os.environ.get("REPS", "3")), int(os.environ.get("WARMUP", "1"))
GEMM_N = int(os.environ.get("GEMM_N", "2048"))  # the GEMM rate's square size (16 threads want more than 2048)
DATAFLOW = os.environ.get("DATAFLOW", "auto")  # flatattn's dataflow: auto (the planner), flash or flat
# CLOCK=cpu times each call in process CPU time (time.process_time: on a shared machine it leaves out the time
# other processes held our core; meaningful for THREADS=1, where it is the call's own time), else wall time.
CLOCK = time.process_time if os.environ.get("CLOCK", "wall") == "cpu" else time.perf_counter


def median_ms(fn):
    for _ in range(WARMUP):
        fn()
    ts = []
    for _ in range(REPS):
        t0 = CLOCK()
        fn()
        ts.append((CLOCK() - t0) * 1e3)
    return statistics.median(ts), ts


def median_pair_ms(fa, fb):
    """median_ms of fa and of fb, their timed calls alternating (a, b, a, b, ...): on a shared machine both
    see the same load (the calls are interleaved in the same process)."""
    for _ in range(WARMUP):
        fa()
        fb()
    ta, tb = [], []
    for _ in range(REPS):
        for fn, ts in ((fa, ta), (fb, tb)):
            t0 = CLOCK()
            fn()
            ts.append((CLOCK() - t0) * 1e3)
    return (statistics.median(ta), ta), (statistics.median(tb), tb)


def rel_diff(a, b):
    a, b = a.float(), b.float()
    return float((a - b).abs().max() / max(float(b.abs().max()), 1.0))


def gemm_rates(threads):
    torch.set_num_threads(threads)
    out = {}
    n = GEMM_N
    default = "bf16,f16,fp32" if "f16" in env_list("DTYPES", "bf16,fp32") else "bf16,fp32"
    for dt in env_list("GEMM_DTYPES", default):
        a = torch.randn(n, n, dtype=DT[dt])
        b = torch.randn(n, n, dtype=DT[dt])
        ms, _ = median_ms(lambda: torch.matmul(a, b))
        out[dt + "_gflops"] = round(2 * n**3 / ms / 1e6, 1)
    return out


def cell(shape, dt, threads, modes):
    B, N, Hq, Hkv, D, causal = SHAPES[shape]
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1234)
    q = torch.randn(B, Hq, N, D, generator=g).to(DT[dt])
    k = torch.randn(B, Hkv, N, D, generator=g).to(DT[dt])
    v = torch.randn(B, Hkv, N, D, generator=g).to(DT[dt])
    do = torch.randn(B, Hq, N, D, generator=g).to(DT[dt])
    gqa = Hq != Hkv
    kw = dict(KW.get(dt, {}), **({} if DATAFLOW == "auto" else {"dataflow": DATAFLOW}))
    fl = 4 * B * Hq * N * N * D / (2 if causal else 1)
    fq, fk, fv, fdo = (x.transpose(1, 2) for x in (q, k, v, do))  # (B, N, H, D) views
    row = {"shape": shape, "B": B, "N": N, "Hq": Hq, "Hkv": Hkv, "D": D, "causal": causal, "dtype": dt,
           "threads": threads, "loadavg_before": list(os.getloadavg())}

    def torch_fwd():
        with torch.no_grad():
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)

    def fla_fwd():
        return flatattn.forward(fq, fk, fv, causal=causal, num_threads=threads, **kw)

    if "fwd" in modes:
        (t_ms, t_all), (f_ms, f_all) = median_pair_ms(torch_fwd, fla_fwd)
        o_t = torch_fwd()
        o_f, lse, rep = flatattn.forward(fq, fk, fv, causal=causal, num_threads=threads, return_report=True, **kw)
        row.update(fwd_torch_ms=round(t_ms, 2), fwd_flatattn_ms=round(f_ms, 2), fwd_torch_all=t_all,
                   fwd_flatattn_all=f_all, fwd_speedup=round(t_ms / f_ms, 3),
                   fwd_torch_gflops=round(fl / t_ms / 1e6, 1), fwd_flatattn_gflops=round(fl / f_ms / 1e6, 1),
                   fwd_kernel=rep.kernel, fwd_dataflow=rep.dataflow,
                   fwd_out_reldiff=rel_diff(o_f.transpose(1, 2), o_t))
        row["fwd_agree"] = row["fwd_out_reldiff"] <= TOL[dt]
    if "fwdbwd" in modes:
        qa, ka, va = (x.detach().clone().requires_grad_(True) for x in (q, k, v))

        def torch_step():
            for x in (qa, ka, va):
                x.grad = None
            o = F.scaled_dot_product_attention(qa, ka, va, is_causal=causal, enable_gqa=gqa)
            o.backward(do)

        def fla_step():
            o, lse = flatattn.forward(fq, fk, fv, causal=causal, num_threads=threads, **kw)
            return flatattn.backward(fdo, fq, fk, fv, o, lse, causal=causal, num_threads=threads, return_report=True,
                                     **kw)

        (t_ms, t_all), (f_ms, f_all) = median_pair_ms(torch_step, fla_step)
        dq, dk, dv, rep = fla_step()
        diffs = [rel_diff(a.transpose(1, 2), b.grad) for a, b in ((dq, qa), (dk, ka), (dv, va))]
        row.update(fwdbwd_torch_ms=round(t_ms, 2), fwdbwd_flatattn_ms=round(f_ms, 2), fwdbwd_torch_all=t_all,
                   fwdbwd_flatattn_all=f_all, fwdbwd_speedup=round(t_ms / f_ms, 3),
                   fwdbwd_torch_gflops=round(3.5 * fl / t_ms / 1e6, 1),
                   fwdbwd_flatattn_gflops=round(3.5 * fl / f_ms / 1e6, 1), bwd_kernel=rep.kernel,
                   grad_reldiff=diffs, fwdbwd_agree=max(diffs) <= TOL[dt])
    row["loadavg_after"] = list(os.getloadavg())
    return row


def main():
    threads = [int(t) for t in env_list("THREADS", "1,2")]
    modes = env_list("MODES", "fwd,fwdbwd")
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in lscpu.splitlines() if l.startswith("Flags")), [])
    res = {"cpu_model": model, "cpu_flags_matrix": sorted(f for f in flags if f.startswith(("amx", "avx512"))),
           "nproc": os.cpu_count(), "torch": torch.__version__, "torch_cpu_capability":
           torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
           "FLATATTN_CPU_MATMUL": os.environ.get("FLATATTN_CPU_MATMUL", ""), "dataflow": DATAFLOW, "gemm_n": GEMM_N, "reps": REPS, "warmup": WARMUP,
           "clock": os.environ.get("CLOCK", "wall"),
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "flatattn_file": flatattn.__file__,
           "commit": subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "HEAD"],
                                    capture_output=True, text=True).stdout.strip(), "gemm": {}, "rows": []}
    print({k: v for k, v in res.items() if k != "rows"}, flush=True)
    for t in threads:
        res["gemm"][str(t)] = dict(gemm_rates(t), loadavg=list(os.getloadavg()))
        print("threads", t, "gemm", res["gemm"][str(t)], flush=True)
    for shape in env_list("SHAPES", "gpt2,gpt2_causal,llama4k"):
        for dt in env_list("DTYPES", "bf16,fp32"):
            for t in threads:
                row = cell(shape, dt, t, modes)
                res["rows"].append(row)
                print({k: v for k, v in row.items() if not k.endswith("_all")}, flush=True)
    path = os.path.join(os.environ.get("OUT", "."), "peers_torch_cpu.json")
    json.dump(res, open(path, "w"), indent=1)
    print("wrote", path)


def markdown(path):
    """The rows of a result JSON as a markdown table (for bench/results/cpu-vs-torch-<date>.md)."""
    res = json.load(open(path))
    print("| shape | dtype | thr | load before | fwd torch ms | fwd flatattn ms | fwd x | fwd GF/s flatattn (torch)"
          " | fwd+bwd torch ms | fwd+bwd flatattn ms | fwd+bwd x | agree | flatattn fwd kernel |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res["rows"]:
        print("| %s | %s | %d | %.1f | %s | %s | %s | %s (%s) | %s | %s | %s | %s/%s | %s |" % (
            r["shape"], r["dtype"], r["threads"], r["loadavg_before"][0], r.get("fwd_torch_ms"),
            r.get("fwd_flatattn_ms"), r.get("fwd_speedup"), r.get("fwd_flatattn_gflops"), r.get("fwd_torch_gflops"),
            r.get("fwdbwd_torch_ms"), r.get("fwdbwd_flatattn_ms"), r.get("fwdbwd_speedup"), r.get("fwd_agree"),
            r.get("fwdbwd_agree"), r.get("fwd_kernel")))


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--md":
        markdown(sys.argv[2])
    else:
        main()
