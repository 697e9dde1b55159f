"""Ring attention: exact attention over a sequence sharded across the ranks of a torch.distributed group.

Each rank holds a shard of q, k, v (B, n, H, D) (layout.py says which positions). K/V shards travel around the
ring (rank r sends to r+1, receives from r−1) while every rank attends its queries to the shard it holds; the
transfer of the next shard is posted before the current block's compute, so the two overlap (NCCL runs P2P on
its own streams). Partial outputs are merged in fp32 by their LSEs (_blocks.merge_). The backward sends the
K/V shards around again with an fp32 dK/dV accumulator that collects every rank's contribution and arrives back
at its owner after W hops; dQ is accumulated locally in fp32. Algorithm: Liu, Zaharia, Abbeel, "Ring Attention
with Blockwise Transformers for Near-Infinite Context", arXiv:2310.01889, §3; block math: FlashAttention-2
(Dao, arXiv:2307.08691, Alg. 1-2) through flatattn's forward/backward with LSE.
"""

from __future__ import annotations

import dataclasses
import functools

from .._errors import error
from . import _blocks, _group, layout as _layout

__all__ = ["ring_attention"]

_TAG_KV, _TAG_DKV = 11, 12


@dataclasses.dataclass(frozen=True)
class _Cfg:
    group: object
    rank: int
    world: int
    layout: str
    causal: bool
    window: tuple
    softcap: float
    scale: float
    deterministic: bool
    dropout_p: float = 0.0  # dropout (Options'): every block call carries its global position (Block.row0, col0)
    dropout_seed: int = 0
    dropout_offset: int = 0
    cu_seqlens: tuple | None = None  # document boundaries of the global sequence (ints), None: one document


def _check_local(q, k, v, causal, window, softcap, layout):
    """The first problem with this rank's arguments as a FlatattnError (not raised: every rank must reach the
    agreement collective first), or None."""
    import torch

    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            return error(name, type(t).__name__, "must be a torch.Tensor", "pass torch tensors (B, n, H, D)")
        if t.dim() != 4:
            return error(name, f"shape {tuple(t.shape)}", "must be rank 4 (B, n_local, H, D)",
                         "pass this rank's shard as (batch, tokens, heads, head dim)")
        if _group.dtype_code(t) < 0:
            return error(name, f"dtype {t.dtype}", "must be float16, bfloat16 or float32", "cast the input")
        if t.dtype != q.dtype or t.device != q.device:
            return error(name, f"{t.dtype} on {t.device}", f"must match q ({q.dtype} on {q.device})",
                         "pass q, k and v with one dtype on one device")
    if k.shape != v.shape:
        return error("v", f"shape {tuple(v.shape)}", f"must equal k's shape {tuple(k.shape)}", "pass matching k, v")
    b, n, hq, d = q.shape
    if (k.shape[0], k.shape[1], k.shape[3]) != (b, n, d):
        return error("k", f"shape {tuple(k.shape)}", f"must be (B, n_local, Hkv, D) = ({b}, {n}, Hkv, {d}) like q "
                     "(context parallelism shards one sequence: q and k/v shards hold the same positions)",
                     "shard q, k and v with the same layout")
    if hq % k.shape[2]:
        return error("k.shape[2]", str(k.shape[2]), f"Hkv must divide Hq = {hq} (GQA)", "pass whole head groups")
    if layout not in _layout.LAYOUTS:
        return error("layout", repr(layout), "unknown sequence layout", "use 'zigzag' (causal) or 'contiguous'")
    if layout == "zigzag" and n % 2:
        return error("q.shape[1]", str(n), "a zigzag shard holds two equal chunks, so n_local must be even",
                     "shard a sequence of a multiple of 2 x world tokens with layout.shard(..., 'zigzag')")
    if n == 0:
        return error("q.shape[1]", "0", "every rank needs at least one token", "use fewer ranks")
    wl, wr = window
    if wl < -1 or wr < -1:
        return error("window", str(tuple(window)), "each side must be >= -1 (-1: unbounded)", "pass (-1, -1) "
                     "for no window")
    if causal and wr > 0:
        return error("window", str(tuple(window)), "causal forces window right = 0",
                     "drop causal, or set the right side to -1 or 0")
    if softcap < 0:
        return error("softcap", repr(softcap), "must be >= 0 (0: off)", "pass a positive cap or 0")
    return None


