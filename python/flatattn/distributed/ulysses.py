"""Ulysses attention (DeepSpeed-Ulysses: Jacobs et al., "DeepSpeed Ulysses: System Optimizations for Enabling
Training of Extreme Long Sequence Transformer Models", arXiv:2309.14509, §3): an all-to-all turns sequence-sharded
q, k, v (B, n, H, D) into head-sharded ones (B, W·n, H/W, D), every rank runs flatattn on the whole sequence for
its H/W heads, and a second all-to-all turns the output back into sequence shards. Needs H divisible by the world
size; the shards must be contiguous (rank r holds positions [r·n, (r+1)·n)), since the gathered sequence is the
shards in rank order.
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
                      deterministic=False):
    """Exact attention over a sequence sharded contiguously across `group`, by head-parallel all-to-all.

    Args:
        q: (B, n, Hq, D), k, v: (B, n, Hkv, D) this rank's contiguous shard (layout 'contiguous'); Hq and Hkv must
            be divisible by the world size W. float16, bfloat16 or float32. Options as flatattn's attention on the
            full sequence (causal, window, softcap, softmax_scale default 1/sqrt(D)).
        group: torch.distributed process group (None: default); every member calls this together.

    Returns:
        out (B, n, Hq, D) in q's dtype, differentiable in q, k, v (the backward runs flatattn's backward on the
        head shard and the all-to-alls in reverse).

    Errors (FlatattnError on every rank): Hq or Hkv not divisible by W (fix: ring_attention, or a world size that
    divides the heads); shapes or options that differ between ranks; the checks of ring_attention.
    """
    import math

    import torch
    from .. import torch_ops
    from .ring import _check_local

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
    scale = float(softmax_scale) if softmax_scale is not None else (
        1.0 / math.sqrt(q.shape[-1]) if err is None else 0.0)
    shape = tuple(q.shape) + (k.shape[2],) if err is None else (0,) * 5
    fields = [("q.shape[0] (B)", shape[0]), ("q.shape[1] (n_local)", shape[1]), ("q.shape[2] (Hq)", shape[2]),
              ("q.shape[3] (D)", shape[3]), ("k.shape[2] (Hkv)", shape[4]),
              ("q.dtype", _group.dtype_code(q) if err is None else -1), ("causal", bool(causal)),
              ("window.left", window[0]), ("window.right", window[1]), ("softcap", float(softcap)),
              ("softmax_scale", scale)]
    dev = q.device if isinstance(q, torch.Tensor) else torch.device("cpu")
    _group.agree(group, world, dev, err, fields)
    if _FN is None:
        _FN = _autograd_function()
    heads = [_FN.apply(t, group, world, 2, 1) for t in (q, k, v)]  # (B, W·n, H/W, D)
    out, _ = torch_ops.attention(*heads, softmax_scale=scale, causal=bool(causal), window_left=window[0],
                                 window_right=window[1], softcap=float(softcap), deterministic=bool(deterministic))
    return _FN.apply(out, group, world, 1, 2)
