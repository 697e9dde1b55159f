"""PyTorch SDPA compatible attention: ``flatattn.scaled_dot_product_attention``.

Same signature and (B, H, N, D) layout as ``torch.nn.functional.scaled_dot_product_attention``; the tensors
are handed to the kernels as (B, N, H, D) stride views, never copied (unless the last dim is not contiguous).
``is_causal`` is aligned top-left as in SDPA (key j visible to query i when j <= i).
"""

from __future__ import annotations

import functools

import torch

from .torch_ops import as_bias, attention, attention_bias
from ._errors import drop_in, error

# Refused calls raise RuntimeError as the originals do (see _errors.drop_in).
_drop_in = functools.partial(drop_in, compiling=torch.compiler.is_compiling)

__all__ = ["scaled_dot_product_attention", "set_bool_mask_path"]

# How a boolean attn_mask runs (set_bool_mask_path): "bias" (a 0 / -inf additive bias, O(mask) reads per
# call), "sparse" (block lists + bits of the partial blocks, docs/sparse.md: blocks the mask hides are skipped),
# "auto" (sparse when the mask has at least _SPARSE_MIN_ELEMENTS elements, the tensors are 4-d and no gradient
# is needed on CUDA, where the block-sparse backward is new and not yet measured against the bias path; else bias).
_bool_mask_path = "auto"
_SPARSE_MIN_ELEMENTS = 1 << 22  # 2048 x 2048: below it the conversion costs about what the skipped blocks save
_SPARSE_BLOCK = 128  # a multiple of every CUDA family's tile


def set_bool_mask_path(path="auto", min_elements=None):
    """Chooses how :func:`scaled_dot_product_attention` runs a boolean ``attn_mask``: 'bias' (always the 0 / -inf
    additive bias), 'sparse' (always block-sparse lists: 128 x 128 blocks, fully hidden blocks skipped, partial
    blocks with their bits; 4-d inputs only), or 'auto' (default: sparse when the broadcast mask has at least
    ``min_elements`` elements, default 2^22, and no CUDA gradient is needed). Both paths give the same
    result up to rounding (the same keys are visible; a row with none outputs 0). Returns the previous path."""
    global _bool_mask_path, _SPARSE_MIN_ELEMENTS
    if path not in ("auto", "bias", "sparse"):
        raise error("path", repr(path), "must be 'auto', 'bias' or 'sparse'", "pass one of the three")
    prev, _bool_mask_path = _bool_mask_path, path
    if min_elements is not None:
        _SPARSE_MIN_ELEMENTS = int(min_elements)
    return prev


@_drop_in
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """Attention over query (..., Hq, L, E), key (..., Hkv, S, E), value (..., Hkv, S, E) -> (..., Hq, L, E).

    Leading dims are batch dims (a 3-D input is (B, L, E), one head). ``scale`` defaults to 1/sqrt(E);
    ``enable_gqa=True`` lets Hq be a multiple of Hkv. ``dropout_p`` in [0, 1) drops attention probabilities
    (flatattn's Philox stream, with ``(seed, offset)`` drawn from torch's generator of the device as
    ``flash_attn_func`` does; the backward regenerates the same mask). ``attn_mask`` broadcastable to
    (..., Hq, L, S) as in SDPA: a float mask (float32, float16 or bfloat16) is added to the scaled logits
    (flatattn's additive bias; it gets its gradient when it requires grad, summed over its broadcast dims), a
    boolean mask keeps the keys where it is True (a bias of 0 / -inf, no gradient); a query row that sees no key
    outputs 0 (SDPA: NaN). ``attn_mask`` with ``dropout_p > 0`` is refused (no kernel for the combination).
    A large boolean mask runs as block-sparse lists instead of a bias (:func:`set_bool_mask_path` says when;
    the same result).
    Differentiable in query, key, value (and a float attn_mask).
    A refused call raises a ``RuntimeError`` (as torch does) that is also a :class:`flatattn.FlatattnError`
    (:class:`flatattn.FlatattnDropInError` or :class:`flatattn.FlatattnUnsupportedError`).
    """
    try:
        dropout_p = float(dropout_p)
    except (TypeError, ValueError):
        raise error("dropout_p", repr(dropout_p), "must be a float in [0, 1)", "pass e.g. dropout_p=0.1") from None
    if not 0.0 <= dropout_p < 1.0:  # also NaN
        raise error("dropout_p", repr(dropout_p), "must be in [0, 1) (0 disables dropout)",
                    "pass a probability such as 0.1, or 0.0")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.dim() < 3:
            raise error(name, f"shape {tuple(t.shape)}", "must have at least 3 dims (..., L, E)",
                        "pass (B, H, L, E) tensors")
    rank = query.dim()
    q, k, v = (_as_bhle(t) for t in (query, key, value))
    if q.shape[1] != k.shape[1] and not enable_gqa:
        raise error("key", f"{k.shape[1]} heads with {q.shape[1]} query heads",
                    "query and key must have the same number of heads unless enable_gqa=True",
                    "pass enable_gqa=True (Hq a multiple of Hkv) or repeat the key/value heads")
    if attn_mask is not None:
        if dropout_p:
            raise error("attn_mask", f"tensor {tuple(attn_mask.shape)} with dropout_p {dropout_p}",
                        "an attention mask with dropout is not supported yet (no kernel for the combination)",
                        "drop dropout_p, or the mask", unsupported=True)
        if attn_mask.dtype == torch.bool and _use_sparse(attn_mask, query, q, k, v):
            return _restore(_sparse_bool_mask(attn_mask, q, k, v, scale, bool(is_causal)), query, rank)
        bias = _mask_as_bias(attn_mask, query, q, k.shape[2])
        out, _ = attention_bias(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), bias, softmax_scale=scale,
                                causal=bool(is_causal), top_left=True)
        return _restore(out.transpose(1, 2), query, rank)
    drop = {}
    if dropout_p:
        from .flash_attn_interface import draw_rng_state

        seed, offset = draw_rng_state(q.device)
        drop = {"dropout_p": dropout_p, "dropout_seed": seed, "dropout_offset": offset}
    out, _ = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale,
                       causal=bool(is_causal), top_left=True, **drop)
    out = out.transpose(1, 2)  # (B, Hq, L, E), contiguous when query was
    return _restore(out, query, rank)


