# One SDPA flash (FlashAttention-2) backward for Nsight Compute to profile (bench/gpu/profile_bwd.sh):
# bf16 (B, H, N, D) tensors, B * N = 16k tokens, H = 16 as bench_bwd. The backward runs three times
# (the profiler skips the first, cold one).
#   PROF_D=128 PROF_N=8192 PROF_CAUSAL=0 python3 bench/gpu/profile_sdpa_bwd.py
import os

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

D = int(os.environ.get("PROF_D", "128"))
N = int(os.environ.get("PROF_N", "8192"))
H = int(os.environ.get("PROF_H", "16"))
causal = os.environ.get("PROF_CAUSAL", "0") == "1"
B = max(1, 16384 // N)
q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
do = torch.randn_like(q)
with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    for _ in range(3):
        torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
torch.cuda.synchronize()
print("done", B, H, N, D, causal)
