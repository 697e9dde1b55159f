"""FlashAttention-2 compatible API: same names, arguments, defaults, layouts and returns as
``flash_attn.flash_attn_interface`` (flash-attn 2.6+), so ``from flatattn import flash_attn_func`` is a
drop-in replacement.

Layouts: q (B, Sq, H, D), k/v (B, Sk, Hk, D) with H % Hk == 0; qkv (B, S, 3, H, D); kv (B, S, 2, Hk, D);
varlen q (total_q, H, D), qkv (total, 3, H, D), kv (total_k, 2, Hk, D) with int32 cu_seqlens (B + 1).
Inputs whose last dim is not contiguous are made contiguous (as FlashAttention does); other strides are used
as they are. Causal masks are aligned bottom-right (FlashAttention >= 2.1); ``window_size=(left, right)``,
-1 = infinite; ``softcap`` > 0 caps the logits; ``softmax_scale`` defaults to 1/sqrt(D).

Returns ``out`` (like q), or ``(out, softmax_lse, S_dmask)`` with ``return_attn_probs=True``: softmax_lse is
float32 (B, H, Sq) or (H, total_q) for varlen (natural log). S_dmask is None without dropout; with dropout
it is FlashAttention-2's test matrix: (B, H, Sq, Sk) float32 softmax probabilities P (of the undropped
softmax), negated where the element is dropped (so ``S_dmask >= 0`` is the keep mask up to P = 0 entries),
batched calls only, built from ``flatattn.dropout_mask`` and a naive softmax (for tests: O(Sq Sk) memory).

``alibi_slopes`` float32 (H) or (B, H) adds ``-slope * |i + Sk - Sq - j|`` to the scaled logits as FlashAttention-2
(Press et al., ICLR 2022); FlashAttention-2's causal kernels add ``+slope * j`` instead, which gives the same out and
gradients but a softmax_lse larger by ``slope * (i + Sk - Sq)`` than ours. Not with softcap or dropout.

Dropout (``dropout_p`` > 0): the keep decision is flatattn's Philox-4x32-10 stream (not FlashAttention-2's bits;
docs/variants.md, "Dropout"). ``(seed, offset)`` are drawn from torch's default generator of q's device, as
FlashAttention-2 does (the CUDA generator's offset advances by 4 per call), unless ``rng_state=(seed, offset)``
is passed (a flatattn extension, to replay a call); the backward reuses the forward's pair. Drawing reads
the generator on the host: not capturable in a CUDA graph (pass ``rng_state`` there).

Differences: fp32 inputs also work on the CPU; ``flash_attn_varlen_func(..., block_table=...)`` (paged
prefill) is forward-only, eager (not through the torch custom op: no autograd, not torch.compile-traceable) and
refuses dropout with :class:`flatattn.FlatattnUnsupportedError` (a ``NotImplementedError``) naming the
argument. The lse output carries no gradient.

Errors: every refused call raises a ``RuntimeError``, as FlashAttention-2 does, that is also a
:class:`flatattn.FlatattnError` naming the argument: bad input as :class:`flatattn.FlatattnDropInError`
(also a ``ValueError``), unsupported features as :class:`flatattn.FlatattnUnsupportedError`.
Any head dim D <= 256 runs on CUDA too (D not a multiple of 8 is zero-padded inside the library).
"""

from __future__ import annotations

import functools

import torch

from .torch_ops import attention_ext, forward_opts
from ._errors import drop_in, error
from .kvcache import flash_attn_with_kvcache  # noqa: F401 (numpy or torch; defined without importing torch)

# Refused calls raise RuntimeError as the originals do (see _errors.drop_in).
_drop_in = functools.partial(drop_in, compiling=torch.compiler.is_compiling)

__all__ = [
    "draw_rng_state", "flash_attn_func", "flash_attn_qkvpacked_func", "flash_attn_kvpacked_func", "flash_attn_varlen_func",
    "flash_attn_varlen_qkvpacked_func", "flash_attn_varlen_kvpacked_func", "flash_attn_with_kvcache",
]


