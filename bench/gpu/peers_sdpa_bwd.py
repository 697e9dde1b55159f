# The backward peers, same grid and timing as bench_bwd: PyTorch SDPA's flash backend (FlashAttention-2)
# and cuDNN backend, bf16, Hq = 16, B * N = 16k tokens, D = 64 and 128, N = 1k .. 8k, causal and not,
# (B, H, N, D) tensors. Times the forward, the backward alone (autograd.grad of a kept graph) and
# forward + backward with triton's do_bench (L2 flushed, median), as peers_sdpa.py does for the forward.
# FLOPs: forward 4 B H N^2 D (halved for causal), backward 2.5x, forward + backward 3.5x.
# Prints one line per shape; writes $OUT/peers_bwd.json when OUT is set.
#   PEERS_D=64,128 PEERS_N=1024,2048,4096,8192 PEERS_H=16 python3 bench/gpu/peers_sdpa_bwd.py
# PEERS_DROPOUT=0.1: every SDPA call with dropout_p = 0.1 (compare with bench_bwd --dropout 0.1).
import json
import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from peer_timing import bench  # noqa: E402 (bench/gpu/peer_timing.py)

dev = torch.cuda.get_device_properties(0)
res = {"device": dev.name, "sms": dev.multi_processor_count, "torch": torch.__version__,
       "cudnn": torch.backends.cudnn.version(), "rows": []}
P = float(os.environ.get("PEERS_DROPOUT", "0"))
res["dropout_p"] = P
print(res, flush=True)
backends = {"fa2": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
H = int(os.environ.get("PEERS_H", "16"))
for D in [int(x) for x in os.environ.get("PEERS_D", "64,128").split(",")]:
    for N in [int(x) for x in os.environ.get("PEERS_N", "1024,2048,4096,8192").split(",")]:
        B = max(1, 16384 // N)
        for causal in (False, True):
            q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                       for _ in range(3))
            do = torch.randn_like(q)
            fl = 4 * B * H * N * N * D / (2 if causal else 1)
            row = {"D": D, "N": N, "B": B, "H": H, "causal": causal}
            for name, be in backends.items():
                try:
                    with sdpa_kernel(be):
                        with torch.no_grad():
                            row[f"{name}_fwd_ms"] = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=P))
                        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=P)
                        row[f"{name}_bwd_ms"] = bench(
                            lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True))
                        del o

                        def step():
                            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=P)
                            torch.autograd.grad(out, (q, k, v), do)
                        row[f"{name}_fwdbwd_ms"] = bench(step)
                except Exception as e:  # a backend that cannot serve the shape: recorded, not fatal
                    row[f"{name}_error"] = str(e).splitlines()[0][:200]
                for mode, mul in (("fwd", 1.0), ("bwd", 2.5), ("fwdbwd", 3.5)):
                    ms = row.get(f"{name}_{mode}_ms")
                    if ms:
                        row[f"{name}_{mode}_tflops"] = round(mul * fl / ms / 1e9, 1)
            res["rows"].append(row)
            print(row, flush=True)
            del q, k, v, do
            torch.cuda.empty_cache()
if os.environ.get("OUT"):
    json.dump(res, open(os.path.join(os.environ["OUT"], "peers_bwd.json"), "w"), indent=1)
