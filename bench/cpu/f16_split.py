# fp16 forward on the CPU: flatattn's split path (f16 as two bf16 pieces on AMX-BF16, SplitPolicy in
# src/cpu/amx/amx.h; FLATATTN_CPU_MATMUL unset = auto) against flatattn's exact fp32 path (FLATATTN_CPU_MATMUL=fp32,
# set around its calls: the engine reads it on every call) and PyTorch's CPU SDPA on the same fp16 tensors (issue 21).
# Per cell the three calls alternate (torch, split, fp32 path, torch, ...) after WARMUP untimed rounds: medians of
# REPS. Agreement: max |a - b| / max(|torch|, 1) of each flatattn output against torch's (fp16 tolerance 2e-3).
# The os load average is recorded per cell. Environment: SHAPES, THREADS (1,2), REPS (3), WARMUP (1).
# Run: LD_LIBRARY_PATH=/tmp/kvstubs /tmp/kvvenv/bin/python bench/cpu/f16_split.py; writes $OUT/f16_split.json.
import json, os, platform, statistics, subprocess, time

import torch
import torch.nn.functional as F
import flatattn

SHAPES = {  # name: (B, N, Hq, Hkv, D, causal) -- issue 21's shapes
    "gpt2": (8, 1024, 12, 12, 64, False),
    "gpt2_causal": (8, 1024, 12, 12, 64, True),
    "llama4k": (1, 4096, 32, 8, 128, True),
    "n16k": (1, 16384, 8, 8, 64, True),
}
REPS, WARMUP = int(os.environ.get("REPS", "3")), int(os.environ.get("WARMUP", "1"))
TOL = 2e-3


def rel_diff(a, b):
    a, b = a.float(), b.float()
    return float((a - b).abs().max() / max(float(b.abs().max()), 1.0))


def cell(shape, threads):
    B, N, Hq, Hkv, D, causal = SHAPES[shape]
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1234)
    q, k, v = (torch.randn(B, h, N, D, generator=g).half() for h in (Hq, Hkv, Hkv))
    fq, fk, fv = (x.transpose(1, 2) for x in (q, k, v))  # (B, N, H, D) views, no copy
    fl = 4 * B * Hq * N * N * D / (2 if causal else 1)

    def torch_fwd():
        with torch.no_grad():
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=Hq != Hkv)

    def split_fwd():
        os.environ.pop("FLATATTN_CPU_MATMUL", None)
        return flatattn.forward(fq, fk, fv, causal=causal, num_threads=threads, return_report=True)

    def fp32_fwd():
        os.environ["FLATATTN_CPU_MATMUL"] = "fp32"
        try:
            return flatattn.forward(fq, fk, fv, causal=causal, num_threads=threads, return_report=True)
        finally:
            os.environ.pop("FLATATTN_CPU_MATMUL", None)

    fns = {"torch": torch_fwd, "split": split_fwd, "fp32path": fp32_fwd}
    times = {n: [] for n in fns}
    load0 = list(os.getloadavg())
    for r in range(WARMUP + REPS):
        for n, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r >= WARMUP:
                times[n].append((time.perf_counter() - t0) * 1e3)
    med = {n: statistics.median(ts) for n, ts in times.items()}
    o_t = torch_fwd()
    o_s, _, rep_s = split_fwd()
    o_f, _, rep_f = fp32_fwd()
    row = {"shape": shape, "B": B, "N": N, "Hq": Hq, "Hkv": Hkv, "D": D, "causal": causal, "threads": threads,
           "loadavg_before": load0, "loadavg_after": list(os.getloadavg()),
           **{n + "_ms": round(m, 2) for n, m in med.items()}, **{n + "_all": ts for n, ts in times.items()},
           "split_gflops": round(fl / med["split"] / 1e6, 1), "fp32path_gflops": round(fl / med["fp32path"] / 1e6, 1),
           "torch_gflops": round(fl / med["torch"] / 1e6, 1),
           "split_vs_torch": round(med["torch"] / med["split"], 3), "split_vs_fp32path": round(med["fp32path"] / med["split"], 3),
           "fp32path_vs_torch": round(med["torch"] / med["fp32path"], 3),
           "split_kernel": rep_s.kernel, "fp32path_kernel": rep_f.kernel,
           "split_reldiff_torch": rel_diff(o_s.transpose(1, 2), o_t), "fp32path_reldiff_torch": rel_diff(o_f.transpose(1, 2), o_t),
           "split_reldiff_fp32path": rel_diff(o_s, o_f)}
    row["agree"] = max(row["split_reldiff_torch"], row["fp32path_reldiff_torch"]) <= TOL
    return row


def main():
    threads = [int(t) for t in os.environ.get("THREADS", "1,2").split(",") if t]
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in lscpu.splitlines() if l.startswith("Flags")), [])
    res = {"cpu_model": model, "cpu_flags_matrix": sorted(f for f in flags if f.startswith(("amx", "avx512"))),
           "nproc": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
           "reps": REPS, "warmup": WARMUP, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
           "flatattn_file": flatattn.__file__,
           "commit": subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "HEAD"],
                                    capture_output=True, text=True).stdout.strip(), "rows": []}
    print({k: v for k, v in res.items() if k != "rows"}, flush=True)
    for shape in [s for s in os.environ.get("SHAPES", ",".join(SHAPES)).split(",") if s]:
        for t in threads:
            row = cell(shape, t)
            res["rows"].append(row)
            print({k: v for k, v in row.items() if not k.endswith("_all")}, flush=True)
    res["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    json.dump(res, open(os.path.join(os.environ.get("OUT", "."), "f16_split.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
