"""PyTorch SDPA compatible attention: ``flatattn.scaled_dot_product_attention``.

Same signature and (B, H, N, D) layout as ``torch.nn.functional.scaled_dot_product_attention``; the tensors
are handed to the kernels as (B, N, H, D) stride views, never copied (unless the last dim is not contiguous).
``is_causal`` is aligned top-left as in SDPA (key j visible to query i when j <= i).
"""

from __future__ import annotations

import functools

import torch

from .torch_ops import attention
from ._errors import drop_in, error

# Refused calls raise RuntimeError as the originals do (see _errors.drop_in).
_drop_in = functools.partial(drop_in, compiling=torch.compiler.is_compiling)

__all__ = ["scaled_dot_product_attention"]


@_drop_in
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """Attention over query (..., Hq, L, E), key (..., Hkv, S, E), value (..., Hkv, S, E) -> (..., Hq, L, E).

    Leading dims are batch dims (a 3-D input is (B, L, E), one head). ``scale`` defaults to 1/sqrt(E);
    ``enable_gqa=True`` lets Hq be a multiple of Hkv. ``dropout_p`` in [0, 1) drops attention probabilities
    (flatattn's Philox stream, with ``(seed, offset)`` drawn from torch's generator of the device as
    ``flash_attn_func`` does; the backward regenerates the same mask). ``attn_mask`` is not supported yet and
    raises :class:`flatattn.FlatattnUnsupportedError` naming the argument (use ``is_causal`` for causal masks
    and ``flatattn.flash_attn_varlen_func`` for padding). Differentiable in query, key, value.
    A refused call raises a ``RuntimeError`` (as torch does) that is also a :class:`flatattn.FlatattnError`
    (:class:`flatattn.FlatattnDropInError` or :class:`flatattn.FlatattnUnsupportedError`).
    """
    if attn_mask is not None:
        raise error("attn_mask", f"tensor {tuple(attn_mask.shape)}", "arbitrary attention masks are not supported yet",
                    "use is_causal=True for causal masks, flash_attn_varlen_func for padded batches",
                    unsupported=True)
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
    drop = {}
    if dropout_p:
        from .flash_attn_interface import draw_rng_state

        seed, offset = draw_rng_state(q.device)
        drop = {"dropout_p": dropout_p, "dropout_seed": seed, "dropout_offset": offset}
    out, _ = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale,
                       causal=bool(is_causal), top_left=True, **drop)
    out = out.transpose(1, 2)  # (B, Hq, L, E), contiguous when query was
    if rank == 3:
        return out.squeeze(1)
    if rank > 4:
        return out.reshape(*query.shape[:-3], *out.shape[1:])
    return out


def _as_bhle(t):
    """(..., H, L, E) -> (B, H, L, E) (a view whenever the leading dims can be merged); last dim contiguous."""
    if t.stride(-1) != 1:
        t = t.contiguous()
    if t.dim() == 3:
        return t.unsqueeze(1)
    if t.dim() == 4:
        return t
    return t.reshape(-1, *t.shape[-3:])