def _check_extras(q, dropout_p, cu_seqlens, world):
    """The first problem with dropout_p or cu_seqlens as a FlatattnError (not raised), or None; and the document
    boundaries as a tuple of ints (None when absent or refused)."""
    import math

    import torch

    p = float(dropout_p)
    if not (math.isfinite(p) and 0.0 <= p < 1.0):
        return error("dropout_p", repr(dropout_p), "must be in [0, 1) (0 disables dropout)",
                     "pass a probability such as 0.1, or 0"), None
    if cu_seqlens is None:
        return None, None
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1:
        what = f"{cu_seqlens.dtype} rank {cu_seqlens.dim()}" if isinstance(cu_seqlens, torch.Tensor) else \
            type(cu_seqlens).__name__
        return error("cu_seqlens", what, "must be an int32 1-D tensor (S + 1) of the packed global sequence's "
                     "document boundaries", "pass torch.tensor([0, ..., N], dtype=torch.int32), the same on every "
                     "rank"), None
    b = tuple(int(x) for x in cu_seqlens.cpu().tolist())
    total = world * q.shape[1]
    if len(b) < 2 or b[0] != 0 or b[-1] != total or any(y < x for x, y in zip(b, b[1:])):
        return error("cu_seqlens", str(list(b)[:8]) + ("..." if len(b) > 8 else ""), f"must run from 0 to the "
                     f"global length N = world x n_local = {total}, non-decreasing (S + 1 >= 2 values)",
                     "pass the boundaries of the documents packed into the whole sequence (global positions, "
                     "whatever the layout)"), None
    if q.shape[0] != 1:
        return error("q.shape[0]", str(q.shape[0]), "must be 1 with cu_seqlens (the documents are packed into one "
                     "sequence)", "pack the batch's sequences into one and pass their boundaries"), None
    return None, b


def _check_call(q, k, err, dropout_p, cu_seqlens, rng_state, softmax_scale, world):
    """After the local checks (err: their first problem or None), the call's extras and the values every rank agrees
    on: (err, docs, dropout p, seed, offset, softmax scale, shape (B, n_local, Hq, D, Hkv)); zeros where err is set,
    so that a rank with bad input still takes part in the agreement. Shared by ring_attention and ulysses_attention."""
    import math

    docs = None
    if err is None:
        err, docs = _check_extras(q, dropout_p, cu_seqlens, world)
    p = float(dropout_p) if err is None else 0.0
    seed, offset = 0, 0
    if err is None and p > 0.0:
        err, seed, offset = _check_rng(rng_state)
    scale = float(softmax_scale) if softmax_scale is not None else (
        1.0 / math.sqrt(q.shape[-1]) if err is None else 0.0)
    shape = tuple(q.shape) + (k.shape[2],) if err is None else (0,) * 5
    return err, docs, p, seed, offset, scale, shape


def _check_rng(rng_state):
    """(error or None, seed, offset) of a caller's rng_state (None: (None, 0, 0), drawn later)."""
    if rng_state is None:
        return None, 0, 0
    try:
        seed, offset = (int(x) for x in rng_state)
        if not (0 <= seed < 2**63 and 0 <= offset < 2**63):
            raise ValueError
    except (TypeError, ValueError):
        return error("rng_state", repr(rng_state), "must be a pair (seed, offset) of ints in [0, 2^63)",
                     "pass the pair of an earlier call, or None to draw one"), 0, 0
    return None, seed, offset


def _exchange(send, recv, cfg, tag, to=1, frm=-1):
    """Posts send → rank+to and recv ← rank+frm (async, ranks mod W); returns the requests (objects with wait()).
    A group with its own ``exchange(send, recv, to, frm, tag)`` is used as it is: the tests' in-process ring of
    threads on one device (tests/python/test_distributed.py), which runs the ring's math on one GPU."""
    if hasattr(cfg.group, "exchange"):
        return cfg.group.exchange(send, recv, to, frm, tag)
    import torch.distributed as dist

    nxt = _group.global_rank(cfg.group, (cfg.rank + to) % cfg.world)
    prv = _group.global_rank(cfg.group, (cfg.rank + frm) % cfg.world)
    ops = [dist.P2POp(dist.isend, send, nxt, cfg.group, tag), dist.P2POp(dist.irecv, recv, prv, cfg.group, tag)]
    return dist.batch_isend_irecv(ops)


def _wait(reqs):
    for r in reqs:
        r.wait()


