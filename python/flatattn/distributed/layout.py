"""Sequence layouts of context parallelism: which global token positions each rank holds.

``contiguous``: rank r of W holds positions [r·n, (r+1)·n) of a sequence of N = W·n tokens.
``zigzag`` (DualChunkSwap, Megatron-LM's load balancing for causal context parallelism; Liu et al., "Ring Attention
with Blockwise Transformers", arXiv:2310.01889, and its zigzag/striped follow-ups, e.g. Brandon et al., "Striped
Attention", arXiv:2311.09431, §3): the sequence is cut into 2W chunks of c = N / (2W) tokens and rank r holds chunks
r and 2W−1−r, in that order. Under a causal mask every rank then has the same number of visible (query, key) pairs,
so no rank waits for the others at each ring hop.

Tensors are (B, N, H, D) (the sequence is dim 1), as flatattn's torch APIs take them.
"""

from __future__ import annotations

from .._errors import error

__all__ = ["LAYOUTS", "segments", "shard", "unshard"]

LAYOUTS = ("contiguous", "zigzag")


def check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise error("layout", repr(layout), "unknown sequence layout", "use 'zigzag' (causal) or 'contiguous'")


def segments(layout: str, rank: int, world: int, n_local: int):
    """The (global_start, local_start, length) runs of positions that `rank` holds, in local order; global starts
    increase. zigzag needs an even n_local (checked by the callers)."""
    if layout == "contiguous":
        return ((rank * n_local, 0, n_local),)
    c = n_local // 2
    return ((rank * c, 0, c), ((2 * world - 1 - rank) * c, c, c))


def shard(x, rank: int, world: int, layout: str = "zigzag", dim: int = 1):
    """This rank's part of a full sequence `x` (sequence along `dim`, default 1 as in (B, N, H, D)), as a
    contiguous tensor: ``layout='zigzag'`` gives chunks rank and 2·world−1−rank of 2·world equal chunks,
    ``'contiguous'`` the rank-th of world equal parts.

    Errors (FlatattnError): an unknown layout; rank outside [0, world); N not divisible by 2·world (zigzag) or by
    world (contiguous) — pad the sequence (padded keys must then be masked by the caller, e.g. a window or
    zero-contribution tokens) or pick another world size.
    """
    import torch

    check_layout(layout)
    if not 0 <= rank < world:
        raise error("rank", str(rank), f"must be in [0, world) = [0, {world})", "pass the rank in the group")
    n = x.shape[dim]
    parts = 2 * world if layout == "zigzag" else world
    if n % parts:
        rule = (f"the zigzag layout needs N divisible by 2 x world = {parts}" if layout == "zigzag"
                else f"the contiguous layout needs N divisible by world = {parts}")
        raise error("x.shape[dim]", str(n), rule, f"pad the sequence to a multiple of {parts} tokens")
    chunks = x.chunk(parts, dim=dim)
    if layout == "contiguous":
        return chunks[rank].contiguous()
    return torch.cat([chunks[rank], chunks[parts - 1 - rank]], dim=dim).contiguous()


def unshard(parts, layout: str = "zigzag", dim: int = 1):
    """The full sequence from every rank's shard (a list in rank order, e.g. from all_gather): the inverse of
    :func:`shard`. Errors: an unknown layout; shards of unequal length along `dim`, or of odd length (zigzag)."""
    import torch

    check_layout(layout)
    world = len(parts)
    lens = {p.shape[dim] for p in parts}
    if len(lens) != 1:
        raise error("parts", f"lengths {sorted(lens)}", "every shard must have the same length",
                    "pass the shards of one shard() call per rank")
    if layout == "contiguous":
        return torch.cat(list(parts), dim=dim)
    n_local = lens.pop()
    if n_local % 2:
        raise error("parts", f"length {n_local}", "zigzag shards hold two equal chunks (even length)",
                    "pass zigzag shards from shard(..., layout='zigzag')")
    chunks = [None] * (2 * world)
    for r, p in enumerate(parts):
        a, b = p.chunk(2, dim=dim)
        chunks[r], chunks[2 * world - 1 - r] = a, b
    return torch.cat(chunks, dim=dim)