def _restore(out, query, rank):
    """(B, Hq, L, E) -> query's leading dims."""
    if rank == 3:
        return out.squeeze(1)
    if rank > 4:
        return out.reshape(*query.shape[:-3], *out.shape[1:])
    return out


def _mask_as_bias(attn_mask, query, q, s_len):
    """SDPA's attn_mask -> flatattn's bias (Bb, Hb, Mq, S) broadcastable to (B, Hq, L, S): a boolean mask becomes
    0 (True: attend) / -inf in q's dtype; a float mask is used as it is (differentiable views only)."""
    if attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=attn_mask.device).masked_fill(
            ~attn_mask, float("-inf"))
    elif attn_mask.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise error("attn_mask", f"dtype {attn_mask.dtype}", "must be bool, float32, float16 or bfloat16",
                    "pass a boolean mask or an additive float mask")
    lead = tuple(query.shape[:-2])
    try:
        m = attn_mask.expand(*lead, q.shape[2], s_len)  # a view: broadcast dims get stride 0
    except RuntimeError:
        raise error("attn_mask", f"shape {tuple(attn_mask.shape)}",
                    f"must be broadcastable to {(*lead, q.shape[2], s_len)}", "pass a (B, H, L, S)-broadcastable mask") from None
    if m.dim() == 3:
        m = m.unsqueeze(1)
    elif m.dim() > 4:
        m = m.reshape(-1, *m.shape[-3:])
    return as_bias(m, q.shape[0], q.shape[1], q.shape[2], s_len)

def _use_sparse(attn_mask, query, q, k, v):
    if _bool_mask_path == "bias" or query.dim() != 4 or attn_mask.dim() > 4:
        return False
    if _bool_mask_path == "sparse":
        return True
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if q.device.type == "cuda" and grad:
        return False
    nel = 1
    for d in attn_mask.shape:
        nel *= d
    return max(nel, q.shape[2] * k.shape[2]) >= _SPARSE_MIN_ELEMENTS


def _sparse_bool_mask(attn_mask, q, k, v, scale, is_causal):
    """The boolean mask as block lists + bits (flatattn.block_sparse_from_mask), causal folded into the mask
    (a full block is visible everywhere, so the band cannot be left to the kernel)."""
    from .sparse import block_sparse_from_mask
    from .torch_ops import variant_forward

    b, hq, nq, _ = q.shape
    nk = k.shape[2]
    m = attn_mask.reshape((1,) * (4 - attn_mask.dim()) + tuple(attn_mask.shape))
    try:
        m = m.expand(m.shape[0], m.shape[1], nq, nk)
        torch.broadcast_shapes(m.shape, (b, hq, nq, nk))
    except RuntimeError:
        raise error("attn_mask", f"shape {tuple(attn_mask.shape)}", f"must be broadcastable to {(b, hq, nq, nk)}",
                    "pass a (B, H, L, S)-broadcastable mask") from None
    if is_causal:
        m = m & torch.ones(nq, nk, dtype=torch.bool, device=m.device).tril()
    bs = block_sparse_from_mask(m.to(q.device), _SPARSE_BLOCK, _SPARSE_BLOCK)
    opts = (None if scale is None else float(scale), False, True, -1, -1, 0.0, False, 0.0, 0, 0, "auto", 0)
    out, _ = variant_forward(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), opts, block_sparse=bs)
    return out.transpose(1, 2)


def _as_bhle(t):
    """(..., H, L, E) -> (B, H, L, E) (a view whenever the leading dims can be merged); last dim contiguous."""
    if t.stride(-1) != 1:
        t = t.contiguous()
    if t.dim() == 3:
        return t.unsqueeze(1)
    if t.dim() == 4:
        return t
    return t.reshape(-1, *t.shape[-3:])