def _unsupported(dropout_p, alibi_slopes, block_table=None):
    try:
        p = float(dropout_p)
    except (TypeError, ValueError):
        raise error("dropout_p", repr(dropout_p), "must be a float in [0, 1)", "pass e.g. dropout_p=0.1") from None
    if not 0.0 <= p < 1.0:  # also NaN
        raise error("dropout_p", repr(dropout_p), "must be in [0, 1) (0 disables dropout)",
                    "pass a probability such as 0.1, or 0.0")
    if alibi_slopes is not None and p > 0.0:
        raise error("alibi_slopes", f"tensor {tuple(alibi_slopes.shape)} with dropout_p={dropout_p}",
                    "ALiBi together with dropout is not supported yet", "pass dropout_p=0.0 or alibi_slopes=None",
                    unsupported=True)
    if block_table is not None:
        raise error("block_table", f"tensor {tuple(block_table.shape)}", "a paged KV cache is not supported yet",
                    "pass block_table=None with contiguous k/v", unsupported=True)


def draw_rng_state(device):
    """``(seed, offset)`` for one dropout call on ``device``, from torch's default generator of that device as
    FlashAttention-2 does: CUDA: the generator's seed and its Philox offset, which advances by 4; CPU (or a
    torch without ``Generator.get_offset``): two 63-bit integers drawn from the generator. Both are ints in
    [0, 2^63) (the op schema's int64)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        gen = torch.cuda.default_generators[index]
        if hasattr(gen, "get_offset") and hasattr(gen, "set_offset"):
            offset = gen.get_offset()
            gen.set_offset(offset + 4)
            return gen.initial_seed() & (2**63 - 1), offset & (2**63 - 1)
    pair = torch.randint(0, 2**62, (2,), dtype=torch.int64)  # the CPU default generator
    return int(pair[0]), int(pair[1])


def _dropout_state(q, dropout_p, rng_state):
    if not float(dropout_p):
        return 0.0, 0, 0
    if rng_state is None:
        seed, offset = draw_rng_state(q.device)
    else:
        try:
            seed, offset = (int(x) for x in rng_state)
        except (TypeError, ValueError):
            raise error("rng_state", repr(rng_state), "must be a pair (seed, offset) of ints",
                        "pass the pair of an earlier call, or None to draw one") from None
    return float(dropout_p), seed, offset


def _s_dmask(q, k, v, softmax_scale, causal, window_size, softcap, dropout):
    """FlashAttention-2's S_dmask (module docstring): P negated where dropped, (B, H, Sq, Sk) float32."""
    import math

    import torch
    from ._native import dropout_mask

    p, seed, offset = dropout
    B, Sq, H, D = q.shape
    Sk, Hk = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if softmax_scale is None else float(softmax_scale)
    qf = q.float().transpose(1, 2)
    kf = k.float().transpose(1, 2).repeat_interleave(H // Hk, dim=1)
    s = scale * qf @ kf.transpose(-1, -2)
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    i = torch.arange(Sq, device=q.device)[:, None] + (Sk - Sq)  # bottom-right diagonal
    j = torch.arange(Sk, device=q.device)[None, :]
    left, right = window_size
    right = 0 if causal else right
    visible = torch.ones(Sq, Sk, dtype=torch.bool, device=q.device)
    if right >= 0:
        visible &= j <= i + right
    if left >= 0:
        visible &= j >= i - left
    s = s.masked_fill(~visible, float("-inf"))
    prob = torch.softmax(s, dim=-1).nan_to_num(0.0)
    mask = torch.empty(B, H, Sq, Sk, dtype=torch.uint8, device=q.device)
    dropout_mask(B, H, Sq, Sk, dropout_p=p, dropout_seed=seed, dropout_offset=offset, out=mask)
    return torch.where(mask.bool(), prob, -prob)


def _opts(softmax_scale, causal, window_size, softcap, deterministic, dropout=(0.0, 0, 0)):
    """The op's option tuple. FlashAttention: causal implies a right window of 0 whatever window_size[1] says."""
    try:
        left, right = window_size
        left, right = int(left), int(right)
    except (TypeError, ValueError):
        raise error("window_size", repr(window_size), "must be a pair (left, right), -1 = infinite",
                    "pass e.g. window_size=(256, 0)") from None
    causal = bool(causal)
    return (None if softmax_scale is None else float(softmax_scale), causal, False, left, -1 if causal else right,
            float(softcap), bool(deterministic), *dropout, "auto", 0)


def _c(t):
    return t if t.stride(-1) == 1 else t.contiguous()


def _run(q, k, v, softmax_scale, causal, window_size, softcap, deterministic, return_attn_probs,
         cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=0, max_seqlen_k=0, alibi_slopes=None, dropout_p=0.0,
         rng_state=None):
    if alibi_slopes is not None:  # the ext op (torch_ops.attention_ext): ALiBi inside the kernel (no dropout)
        opts = _opts(softmax_scale, causal, window_size, softcap, deterministic)
        scale, causal, top_left, left, right, cap, det = opts[:7]
        dataflow, threads = opts[-2:]
        out, lse = attention_ext(_c(q), _c(k), _c(v), alibi_slopes=alibi_slopes, softmax_scale=scale, causal=causal,
                                 top_left=top_left, window_left=left, window_right=right, softcap=cap,
                                 deterministic=det, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                                 max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, dataflow=dataflow,
                                 num_threads=threads)
        return (out, lse, None) if return_attn_probs else out
    dropout = _dropout_state(q, dropout_p, rng_state)
    opts = _opts(softmax_scale, causal, window_size, softcap, deterministic, dropout)
    out, lse = forward_opts(_c(q), _c(k), _c(v), opts, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    if not return_attn_probs:
        return out
    s_dmask = None
    if dropout[0] and cu_seqlens_q is None:
        s_dmask = _s_dmask(q, k, v, softmax_scale, causal, (opts[3], opts[4]), softcap, dropout)
    return out, lse, s_dmask


@_drop_in
def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False, rng_state=None):
    """Attention over q (B, Sq, H, D), k and v (B, Sk, Hk, D) -> out (B, Sq, H, D). See the module docstring."""
    _unsupported(dropout_p, alibi_slopes)
    return _run(q, k, v, softmax_scale, causal, window_size, softcap, deterministic, return_attn_probs,
                alibi_slopes=alibi_slopes, dropout_p=dropout_p,
                rng_state=rng_state)


@_drop_in
def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                              softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False,
                              rng_state=None):
    """Self-attention over packed qkv (B, S, 3, H, D) -> out (B, S, H, D). q, k, v are strided views."""
    _unsupported(dropout_p, alibi_slopes)
    _check_packed(qkv, "qkv", 5, 2, 3)
    return _run(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], softmax_scale, causal, window_size, softcap,
                deterministic, return_attn_probs, alibi_slopes=alibi_slopes, dropout_p=dropout_p,
                rng_state=rng_state)


