"""Process-group plumbing shared by ring and Ulysses attention: resolving the group, the ring neighbours, and
the check that every rank passed the same shapes and options (one small all_gather), so a mistake on one rank
raises a clear error on every rank instead of a hang or silently wrong results."""

from __future__ import annotations

import math

from .._errors import error

_DTYPES = ("float16", "bfloat16", "float32")


def resolve(group):
    """(group, rank in it, world size). Errors: torch.distributed unavailable or not initialized; this process
    not a member of `group`."""
    import torch.distributed as dist

    if not dist.is_available():
        raise error("group", "torch.distributed", "this torch build has no torch.distributed",
                    "install a torch build with distributed support", unsupported=True)
    if not dist.is_initialized():
        raise error("group", "None" if group is None else "a group", "torch.distributed is not initialized",
                    "call torch.distributed.init_process_group (backend 'nccl' on GPUs, 'gloo' on CPUs) first")
    if group is None:
        group = dist.group.WORLD
    rank = dist.get_rank(group)
    if rank < 0:
        raise error("group", f"a group without global rank {dist.get_rank()}",
                    "this process is not a member of the group", "call it only on the group's ranks, or pass a "
                    "group made by dist.new_group that contains this rank")
    return group, rank, dist.get_world_size(group)


def global_rank(group, rank):
    import torch.distributed as dist

    return dist.get_global_rank(group, rank) if group is not dist.group.WORLD else rank


def agree(group, world, device, local_error, fields):
    """Every rank's (local_error, fields) are gathered; raises on every rank when any rank's input was refused
    (that rank gets its own error, the others one naming it) or when a field differs between ranks.
    fields: [(name, value: float)] identical in order on every rank."""
    import torch
    import torch.distributed as dist

    vals = [0.0 if local_error is None else 1.0] + [float(v) for _, v in fields]
    mine = torch.tensor(vals, dtype=torch.float64, device=device)
    every = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(every, mine, group=group)
    table = torch.stack(every).cpu().tolist()
    if local_error is not None:
        raise local_error
    bad = [r for r, row in enumerate(table) if row[0] != 0]
    if bad:
        raise error("group", f"rank {bad[0]}", "another rank's input was refused (its own error says why)",
                    "fix the input on that rank; every rank must pass valid, matching shards")
    for c, (name, _) in enumerate(fields, start=1):
        seen = [row[c] for row in table]
        if any(x != seen[0] and not (math.isnan(x) and math.isnan(seen[0])) for x in seen):
            raise error(name, "per rank " + ", ".join(_fmt(x) for x in seen), "must be the same on every rank of the "
                        "group (equal shards: the sequence split evenly, one call's options)",
                        "shard the sequence evenly (pad to a multiple of the world size) and pass the same options "
                        "on every rank")


def extras_fields(p, seed, offset, docs):
    """agree()'s fields of dropout (p, rng_state) and document masks (cu_seqlens), shared by ring and Ulysses."""
    return [("dropout_p", p), ("rng_state seed (high 32 bits)", seed >> 32),
            ("rng_state seed (low 32 bits)", seed & 0xFFFFFFFF), ("rng_state offset (high 32 bits)", offset >> 32),
            ("rng_state offset (low 32 bits)", offset & 0xFFFFFFFF),
            ("cu_seqlens (documents)", -1 if docs is None else len(docs) - 1), ("cu_seqlens (values)", checksum(docs))]


def checksum(values):
    """A float64-exact checksum of a sequence of ints (FNV-1a over their 64-bit values, folded to 48 bits), so
    ranks with different document boundaries disagree in agree(); -1 for None."""
    if values is None:
        return -1
    h = 0xCBF29CE484222325
    for x in values:
        h = ((h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return (h ^ (h >> 48)) & 0xFFFFFFFFFFFF


def from_first_rank(group, device, ints):
    """The group rank 0's tuple of ints in [0, 2^63) on every rank (one small broadcast)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(x) for x in ints], dtype=torch.int64, device=device)
    dist.broadcast(t, src=global_rank(group, 0), group=group)
    return tuple(int(x) for x in t.cpu().tolist())


def _fmt(x):
    return str(int(x)) if x == int(x) else repr(x)


def dtype_code(t):
    name = str(t.dtype).replace("torch.", "")
    return _DTYPES.index(name) if name in _DTYPES else -1
