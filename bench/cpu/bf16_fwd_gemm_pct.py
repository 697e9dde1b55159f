# Issue 21: our bf16 forward against the bf16 GEMM ceiling, one process. Run with PYTHONPATH at a flatattn
# install and torch importable (here LD_LIBRARY_PATH=/tmp/nvlibs/lib /tmp/cpuvenv/bin/python); writes
# $OUT/bf16_fwd_gemm_pct.json (or ./).
# Our bf16 forward's % of the bf16 GEMM rate, both in one process, alternating per round: torch.matmul bf16
# 2048^3 (median of 5 after 2 warmup) then flatattn.forward on llama4k, n16k, n16k_full (median of 3 after 1
# warmup), 1 thread, time.process_time. GFLOP/s count the visible half for causal (as peers_torch_cpu.py).
import json, os, statistics, time, torch, flatattn
torch.set_num_threads(1)
SH = {"llama4k": (1, 4096, 32, 8, 128, True), "n16k": (1, 16384, 8, 8, 64, True), "n16k_full": (1, 16384, 8, 8, 64, False)}
def med(fn, warm, reps):
    for _ in range(warm): fn()
    ts = []
    for _ in range(reps):
        t0 = time.process_time(); fn(); ts.append((time.process_time() - t0) * 1e3)
    return statistics.median(ts), ts
n = 2048
a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
inp = {}
for s, (B, N, Hq, Hkv, D, c) in SH.items():
    g = torch.Generator().manual_seed(1234)
    inp[s] = [torch.randn(B, h, N, D, generator=g).to(torch.bfloat16).transpose(1, 2) for h in (Hq, Hkv, Hkv)]
rounds = []
for r in range(4):
    row = {"loadavg_before": list(os.getloadavg())}
    m, ts = med(lambda: torch.matmul(a, b), 2, 5)
    row["gemm_gflops"], row["gemm_ms_all"] = round(2 * n**3 / m / 1e6, 1), ts
    for s, (B, N, Hq, Hkv, D, c) in SH.items():
        q, k, v = inp[s]
        m, ts = med(lambda: flatattn.forward(q, k, v, causal=c, num_threads=1), 1, 3)
        gf = 4 * B * Hq * N * N * D / (2 if c else 1) / m / 1e6
        row[s] = {"ms": round(m, 2), "ms_all": ts, "gflops": round(gf, 1), "pct_of_gemm": round(100 * gf / row["gemm_gflops"], 1)}
    row["loadavg_after"] = list(os.getloadavg())
    rounds.append(row)
    print({k: (v if not isinstance(v, dict) else (v["ms"], v["gflops"], v["pct_of_gemm"])) for k, v in row.items() if k != "gemm_ms_all"}, flush=True)
json.dump({"what": open(__file__).read().splitlines()[0:6], "torch": torch.__version__, "flatattn_file": flatattn.__file__,
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": rounds},
          open(os.path.join(os.environ.get("OUT", "."), "bf16_fwd_gemm_pct.json"), "w"), indent=1)