@functools.lru_cache(maxsize=64)
def _plan(layout, world, n, causal, window, fuse=True, cu_seqlens=None):
    """Every rank's Blocks per ring step (at step t rank r holds the K/V shard of rank (r − t) mod W), cut after
    the last step at which any rank has work: under a sliding window on contiguous shards the far shards are
    never needed, so neither their transfers nor their steps happen. fuse=False: one call per pair of runs, each
    with its global position (dropout); cu_seqlens: the document mask's boundaries (per-document calls)."""
    segs = [_layout.segments(layout, r, world, n) for r in range(world)]

    def hop(r, s):
        if cu_seqlens is not None:
            return _blocks.plan_hop_docs(segs[r], segs[s], causal, window, cu_seqlens)
        return _blocks.plan_hop(segs[r], segs[s], causal, window, fuse)

    steps = [[hop(r, (r - t) % world) for t in range(world)] for r in range(world)]
    last = max((t for r in range(world) for t in range(world) if steps[r][t]), default=0)
    return tuple(tuple(row[:last + 1]) for row in steps)


def _full_plan(cfg, n):
    return _plan(cfg.layout, cfg.world, n, cfg.causal, cfg.window, cfg.dropout_p == 0.0, cfg.cu_seqlens)


def _hops(cfg, n):
    """This rank's Blocks per ring step (the step count is the same on every rank)."""
    return _full_plan(cfg, n)[cfg.rank]


def _kw(cfg, blk):
    return dict(softmax_scale=cfg.scale, causal=blk.causal, top_left=True, window_left=blk.window_left,
                window_right=blk.window_right, softcap=cfg.softcap, deterministic=cfg.deterministic)


def _dropout_pos(cfg, blk):
    """The dropout stream position of a block call: (row0, col0, (batch0, head0, heads)). Without documents the
    whole sequence's (global row and key of the call's first element); under a document mask the document's, as
    single-device varlen numbers it: sequence b = the document's index, rows and keys counted from its start."""
    if blk.doc < 0:
        return blk.row0, blk.col0, (0, 0, 0)
    start = cfg.cu_seqlens[blk.doc]
    return blk.row0 - start, blk.col0 - start, (blk.doc, 0, 0)


def _opts(cfg, blk):
    """The variant ops' options (torch_ops._OPTS order) of a block call with dropout."""
    return (cfg.scale, blk.causal, True, blk.window_left, blk.window_right, cfg.softcap, cfg.deterministic,
            cfg.dropout_p, cfg.dropout_seed, cfg.dropout_offset)


def _block_forward(q, k, v, cfg, blk):
    from .. import torch_ops

    if cfg.dropout_p == 0.0:
        return torch_ops.attention(q, k, v, **_kw(cfg, blk))
    row0, col0, slot = _dropout_pos(cfg, blk)
    return torch_ops.variant_forward(q, k, v, _opts(cfg, blk) + ("auto", 0), dropout_row0=row0, dropout_col0=col0,
                                     dropout_slot=slot)


def _block_backward(dout, q, k, v, out, lse, cfg, blk):
    """One block's (dq, dk, dv): float32 for 16-bit inputs (the CPU engine; CUDA with D a multiple of 8, where fp32
    gradients need no 16-bit padding copy), so that the sums over the hops are rounded once; else in the input dtype
    (CUDA with other D: each hop's contribution rounded once)."""
    import torch

    from .. import torch_ops

    if q.dtype != torch.float32 and (q.device.type == "cpu" or q.shape[-1] % 8 == 0):
        grads = [torch.empty(t.shape, dtype=torch.float32, device=t.device) for t in (q, k, v)]
        row0, col0, slot = _dropout_pos(cfg, blk) if cfg.dropout_p > 0.0 else (0, 0, (0, 0, 0))
        return torch_ops.backward_into(dout, q, k, v, out, lse, *grads, _opts(cfg, blk) + (0,), dropout_row0=row0,
                                       dropout_col0=col0, dropout_slot=slot)
    if cfg.dropout_p == 0.0:
        return torch_ops.attention_backward(dout, q, k, v, out, lse, **_kw(cfg, blk))
    row0, col0, slot = _dropout_pos(cfg, blk)
    return torch_ops.variant_backward(dout, q, k, v, out, lse, _opts(cfg, blk) + (0,), dropout_row0=row0,
                                      dropout_col0=col0, dropout_slot=slot)[:3]


