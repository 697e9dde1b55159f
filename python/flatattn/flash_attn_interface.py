"""FlashAttention-2 compatible API: same names, arguments, defaults, layouts and returns as
``flash_attn.flash_attn_interface`` (flash-attn 2.6+), so ``from flatattn import flash_attn_func`` is a
drop-in replacement.

Layouts: q (B, Sq, H, D), k/v (B, Sk, Hk, D) with H % Hk == 0; qkv (B, S, 3, H, D); kv (B, S, 2, Hk, D);
varlen q (total_q, H, D), qkv (total, 3, H, D), kv (total_k, 2, Hk, D) with int32 cu_seqlens (B + 1).
Inputs whose last dim is not contiguous are made contiguous (as FlashAttention does); other strides are used
as they are. Causal masks are aligned bottom-right (FlashAttention >= 2.1); ``window_size=(left, right)``,
-1 = infinite; ``softcap`` > 0 caps the logits; ``softmax_scale`` defaults to 1/sqrt(D).

Returns ``out`` (like q), or ``(out, softmax_lse, None)`` with ``return_attn_probs=True``: softmax_lse is
float32 (B, H, Sq) or (H, total_q) for varlen (natural log). The third element, FlashAttention's dropout
test matrix, is always None.

``alibi_slopes`` float32 (H) or (B, H) adds ``-slope * |i + Sk - Sq - j|`` to the scaled logits as FlashAttention-2
(Press et al., ICLR 2022); FlashAttention-2's causal kernels add ``+slope * j`` instead, which gives the same out and
gradients but a softmax_lse larger by ``slope * (i + Sk - Sq)`` than ours. Not with softcap.

Differences: fp32 inputs also work on the CPU; dropout (``dropout_p`` > 0) and the paged ``block_table`` are not
supported yet and raise :class:`flatattn.FlatattnUnsupportedError` (a ``NotImplementedError``) naming the
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

# Refused calls raise RuntimeError as the originals do (see _errors.drop_in).
_drop_in = functools.partial(drop_in, compiling=torch.compiler.is_compiling)

__all__ = [
    "flash_attn_func", "flash_attn_qkvpacked_func", "flash_attn_kvpacked_func", "flash_attn_varlen_func",
    "flash_attn_varlen_qkvpacked_func", "flash_attn_varlen_kvpacked_func",
]


def _unsupported(dropout_p, alibi_slopes, block_table=None):
    if dropout_p:
        raise error("dropout_p", repr(dropout_p), "attention dropout is not supported yet",
                    "pass dropout_p=0.0 (model.eval() for Hugging Face models)", unsupported=True)
    if block_table is not None:
        raise error("block_table", f"tensor {tuple(block_table.shape)}", "a paged KV cache is not supported yet",
                    "pass block_table=None with contiguous k/v", unsupported=True)


def _opts(softmax_scale, causal, window_size, softcap, deterministic):
    """The op's option tuple. FlashAttention: causal implies a right window of 0 whatever window_size[1] says."""
    try:
        left, right = window_size
        left, right = int(left), int(right)
    except (TypeError, ValueError):
        raise error("window_size", repr(window_size), "must be a pair (left, right), -1 = infinite",
                    "pass e.g. window_size=(256, 0)") from None
    causal = bool(causal)
    return (None if softmax_scale is None else float(softmax_scale), causal, False, left, -1 if causal else right,
            float(softcap), bool(deterministic), "auto", 0)


def _c(t):
    return t if t.stride(-1) == 1 else t.contiguous()


