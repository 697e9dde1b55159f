"""FlexAttention drop-in: ``flatattn.flex_attention(query, key, value, block_mask=...)``.

Takes a torch ``BlockMask`` (torch.nn.attention.flex_attention.create_block_mask / BlockMask.from_kv_blocks)
directly and runs it on flatattn's block-sparse path (include/flatattn/sparse.h): the block lists are the
BlockMask's own fields, and the element mask of its partial blocks is its ``mask_mod`` evaluated with torch on
those blocks only (vectorized over each block's (q, kv) grid, on the tensors' device) and bit-packed.
Memory O(partial blocks); full blocks and skipped blocks cost no mask evaluation.

The conversion is done once per BlockMask and kept on it (``_cached_block_sparse``): a model calls attention with
the same BlockMask in every layer and step, and torch's own flex_attention does its block-mask work once too, in
create_block_mask. The cache is keyed on the call's (Nq, Nk, device), the identity and in-place version counter of
every list tensor of the BlockMask, its mask_mod, and the tensors the mask_mod's closure holds: an in-place change
to any of them converts again.
"""

from __future__ import annotations

import functools

import torch

from ._errors import as_drop_in_error, drop_in, error
from .sparse import BlockSparse, _bits_of, _partial_blocks, _sorted_lists


def _bad(argument, value, limit, fix):
    return as_drop_in_error(error(argument, value, limit, fix))


def block_sparse_from_block_mask(block_mask, nq, nk, device=None):
    """The flatattn BlockSparse of a torch BlockMask for a call with Nq queries and Nk keys.

    BlockMask layout (torch.nn.attention.flex_attention.BlockMask): ``BLOCK_SIZE = (Q_BLOCK_SIZE,
    KV_BLOCK_SIZE)``; kv_num_blocks (B', H', NQB) int32, kv_indices (B', H', NQB, NKB) int32 (the first
    kv_num_blocks entries of a row are used); full_kv_* likewise (may be None); q_* the transposed lists
    (per key block). ``seq_lengths`` must be (Nq, Nk). Lists are re-sorted (flatattn requires increasing
    indices) and trimmed to the widest row; the q lists are rebuilt from the same (kv) source by the library
    (the BlockMask's own q lists are passed when present, after the same normalization). Partial blocks get
    ``mask_mod(b, h, q_idx, kv_idx)`` evaluated on their grid, with b = 0 (h = 0) when the BlockMask broadcasts
    over batch (heads), as create_block_mask evaluates it for B=None (H=None).
    """
    bq, bkv = (int(x) for x in block_mask.BLOCK_SIZE)
    seq = tuple(int(x) for x in block_mask.seq_lengths)
    if seq != (int(nq), int(nk)):
        raise _bad("block_mask.seq_lengths", str(seq), f"must be (Nq, Nk) = {(int(nq), int(nk))} of the call",
                   "create the BlockMask with Q_LEN=Nq, KV_LEN=Nk (or call block_mask._adjust(Nq, Nk))")
    nqb, nkb = -(-nq // bq), -(-nk // bkv)
    if block_mask.kv_num_blocks.shape[-1] != nqb:
        raise _bad("block_mask.BLOCK_SIZE", str((bq, bkv)),
                   f"kv_num_blocks has {block_mask.kv_num_blocks.shape[-1]} query blocks, Nq = {nq} with "
                   f"Q_BLOCK_SIZE {bq} needs {nqb}", "create the BlockMask for this call's lengths and block size")
    dev = device if device is not None else block_mask.kv_num_blocks.device

    def mv(t):
        return None if t is None else t.to(dev)

    kv_num, kv_idx = _sorted_lists(mv(block_mask.kv_num_blocks), mv(block_mask.kv_indices), nkb)
    fkv_num = fkv_idx = None
    if block_mask.full_kv_num_blocks is not None:
        fkv_num, fkv_idx = _sorted_lists(mv(block_mask.full_kv_num_blocks), mv(block_mask.full_kv_indices), nkb)
    q_num = q_idx = fq_num = fq_idx = None
    if block_mask.q_num_blocks is not None and block_mask.q_indices is not None:
        q_num, q_idx = _sorted_lists(mv(block_mask.q_num_blocks), mv(block_mask.q_indices), nqb)
        if fkv_num is not None and block_mask.full_q_num_blocks is not None:
            fq_num, fq_idx = _sorted_lists(mv(block_mask.full_q_num_blocks), mv(block_mask.full_q_indices), nqb)
        elif fkv_num is not None:
            q_num = q_idx = None  # a partial transpose only: let the library derive both
    blocks, offsets = _partial_blocks(kv_num, kv_idx)
    bits = None
    if blocks is not None and blocks[0].numel():
        mask_mod = block_mask.mask_mod
        bits = _bits_of(blocks, bq, bkv, nq, nk, mask_mod)
    else:
        offsets = None
    return BlockSparse(bq, bkv, kv_num, kv_idx, fkv_num, fkv_idx, q_num, q_idx, fq_num, fq_idx, bits, offsets)


_CACHE_ATTR = "_flatattn_block_sparse"
_LIST_FIELDS = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices", "q_num_blocks", "q_indices",
                "full_q_num_blocks", "full_q_indices")


