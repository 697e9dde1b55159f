"""Ulysses attention (DeepSpeed-Ulysses: Jacobs et al., "DeepSpeed Ulysses: System Optimizations for Enabling
Training of Extreme Long Sequence Transformer Models", arXiv:2309.14509, §3): an all-to-all turns sequence-sharded
q, k, v (B, n, H, D) into head-sharded ones (B, W·n, H/W, D), every rank runs flatattn on the whole sequence for
its H/W heads, and a second all-to-all turns the output back into sequence shards. Needs H divisible by the world
size; the shards must be contiguous (rank r holds positions [r·n, (r+1)·n)), since the gathered sequence is the
shards in rank order.

Dropout: rank r computes query heads h0 = r·Hq/W .. h0 + Hq/W − 1 of the whole sequence, so its call draws the
single-device stream's heads there (Options::dropout_head0 = h0, dropout_heads = Hq): the mask is the
single-device one. Document masks: after the all-to-all every rank holds the whole packed sequence, so cu_seqlens
passes through to one varlen call (its dropout stream numbered per document, as single-device varlen).
"""

from __future__ import annotations

from .._errors import error
from . import _group

__all__ = ["ulysses_attention"]


def _a2a(x, group, world, split_dim, cat_dim):
    """all_to_all_single: x split into `world` parts along split_dim (part j goes to rank j); the parts received
    (part j from rank j) concatenated along cat_dim."""
    import torch
    import torch.distributed as dist

    send = torch.stack(x.chunk(world, dim=split_dim)).contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return torch.cat(recv.unbind(0), dim=cat_dim)


def _autograd_function():
    import torch

    class AllToAll(torch.autograd.Function):
        """Sequence → head sharding (split heads, gather sequence) or back; its gradient is the reverse swap."""

        @staticmethod
        def forward(ctx, x, group, world, split_dim, cat_dim):
            ctx.args = (group, world, split_dim, cat_dim)
            return _a2a(x, group, world, split_dim, cat_dim)

        @staticmethod
        def backward(ctx, g):
            group, world, split_dim, cat_dim = ctx.args
            return _a2a(g.contiguous(), group, world, cat_dim, split_dim), None, None, None, None

    return AllToAll


_FN = None


def ulysses_attention(q, k, v, group=None, *, causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0,
                      deterministic=False, dropout_p=0.0, rng_state=None, cu_seqlens=None):
    """Exact attention over a sequence sharded contiguously across `group`, by head-parallel all-to-all.

    Args:
        q: (B, n, Hq, D), k, v: (B, n, Hkv, D) this rank's contiguous shard (layout 'contiguous'); Hq and Hkv must
            be divisible by the world size W. float16, bfloat16 or float32. Options as flatattn's attention on the
            full sequence (causal, window, softcap, softmax_scale default 1/sqrt(D)).
        group: torch.distributed process group (None: default); every member calls this together.
        dropout_p, rng_state: attention dropout as ring_attention's: each rank's mask is the single-device mask of
            the whole sequence (rank r passes its first query head r Hq / W and Hq as the stream's head numbering,
            Options::dropout_head0/dropout_heads); rng_state None draws (seed, offset) as flash_attn_func does, group
            rank 0's pair used by all. No key-alignment condition (every call holds whole sequences).
        cu_seqlens: document mask as ring_attention's (int32 (S + 1) boundaries of the packed global sequence of
            N = W n tokens, the same on every rank, B = 1): every rank runs single-device varlen attention over
            the documents for its heads (with dropout: the stream numbered per document, as varlen).

    Returns:
        out (B, n, Hq, D) in q's dtype, differentiable in q, k, v (the backward runs flatattn's backward on the
        head shard and the all-to-alls in reverse).

    Errors (FlatattnError on every rank): Hq or Hkv not divisible by W (fix: ring_attention, or a world size that
    divides the heads); shapes or options that differ between ranks (dropout and rng_state, cu_seqlens included);
    the checks of ring_attention (bad dropout_p, rng_state, cu_seqlens).
    """
    import torch
    from .. import torch_ops
    from .ring import _check_call, _check_local

    global _FN
    group, rank, world = _group.resolve(group)
    window = tuple(int(w) for w in window)
    err = _check_local(q, k, v, bool(causal), window, float(softcap), "contiguous")
    if err is None:
        for name, h in (("q.shape[2]", q.shape[2]), ("k.shape[2]", k.shape[2])):
            if h % world:
                err = error(name, str(h), f"Ulysses splits heads over the ranks: must be divisible by the world size "
                            f"{world}", "use ring_attention, or a group whose size divides the head count")
                break
    err, docs, p, seed, offset, scale, shape = _check_call(q, k, err, dropout_p, cu_seqlens, rng_state,
                                                           softmax_scale, world)
    fields = [("q.shape[0] (B)", shape[0]), ("q.shape[1] (n_local)", shape[1]), ("q.shape[2] (Hq)", shape[2]),
              ("q.shape[3] (D)", shape[3]), ("k.shape[2] (Hkv)", shape[4]),
              ("q.dtype", _group.dtype_code(q) if err is None else -1), ("causal", bool(causal)),
              ("window.left", window[0]), ("window.right", window[1]), ("softcap", float(softcap)),
              ("softmax_scale", scale)] + _group.extras_fields(p, seed, offset, docs)
    dev = q.device if isinstance(q, torch.Tensor) else torch.device("cpu")
    _group.agree(group, world, dev, err, fields)
    if p > 0.0 and rng_state is None:  # every rank draws (its generator advances as one call's), rank 0's pair wins
        from ..flash_attn_interface import draw_rng_state

        seed, offset = _group.from_first_rank(group, dev, draw_rng_state(q.device))
    if _FN is None:
        _FN = _autograd_function()
    heads = [_FN.apply(t, group, world, 2, 1) for t in (q, k, v)]  # (B, W·n, H/W, D)
    if p == 0.0 and docs is None:
        out, _ = torch_ops.attention(*heads, softmax_scale=scale, causal=bool(causal), window_left=window[0],
                                     window_right=window[1], softcap=float(softcap), deterministic=bool(deterministic))
    else:
        opts = (scale, bool(causal), True, window[0], window[1], float(softcap), bool(deterministic), p, seed,
                offset, "auto", 0)
        slot = (0, rank * q.shape[2] // world, q.shape[2]) if p > 0.0 else (0, 0, 0)  # the stream's heads h0..
        if docs is None:
            out, _ = torch_ops.variant_forward(*heads, opts, dropout_slot=slot)
        else:
            cu = torch.tensor(docs, dtype=torch.int32, device=q.device)
            mx = max(b - a for a, b in zip(docs, docs[1:]))
            out, _ = torch_ops.variant_forward(*(t[0] for t in heads), opts, cu_seqlens_q=cu, cu_seqlens_k=cu,
                                               max_seqlen_q=mx, max_seqlen_k=mx, dropout_slot=slot)
            out = out.unsqueeze(0)
    return _FN.apply(out, group, world, 1, 2)