# The dropout stream's key grid (kDropoutColAlign of src/core/philox.h): a Philox call serves 16 keys of a 64-key
# group, so a block call's mask is its sequence's at (row0, col0) only for col0 a multiple of it
# (Options::dropout_col0's rule in src/core/validate.cc).
DROPOUT_COL_ALIGN = 64


def _check_plan(cfg, n):
    """With dropout, the first problem with the plan's key positions as a FlatattnError, or None (the plan is the
    same on every rank, so every rank finds the same problem). A block call's mask is its sequence's at
    (row0, col0) only for col0 a multiple of DROPOUT_COL_ALIGN (the stream's Philox calls serve 64-key groups,
    src/core/philox.h); under a document mask col0 counts from the document's start (_dropout_pos)."""
    if cfg.dropout_p == 0.0:
        return None
    a = DROPOUT_COL_ALIGN
    c = n // 2 if cfg.layout == "zigzag" else n
    if c % a and cfg.cu_seqlens is None:
        what = "each zigzag chunk (n_local / 2)" if cfg.layout == "zigzag" else "each shard"
        per = 2 * a if cfg.layout == "zigzag" else a
        return error("q.shape[1]", str(n), f"with dropout_p > 0 {what} must start at a multiple of {a} of the global "
                     f"sequence: n_local must be a multiple of {per} (the dropout stream's Philox calls serve {a}-key "
                     "groups)", f"pad the sequence to a multiple of {per} x world tokens, or train without dropout here")
    for row in _full_plan(cfg, n):
        for blocks in row:
            for blk in blocks:
                _, col0, _ = _dropout_pos(cfg, blk)
                if col0 >= 0 and col0 % a == 0:
                    continue
                if blk.doc >= 0 and _is_chunk_start(cfg, n, blk.col0):
                    start = cfg.cu_seqlens[blk.doc]
                    return error("cu_seqlens", f"document {blk.doc} = [{start}, {cfg.cu_seqlens[blk.doc + 1]})",
                                 f"with dropout_p > 0 a document that spans shards must meet each shard boundary "
                                 f"inside it at a multiple of {a} of the document: the boundary at global position "
                                 f"{blk.col0} is its column {col0} (shard chunks of {c} tokens, the dropout stream "
                                 f"draws {a} keys per Philox call, varlen numbers it per document)",
                                 f"start documents that cross shards at multiples of {a} (pad documents to multiples "
                                 f"of {a} tokens, chunks of n_local{' / 2' if cfg.layout == 'zigzag' else ''} a "
                                 f"multiple of {a}), or train without dropout here")
                return error("window", str(tuple(cfg.window)), f"with dropout_p > 0 the window's left side cuts "
                             f"a key block at column {col0} of its {'document' if blk.doc >= 0 else 'sequence'}, not "
                             f"a multiple of {a} (the dropout stream draws {a} keys per Philox call)",
                             f"use a left window side that is a multiple of {a}, or train without dropout here")
    return None


def _is_chunk_start(cfg, n, g):
    """Whether global position g starts a shard chunk (where a key run begins)."""
    c = n // 2 if cfg.layout == "zigzag" else n
    return g % c == 0


def _forward(q, k, v, cfg):
    import torch

    b, n, hq, d = q.shape
    acc_out = torch.zeros(b, n, hq, d, dtype=torch.float32, device=q.device)
    acc_lse = torch.full((b, hq, n), float("-inf"), dtype=torch.float32, device=q.device)
    kv, spare = torch.stack([k, v]), None
    hops = _hops(cfg, n)
    for t, blocks in enumerate(hops):
        reqs = []
        if t + 1 < len(hops):  # post the next shard's transfer first: it overlaps this hop's compute
            spare = torch.empty_like(kv) if spare is None else spare
            reqs = _exchange(kv, spare, cfg, _TAG_KV)
        for blk in blocks:
            o, lse = _block_forward(q[:, blk.q0:blk.q1], kv[0, :, blk.k0:blk.k1], kv[1, :, blk.k0:blk.k1], cfg, blk)
            _blocks.merge_(acc_out[:, blk.q0:blk.q1], acc_lse[:, :, blk.q0:blk.q1], o, lse)
        _wait(reqs)
        if reqs:
            kv, spare = spare, kv
    return acc_out.to(q.dtype), acc_lse


