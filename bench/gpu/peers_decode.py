# Peers of the decode benchmark (bench/gpu/bench_decode.cc): PyTorch SDPA's backends (flash, efficient,
# cudnn, math) on a contiguous bf16 KV cache with q_len 1, the same shapes (MHA 32/32, GQA 32/8 and 64/8,
# D = 128, batch x context as bench_decode, plus B = 1, Hkv = 8, context 128k), timed like ours
# (triton.testing.do_bench: L2 flushed, median). SDPA has no GQA-packed decode: K/V are given with Hkv
# heads and enable_gqa=True where the backend takes it, else expanded to Hq heads (the expansion is not
# timed; the bandwidth is always the KV bytes of the Hkv-head cache, the same numerator as ours).
# Writes $OUT/peers_decode.json. Env: DECODE_BATCH, DECODE_CTX, DECODE_HEADS ("32/32,32/8,64/8"),
# DECODE_MAX_GIB (skip larger caches, default 12), PEERS_MATH=0 skips the math backend.
import json, os, torch, triton
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

def bench(fn):
    return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")  # ms

D = 128
dev = torch.cuda.get_device_properties(0)
res = {"device": dev.name, "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "d": D, "rows": []}
x = torch.empty(2**31 // 2, device="cuda", dtype=torch.bfloat16); y = torch.empty_like(x)
ms = bench(lambda: y.copy_(x)); res["copy_GBps"] = 2 * x.numel() * 2 / ms / 1e6
print("copy GB/s %.0f" % res["copy_GBps"], flush=True)
del x, y
backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
batches = [int(v) for v in os.environ.get("DECODE_BATCH", "1,8,32,64").split(",")]
ctxs = [int(v) for v in os.environ.get("DECODE_CTX", "8192,16384,32768").split(",")]
heads = [tuple(int(a) for a in h.split("/")) for h in os.environ.get("DECODE_HEADS", "32/32,32/8,64/8").split(",")]
max_bytes = int(os.environ.get("DECODE_MAX_GIB", "12")) << 30
shapes = [(b, c, hq, hkv) for (hq, hkv) in heads for b in batches for c in ctxs] + [(1, 131072, 64, 8)]
for (B, N, Hq, Hkv) in shapes:
    kv_bytes = 2 * B * N * Hkv * D * 2
    if kv_bytes > max_bytes: continue
    q = torch.randn(B, Hq, 1, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, Hkv, N, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    row = {"batch": B, "ctx": N, "hq": Hq, "hkv": Hkv, "qlen": 1, "kv_bytes": kv_bytes}
    for name, be in backends.items():
        if name == "math" and (os.environ.get("PEERS_MATH") == "0" or kv_bytes > (2 << 30)): continue
        ms = None
        for gqa in (True, False):  # enable_gqa where the backend takes it, else expanded heads
            try:
                kk, vv = (k, v) if (gqa or Hq == Hkv) else (k.repeat_interleave(Hq // Hkv, 1), v.repeat_interleave(Hq // Hkv, 1))
                with sdpa_kernel(be), torch.no_grad():
                    f = lambda: F.scaled_dot_product_attention(q, kk, vv, enable_gqa=gqa and Hq != Hkv)
                    f()
                    ms = bench(f)
                row[f"{name}_gqa_packed"] = gqa or Hq == Hkv
                break
            except Exception as e:
                row[f"{name}_error"] = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
                torch.cuda.empty_cache()
        row[f"{name}_ms"] = ms
        row[f"{name}_GBps"] = None if ms is None else round(kv_bytes / ms / 1e6, 1)
    res["rows"].append(row)
    print(row, flush=True)
    del q, k, v
    torch.cuda.empty_cache()
if os.environ.get("OUT"):
    json.dump(res, open(os.path.join(os.environ["OUT"], "peers_decode.json"), "w"), indent=1)