def _run(q, k, v, softmax_scale, causal, window_size, softcap, deterministic, return_attn_probs,
         cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=0, max_seqlen_k=0, alibi_slopes=None):
    opts = _opts(softmax_scale, causal, window_size, softcap, deterministic)
    if alibi_slopes is not None:  # the ext op (torch_ops.attention_ext): ALiBi inside the kernel
        scale, causal, top_left, left, right, cap, det, dataflow, threads = opts
        out, lse = attention_ext(_c(q), _c(k), _c(v), alibi_slopes=alibi_slopes, softmax_scale=scale, causal=causal,
                                 top_left=top_left, window_left=left, window_right=right, softcap=cap,
                                 deterministic=det, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                                 max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, dataflow=dataflow,
                                 num_threads=threads)
        return (out, lse, None) if return_attn_probs else out
    out, lse = forward_opts(_c(q), _c(k), _c(v), opts, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    return (out, lse, None) if return_attn_probs else out


@_drop_in
def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """Attention over q (B, Sq, H, D), k and v (B, Sk, Hk, D) -> out (B, Sq, H, D). See the module docstring."""
    _unsupported(dropout_p, alibi_slopes)
    return _run(q, k, v, softmax_scale, causal, window_size, softcap, deterministic, return_attn_probs,
                alibi_slopes=alibi_slopes)


@_drop_in
def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                              softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """Self-attention over packed qkv (B, S, 3, H, D) -> out (B, S, H, D). q, k, v are strided views."""
    _unsupported(dropout_p, alibi_slopes)
    _check_packed(qkv, "qkv", 5, 2, 3)
    return _run(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], softmax_scale, causal, window_size, softcap,
                deterministic, return_attn_probs, alibi_slopes=alibi_slopes)


@_drop_in
def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                             softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """Attention over q (B, Sq, H, D) and packed kv (B, Sk, 2, Hk, D) -> out (B, Sq, H, D)."""
    _unsupported(dropout_p, alibi_slopes)
    _check_packed(kv, "kv", 5, 2, 2)
    return _run(q, kv[:, :, 0], kv[:, :, 1], softmax_scale, causal, window_size, softcap, deterministic,
                return_attn_probs, alibi_slopes=alibi_slopes)


@_drop_in
def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None):
    """Variable-length attention: q (total_q, H, D), k/v (total_k, Hk, D), int32 cu_seqlens_q/k (B + 1),
    max_seqlen_q/k the longest lengths -> out (total_q, H, D); softmax_lse (H, total_q)."""
    _unsupported(dropout_p, alibi_slopes, block_table)
    return _run(q, k, v, softmax_scale, causal, window_size, softcap, deterministic, return_attn_probs,
                cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, alibi_slopes=alibi_slopes)


@_drop_in
def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None, causal=False,
                                     window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
                                     return_attn_probs=False):
    """Variable-length self-attention over packed qkv (total, 3, H, D) -> out (total, H, D)."""
    _unsupported(dropout_p, alibi_slopes)
    _check_packed(qkv, "qkv", 4, 1, 3)
    return _run(qkv[:, 0], qkv[:, 1], qkv[:, 2], softmax_scale, causal, window_size, softcap, deterministic,
                return_attn_probs, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, alibi_slopes=alibi_slopes)


@_drop_in
def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                                    softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """Variable-length attention over q (total_q, H, D) and packed kv (total_k, 2, Hk, D) -> out (total_q, H, D)."""
    _unsupported(dropout_p, alibi_slopes)
    _check_packed(kv, "kv", 4, 1, 2)
    return _run(q, kv[:, 0], kv[:, 1], softmax_scale, causal, window_size, softcap, deterministic,
                return_attn_probs, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, alibi_slopes=alibi_slopes)


def _check_packed(t, name, rank, dim, count):
    if t.dim() != rank or t.shape[dim] != count:
        layout = {("qkv", 5): "(B, S, 3, H, D)", ("kv", 5): "(B, S, 2, Hk, D)",
                  ("qkv", 4): "(total, 3, H, D)", ("kv", 4): "(total_k, 2, Hk, D)"}[(name, rank)]
        raise error(name, f"shape {tuple(t.shape)}", f"must be {layout}", f"stack the tensors as {layout}")