def _backward(dout, q, k, v, out, lse, cfg):
    import torch

    n = q.shape[1]
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    kv, spare = torch.stack([k, v]), None
    incoming = torch.empty((2, *k.shape), dtype=torch.float32, device=q.device)  # the dK/dV accumulator in flight
    dkv_reqs, keep = [], None
    hops = _hops(cfg, n)
    for t, blocks in enumerate(hops):
        reqs = []
        if t + 1 < len(hops):
            spare = torch.empty_like(kv) if spare is None else spare
            reqs = _exchange(kv, spare, cfg, _TAG_KV)
        dkv = torch.zeros((2, *k.shape), dtype=torch.float32, device=q.device)
        for blk in blocks:
            rows = slice(blk.q0, blk.q1)
            keys = slice(blk.k0, blk.k1)
            g = _block_backward(dout[:, rows], q[:, rows], kv[0, :, keys], kv[1, :, keys], out[:, rows],
                                lse[:, :, rows].contiguous(), cfg, blk)
            dq[:, rows] += g[0]
            dkv[0, :, keys] += g[1]
            dkv[1, :, keys] += g[2]
        _wait(dkv_reqs)  # the accumulator of this shard, from rank−1 (and our previous send is done)
        if t > 0:
            dkv += incoming
        keep = dkv  # the send buffer lives until its request is waited on
        if t + 1 < len(hops):
            dkv_reqs = _exchange(keep, incoming, cfg, _TAG_DKV)
        elif t > 0:  # the last step: the accumulator goes home to its owner (rank+1 when every step ran)
            dkv_reqs = _exchange(keep, incoming, cfg, _TAG_DKV, to=-t, frm=t)
        _wait(reqs)
        if reqs:
            kv, spare = spare, kv
    _wait(dkv_reqs)
    mine = incoming if len(hops) > 1 else keep  # our own shard's accumulator, complete
    return dq.to(q.dtype), mine[0].to(k.dtype), mine[1].to(v.dtype)


def _autograd_function():
    import torch

    class RingAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, cfg):
            out, lse = _forward(q, k, v, cfg)
            ctx.save_for_backward(q, k, v, out, lse)
            ctx.cfg = cfg
            ctx.mark_non_differentiable(lse)
            return out, lse

        @staticmethod
        def backward(ctx, dout, dlse):
            q, k, v, out, lse = ctx.saved_tensors
            dq, dk, dv = _backward(dout.contiguous(), q, k, v, out, lse, ctx.cfg)
            return dq, dk, dv, None

    return RingAttention


_FN = None


