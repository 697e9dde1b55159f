# Baseline: the H100/H200 ceilings and PyTorch SDPA backends (FA2 flash, cuDNN, efficient, math)
# measured side by side in one run. Prints a table; writes JSON to $OUT if set.
# Copied from ../shared/bench/peers_sdpa.py (which does not travel to the GPU machine); additions:
# PEERS_N (comma list of N, default 512..16384; scripts/gpu_session.sh adds 128 and 256 for the FLAT
# region), PEERS_D (comma list of D, default 64,128,256) and PEERS_MATH=0 to skip the slow materializing
# backend.
import json, os, sys, torch, triton
from torch.nn.attention import sdpa_kernel, SDPBackend
import torch.nn.functional as F

def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")  # ms

dev = torch.cuda.get_device_properties(0)
res = {"device": dev.name, "sms": dev.multi_processor_count, "torch": torch.__version__,
       "cudnn": torch.backends.cudnn.version(), "rows": []}
print(res)
# ceilings
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
ms = bench(lambda: a @ b); res["gemm_bf16_tflops"] = 2 * 8192**3 / ms / 1e9
x = torch.empty(2**31 // 2, device="cuda", dtype=torch.bfloat16); y = torch.empty_like(x)
ms = bench(lambda: y.copy_(x)); res["copy_TBps"] = 2 * x.numel() * 2 / ms / 1e9
print("gemm bf16 TFLOP/s %.0f  copy TB/s %.2f" % (res["gemm_bf16_tflops"], res["copy_TBps"]))
del a, b, x, y
backends = {"fa2": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "eff": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
modes = sys.argv[1].split(",") if len(sys.argv) > 1 else ["fwd", "fwdbwd"]
for D in [int(x) for x in os.environ.get("PEERS_D", "64,128,256").split(",")]:
    H = 2048 // D
    for N in [int(x) for x in os.environ.get("PEERS_N", "512,1024,2048,4096,8192,16384").split(",")]:
        B = max(1, 16384 // N)
        for causal in (False, True):
            q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            do = torch.randn_like(q)
            fl = 4 * B * H * N * N * D / (2 if causal else 1)
            row = {"D": D, "N": N, "B": B, "H": H, "causal": causal}
            for name, be in backends.items():
                if name == "math" and (N > 4096 or os.environ.get("PEERS_MATH") == "0"): continue
                for mode in modes:
                    try:
                        with sdpa_kernel(be):
                            if mode == "fwd":
                                with torch.no_grad():
                                    ms = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                                row[f"{name}_{mode}"] = round(fl / ms / 1e9, 1)
                            else:
                                def step():
                                    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                                    o.backward(do)
                                ms = bench(step)
                                row[f"{name}_{mode}"] = round(3.5 * fl / ms / 1e9, 1)
                    except Exception as e:
                        row[f"{name}_{mode}"] = None
            res["rows"].append(row)
            print(row, flush=True)
            del q, k, v, do
            torch.cuda.empty_cache()
if os.environ.get("OUT"):
    json.dump(res, open(os.path.join(os.environ["OUT"], "peers_sdpa.json"), "w"), indent=1)