@_drop_in
def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                             softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False,
                             rng_state=None):
    """Attention over q (B, Sq, H, D) and packed kv (B, Sk, 2, Hk, D) -> out (B, Sq, H, D)."""
    _unsupported(dropout_p, alibi_slopes)
    _check_packed(kv, "kv", 5, 2, 2)
    return _run(q, kv[:, :, 0], kv[:, :, 1], softmax_scale, causal, window_size, softcap, deterministic,
                return_attn_probs, alibi_slopes=alibi_slopes, dropout_p=dropout_p,
                rng_state=rng_state)


@_drop_in
def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None, rng_state=None):
    """Variable-length attention: q (total_q, H, D), k/v (total_k, Hk, D), int32 cu_seqlens_q/k (B + 1),
    max_seqlen_q/k the longest lengths -> out (total_q, H, D); softmax_lse (H, total_q).

    With ``block_table`` int32 (B, max_blocks) (paged prefill, FlashAttention-2's semantics): k and v ARE the
    paged caches (num_blocks, page_block_size, Hk, D), sequence b's keys are its first cu_seqlens_k[b+1] -
    cu_seqlens_k[b] cache positions, and causal aligns its queries to the end of its keys
    (flatattn.kvcache.forward_kvcache with cu_seqlens_q; no dropout)."""
    if block_table is not None:
        return _paged_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, dropout_p, softmax_scale, causal,
                             window_size, softcap, alibi_slopes, return_attn_probs, block_table)
    _unsupported(dropout_p, alibi_slopes, block_table)
    return _run(q, k, v, softmax_scale, causal, window_size, softcap, deterministic, return_attn_probs,
                cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, alibi_slopes=alibi_slopes, dropout_p=dropout_p,
                rng_state=rng_state)