def _tensor_key(t):
    """(identity, in-place version) of a tensor; None for None."""
    if t is None:
        return None
    try:
        return (id(t), t._version)
    except (AttributeError, RuntimeError):  # inference tensors have no version counter: identity only
        return (id(t), None)


def _closure_tensors(fn, depth=0):
    """The torch tensors a mask_mod's closure (and its nested closures, 2 levels) holds."""
    out = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            x = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif callable(x) and depth < 2:
            out.extend(_closure_tensors(x, depth + 1))
    return out


def _cached_block_sparse(block_mask, nq, nk, device):
    """block_sparse_from_block_mask(block_mask, nq, nk, device), converted once per BlockMask and kept on it."""
    # The entry holds the keyed objects themselves, so that none of their ids can be reused while it is cached.
    refs = (block_mask.mask_mod, *(getattr(block_mask, f, None) for f in _LIST_FIELDS),
            *_closure_tensors(block_mask.mask_mod))
    key = (int(nq), int(nk), str(device), id(refs[0]), tuple(_tensor_key(t) for t in refs[1:]))
    hit = getattr(block_mask, _CACHE_ATTR, None)
    if hit is not None and hit[0] == key:
        return hit[1]
    bs = block_sparse_from_block_mask(block_mask, nq, nk, device=device)
    try:
        setattr(block_mask, _CACHE_ATTR, (key, bs, refs))
    except AttributeError:  # a BlockMask that takes no attributes: converted on every call
        pass
    return bs


@functools.partial(drop_in, compiling=torch.compiler.is_compiling)
def flex_attention(query, key, value, score_mod=None, block_mask=None, scale=None, enable_gqa=False,
                   return_lse=False, kernel_options=None):
    """``torch.nn.attention.flex_attention.flex_attention`` on flatattn's block-sparse kernels.

    query (B, Hq, Nq, D), key and value (B, Hkv, Nk, D) torch tensors (CPU: float32/float16/bfloat16; CUDA:
    float16/bfloat16: the sm80-family kernels, on Hopper the sm90 ones at D = 64 and 128); ``block_mask`` a torch BlockMask (None: dense);
    ``scale`` default 1/sqrt(D); ``enable_gqa`` lets Hq be a multiple of Hkv. Returns out (B, Hq, Nq, D) like
    query, and with ``return_lse=True`` also lse (B, Hq, Nq) float32 (natural log; -inf for a row with no
    visible key, whose output is 0). Autograd reaches query, key, value (CPU, and CUDA through the BlockMask's q lists).

    Refused (FlatattnDropInError, a RuntimeError and FlatattnError): ``score_mod`` other than None (flatattn
    runs mask_mod only), ``kernel_options``, Hq != Hkv without enable_gqa, a BlockMask built for other lengths.

    Algorithm: FlashAttention-2 (Dao, 2023) Sec. 3 over FlexAttention's block lists (Dong et al., "Flex
    Attention", 2024, Sec. 3.2: BlockMask).
    """
    if score_mod is not None:
        raise error("score_mod", "a callable", "flatattn.flex_attention runs block masks only (no score_mod)",
                    "pass score_mod=None (express masking through block_mask's mask_mod), or use torch's "
                    "flex_attention for score modifications", unsupported=True)
    if kernel_options is not None:
        raise error("kernel_options", repr(kernel_options), "not supported", "pass kernel_options=None",
                    unsupported=True)
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        raise _bad("query", f"shape {tuple(query.shape)}", "query, key, value must be 4-d (B, H, N, D)",
                   "pass (B, H, N, D) tensors")
    hq, hkv = query.shape[1], key.shape[1]
    if hq != hkv and not enable_gqa:
        raise _bad("enable_gqa", "False", f"Hq = {hq} != Hkv = {hkv} needs enable_gqa=True",
                   "pass enable_gqa=True (Hq must be a multiple of Hkv)")
    from . import torch_ops

    q, k, v = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
    nq, nk = query.shape[2], key.shape[2]
    opts = (None if scale is None else float(scale), False, True, -1, -1, 0.0, False, 0.0, 0, 0, "auto", 0)
    if block_mask is None:
        out, lse = torch_ops.forward_opts(q, k, v, opts)
    else:
        bs = _cached_block_sparse(block_mask, nq, nk, query.device)
        out, lse = torch_ops.variant_forward(q, k, v, opts, block_sparse=bs)
    out = out.transpose(1, 2)
    return (out, lse) if return_lse else out
