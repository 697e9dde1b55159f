# The bias peers, same grid and timing as bench_bias: PyTorch SDPA's memory-efficient backend and cuDNN backend
# with a float attn_mask, bf16, Hq * D = 2048, B * N = 16k tokens, D = 64 and 128, N = 1k .. 4k, (B, H, N, D)
# tensors. Masks: "dense" (B, H, N, N) and "heads" (1, H, N, N) broadcast over B, both requiring grad, so the
# backward computes the mask's gradient as bench_bias computes dbias. Causal rows add the causal mask into the
# float mask (SDPA refuses is_causal with attn_mask). Times the forward (no grad) and forward + backward
# (autograd.grad into q, k, v and the mask) with triton's do_bench (L2 flushed, median), as peers_sdpa_bwd.py.
# Prints one line per shape; writes $OUT/peers_bias.json when OUT is set.
#   PEERS_D=64,128 PEERS_N=1024,2048,4096 python3 bench/gpu/peers_sdpa_bias.py
import json
import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from peer_timing import bench  # noqa: E402 (bench/gpu/peer_timing.py)

dev = torch.cuda.get_device_properties(0)
res = {"device": dev.name, "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "rows": []}
print(res, flush=True)
backends = {"efficient": SDPBackend.EFFICIENT_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
W = int(os.environ.get("PEERS_WIDTH", "2048"))
for D in [int(x) for x in os.environ.get("PEERS_D", "64,128").split(",")]:
    H = W // D
    for N in [int(x) for x in os.environ.get("PEERS_N", "1024,2048,4096").split(",")]:
        B = max(1, 16384 // N)
        for causal in (False, True):
            q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                       for _ in range(3))
            do = torch.randn_like(q)
            for mask_name, mb in (("dense", B), ("heads", 1)):
                mask = torch.randn(mb, H, N, N, device="cuda", dtype=torch.bfloat16)
                if causal:
                    mask.masked_fill_(torch.ones(N, N, dtype=torch.bool, device="cuda").triu(1), float("-inf"))
                mask.requires_grad_(True)
                row = {"D": D, "N": N, "B": B, "H": H, "causal": causal, "bias": mask_name}
                for name, be in backends.items():
                    try:
                        with sdpa_kernel(be):
                            with torch.no_grad():
                                row[f"{name}_fwd_ms"] = bench(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

                            def step():
                                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                                torch.autograd.grad(out, (q, k, v, mask), do)
                            row[f"{name}_fwdbwd_ms"] = bench(step)
                    except Exception as e:  # a backend that cannot serve the shape: recorded, not fatal
                        row[f"{name}_error"] = str(e).splitlines()[0][:200]
                res["rows"].append(row)
                print(row, flush=True)
                del mask
                torch.cuda.empty_cache()
            del q, k, v, do
            torch.cuda.empty_cache()
if os.environ.get("OUT"):
    json.dump(res, open(os.path.join(os.environ["OUT"], "peers_bias.json"), "w"), indent=1)