@_drop_in
def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None, causal=False,
                                     window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
                                     return_attn_probs=False, rng_state=None):
    """Variable-length self-attention over packed qkv (total, 3, H, D) -> out (total, H, D)."""
    _unsupported(dropout_p, alibi_slopes)
    _check_packed(qkv, "qkv", 4, 1, 3)
    return _run(qkv[:, 0], qkv[:, 1], qkv[:, 2], softmax_scale, causal, window_size, softcap, deterministic,
                return_attn_probs, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, alibi_slopes=alibi_slopes, dropout_p=dropout_p,
                rng_state=rng_state)


@_drop_in
def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                                    softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                                    alibi_slopes=None, deterministic=False, return_attn_probs=False, rng_state=None):
    """Variable-length attention over q (total_q, H, D) and packed kv (total_k, 2, Hk, D) -> out (total_q, H, D)."""
    _unsupported(dropout_p, alibi_slopes)
    _check_packed(kv, "kv", 4, 1, 2)
    return _run(q, kv[:, 0], kv[:, 1], softmax_scale, causal, window_size, softcap, deterministic,
                return_attn_probs, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, alibi_slopes=alibi_slopes, dropout_p=dropout_p,
                rng_state=rng_state)


def _paged_varlen(q, k_cache, v_cache, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, dropout_p, softmax_scale, causal,
                  window_size, softcap, alibi_slopes, return_attn_probs, block_table):
    """flash_attn_varlen_func with a block_table: varlen queries over a paged cache (kvcache.forward_kvcache)."""
    from .kvcache import _window, forward_kvcache
    if float(dropout_p) != 0.0:
        raise error("dropout_p", repr(dropout_p), "a paged KV cache (block_table) is inference: no dropout",
                    "pass dropout_p=0.0", unsupported=True)
    seqlens_k = cu_seqlens_k[1:] - cu_seqlens_k[:-1]  # int32 (B): each sequence's key count, no host sync
    if hasattr(seqlens_k, "contiguous"):
        seqlens_k = seqlens_k.contiguous()
    left, right = _window(window_size, causal)
    out, lse = forward_kvcache(_c(q), k_cache, v_cache, seqlens_k, block_table=block_table, cu_seqlens_q=cu_seqlens_q,
                               max_seqlen_q=int(max_seqlen_q), softmax_scale=softmax_scale, causal=causal,
                               window=(left, right), softcap=softcap, alibi_slopes=alibi_slopes,
                               return_lse=bool(return_attn_probs))
    return (out, lse, None) if return_attn_probs else out


def _check_packed(t, name, rank, dim, count):
    if t.dim() != rank or t.shape[dim] != count:
        layout = {("qkv", 5): "(B, S, 3, H, D)", ("kv", 5): "(B, S, 2, Hk, D)",
                  ("qkv", 4): "(total, 3, H, D)", ("kv", 4): "(total_k, 2, Hk, D)"}[(name, rank)]
        raise error(name, f"shape {tuple(t.shape)}", f"must be {layout}", f"stack the tensors as {layout}")