def ring_attention(q, k, v, group=None, *, causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0,
                   layout=None, deterministic=False, return_lse=False, dropout_p=0.0, rng_state=None,
                   cu_seqlens=None):
    """Exact attention of this rank's query shard over the whole sequence, sharded across `group`.

    Args:
        q: (B, n, Hq, D) this rank's queries; k, v: (B, n, Hkv, D) its keys/values (GQA: Hkv divides Hq; only the
            Hkv heads travel). float16, bfloat16 or float32, one device (CUDA with NCCL, CPU with gloo). Every rank
            passes the same shapes: the sequence of N = W·n tokens is split evenly (layout.shard).
        group: a torch.distributed process group (None: the default group); every member calls this together.
        causal: causal mask on the global positions (both alignments coincide on the full square sequence).
        softmax_scale: default 1/sqrt(D). window: (left, right) global sliding window, -1 unbounded; hops whose
            shards lie entirely outside it are not computed. softcap: score soft cap (0: off).
        layout: which positions each rank holds: 'zigzag' (default when causal: balanced causal work) or
            'contiguous' (default otherwise); see flatattn.distributed.layout.
        deterministic: passed to flatattn's backward. return_lse: also return the LSE (B, Hq, n) fp32.
        dropout_p: attention dropout in [0, 1) with each rank's mask equal to the single-device mask of the whole
            sequence (flatattn.forward's Philox stream, docs/variants.md "Dropout"): every block call passes the
            global position of its first row and key (Options::dropout_row0/col0) and the backward regenerates the
            same masks. A Philox call of the stream serves 16 keys of a 64-key group, so every block must start at a
            global key column that is a multiple of 64: n_local a multiple of 128 (zigzag) or 64 (contiguous), and a window whose left
            side cuts a block elsewhere is refused (checked up front, the same error on every rank). Blocks are not
            fused with dropout (a zigzag shard's two chunks are not adjacent globally): up to 3 calls per hop.
        rng_state: (seed, offset) of the dropout stream, ints in [0, 2^63), the same on every rank (checked);
            None: drawn from torch's default generator of q's device as flatattn.flash_attn_func does, on every rank
            (each generator advances as in a single-device call), group rank 0's pair used by all. The single-device
            equivalent is flatattn.forward(..., dropout_p, dropout_seed=seed, dropout_offset=offset) on the whole
            sequence.
        cu_seqlens: document mask: int32 1-D tensor (S + 1) of the boundaries of S documents packed into the global
            sequence of N = W n tokens (0 = cu_seqlens[0] <= ... <= cu_seqlens[S] = N, global positions whatever the
            layout, the same on every rank; B must be 1), as the C++ ring's RingForwardArgs::cu_seqlens. A query
            sees only keys of its own document (causal and window within it): the single-device equivalent is
            varlen flatattn with cu_seqlens_q = cu_seqlens_k = cu_seqlens. Each hop makes one call per (run,
            document piece) pair (more, smaller calls). With dropout each such call draws its document's stream
            as single-device varlen numbers it (sequence = the document's index, Options::dropout_batch0; rows and
            keys from the document's start), so the masks are varlen dropout's; the 32-key grid then applies
            within the document: a document that crosses a shard chunk boundary must meet it at a multiple of 32
            of the document (documents inside one chunk may start anywhere), else refused naming cu_seqlens.

    Returns:
        out (B, n, Hq, D) in q's dtype (merged in fp32, rounded once), and lse when return_lse. Differentiable in
        q, k, v (torch.autograd); the backward runs the ring again (dQ local fp32, dK/dV fp32 around the ring).
        Each block's gradients come back in fp32 on the CPU (the engine writes fp32 dq/dk/dv of 16-bit inputs), so
        the gradients are rounded once; on CUDA the kernels return them in the input dtype (each hop's
        contribution rounded once; docs/context_parallel.md, "Precision").

    Errors (FlatattnError on every rank of the group; nothing is communicated besides one small all_gather when
    input is refused): torch.distributed not initialized, this process not in `group`; bad shapes, dtypes,
    devices, window or layout on any rank; shapes or options that differ between ranks (uneven shards); an odd
    n under 'zigzag'; dropout_p outside [0, 1), a bad rng_state; bad cu_seqlens; dropout with blocks off the
    64-key grid (see dropout_p; with cu_seqlens, of the document: see cu_seqlens). Not supported: ALiBi, sinks,
    an additive bias (use flatattn's single-device APIs).
    """
    import torch

    global _FN
    group, rank, world = _group.resolve(group)
    if layout is None:
        layout = "zigzag" if causal else "contiguous"
    window = tuple(int(w) for w in window)
    err = _check_local(q, k, v, bool(causal), window, float(softcap), layout)
    err, docs, p, seed, offset, scale, shape = _check_call(q, k, err, dropout_p, cu_seqlens, rng_state,
                                                           softmax_scale, world)
    fields = [("q.shape[0] (B)", shape[0]), ("q.shape[1] (n_local)", shape[1]), ("q.shape[2] (Hq)", shape[2]),
              ("q.shape[3] (D)", shape[3]), ("k.shape[2] (Hkv)", shape[4]),
              ("q.dtype", _group.dtype_code(q) if err is None else -1), ("causal", bool(causal)),
              ("window.left", window[0]), ("window.right", window[1]), ("softcap", float(softcap)),
              ("softmax_scale", scale), ("layout", _layout.LAYOUTS.index(layout) if layout in _layout.LAYOUTS else -1)
              ] + _group.extras_fields(p, seed, offset, docs)
    dev = q.device if isinstance(q, torch.Tensor) else torch.device("cpu")
    _group.agree(group, world, dev, err, fields)
    if p > 0.0 and rng_state is None:  # every rank draws (its generator advances as one call's), rank 0's pair wins
        from ..flash_attn_interface import draw_rng_state

        seed, offset = _group.from_first_rank(group, dev, draw_rng_state(q.device))
    cfg = _Cfg(group, rank, world, layout, bool(causal), window, float(softcap), scale, bool(deterministic), p,
               seed, offset, docs)
    err = _check_plan(cfg, q.shape[1])
    if err is not None:
        raise err
    if _FN is None:
        _FN = _autograd_function()
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        out, lse = _FN.apply(q, k, v, cfg)
    else:
        out, lse = _forward(q, k, v, cfg)
    return (out, lse) if return_lse else out
