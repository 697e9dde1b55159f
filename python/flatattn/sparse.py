"""Block-sparse attention lists for the native API (include/flatattn/sparse.h, docs/sparse.md).

:class:`BlockSparse` carries PyTorch FlexAttention's BlockMask fields (same names and layout) plus the bit-packed
element mask of the partial blocks; :func:`flatattn.forward` / :func:`flatattn.backward` take it as
``block_sparse=``. The torch helpers below build one from a torch ``BlockMask`` (its ``mask_mod`` evaluated on
the partial blocks only) or from a dense boolean mask.

Bits: ``mask_bits`` int32 (P, block_q, ceil(block_kv / 32)); word w of row t of bit-block p holds keys
32 w .. 32 w + 31 of the block, bit (key % 32) set = visible. The partial block in slot s of row (b, h, r) of
``kv_indices`` uses bit-block ``mask_block_offsets[b, h, r] + s``. Memory O(partial blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_TENSORS = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices", "q_num_blocks", "q_indices",
            "full_q_num_blocks", "full_q_indices", "mask_bits", "mask_block_offsets")


@dataclass
class BlockSparse:
    """The key blocks each query block visits (flatattn::BlockSparse). Every tensor int32 on q's device, last dim
    contiguous; B' in {1, B}, H' in {1, Hq}; NQB = ceil(Nq / block_q), NKB = ceil(Nk / block_kv):
    kv_num_blocks (B', H', NQB) and kv_indices (B', H', NQB, W) the partial blocks (strictly increasing);
    full_kv_num_blocks / full_kv_indices the full blocks (optional); the q_* lists their transpose (optional);
    mask_bits (P, block_q, ceil(block_kv / 32)) with mask_block_offsets (B', H', NQB) the element mask of partial
    blocks (optional: without it partial blocks follow the call's causal / window band). Errors: FlatattnError
    naming the tensor (shape, dtype, out-of-range or non-increasing index, block size not a multiple of the CUDA
    tile)."""

    block_q: int = 128
    block_kv: int = 128
    kv_num_blocks: Any = None
    kv_indices: Any = None
    full_kv_num_blocks: Any = None
    full_kv_indices: Any = None
    q_num_blocks: Any = None
    q_indices: Any = None
    full_q_num_blocks: Any = None
    full_q_indices: Any = None
    mask_bits: Any = None
    mask_block_offsets: Any = None

    def tensors(self):
        """The ten tensors (None where absent), in flatattn::BlockSparse's order."""
        return [getattr(self, n) for n in _TENSORS]

    def _native(self, convert):
        """The tuple flatattn._C takes: (block_q, block_kv, 10 DLPack exports or None)."""
        return (int(self.block_q), int(self.block_kv), *(convert(t) for t in self.tensors()))


def _check_block_sparse(bs):
    from ._errors import error

    if not isinstance(bs, BlockSparse):
        raise error("block_sparse", type(bs).__name__, "must be a flatattn.BlockSparse",
                    "build it with flatattn.BlockSparse(...) or flatattn.block_sparse_from_mask(...)")
    if bs.kv_num_blocks is None or bs.kv_indices is None:
        raise error("block_sparse.kv_num_blocks", "None", "kv_num_blocks and kv_indices are required",
                    "pass the partial-block lists (zeros and an empty-width index tensor when every block is full)")
    return bs


# ---- torch builders ---------------------------------------------------------------------------------------

def _pack_bits(vis):
    """(P, bq, bkv) bool -> (P, bq, ceil(bkv / 32)) int32, bit (key % 32) of word key // 32."""
    import torch

    p, bq, bkv = vis.shape
    words = (bkv + 31) // 32
    if words * 32 != bkv:
        vis = torch.nn.functional.pad(vis, (0, words * 32 - bkv))
    weights = torch.bitwise_left_shift(torch.ones(32, dtype=torch.int64, device=vis.device),
                                       torch.arange(32, dtype=torch.int64, device=vis.device))
    w = (vis.reshape(p, bq, words, 32).to(torch.int64) * weights).sum(-1)
    w = torch.where(w >= 2**31, w - 2**32, w)
    return w.to(torch.int32).contiguous()


def _sorted_lists(num, idx, nkb):
    """(num, idx) as int32 with the first num entries of each row in increasing order (slots past the count are
    set to 0), idx trimmed to the widest row."""
    import torch

    num = num.to(torch.int32).contiguous()
    idx = idx.to(torch.int64)
    w = idx.shape[-1]
    slot = torch.arange(w, device=idx.device)
    valid = slot < num.unsqueeze(-1)
    idx = torch.where(valid, idx, torch.full_like(idx, nkb + 1)).sort(dim=-1).values
    idx = torch.where(valid, idx, torch.zeros_like(idx))
    width = max(int(num.max().item()) if num.numel() else 0, 1)
    return num, idx[..., :min(width, w) if w else 0].to(torch.int32).contiguous()


def _partial_blocks(num, idx):
    """The (b, h, r, c) of every partial block in slot order, and mask_block_offsets (exclusive cumsum)."""
    import torch

    counts = num.reshape(-1).to(torch.int64)
    offsets = (torch.cumsum(counts, 0) - counts).reshape(num.shape).to(torch.int32).contiguous()
    w = idx.shape[-1]
    if w == 0:
        return None, offsets
    valid = torch.arange(w, device=idx.device) < num.unsqueeze(-1)
    b, h, r, s = valid.nonzero(as_tuple=True)  # row-major: slot order within a row, rows in offset order
    return (b, h, r, idx[b, h, r, s].to(torch.int64)), offsets


def _bits_of(blocks, bq, bkv, nq, nk, visible, chunk=256):
    """mask_bits of the partial blocks: visible(b, h, q_idx, kv_idx) evaluated on each block's (q, kv) grid,
    `chunk` blocks at a time (positions past the sequence are clamped; the library hides them anyway)."""
    import torch

    b, h, r, c = blocks
    dev = b.device
    tq = torch.arange(bq, device=dev)
    tk = torch.arange(bkv, device=dev)
    out = []
    for s in range(0, b.numel(), chunk):
        sl = slice(s, s + chunk)
        qi = (r[sl, None, None] * bq + tq[None, :, None]).clamp(max=nq - 1)
        ki = (c[sl, None, None] * bkv + tk[None, None, :]).clamp(max=nk - 1)
        vis = visible(b[sl, None, None], h[sl, None, None], qi, ki)
        vis = torch.as_tensor(vis, device=dev).to(torch.bool).expand(qi.shape[0], bq, bkv)
        out.append(_pack_bits(vis))
    return torch.cat(out) if out else torch.zeros((0, bq, (bkv + 31) // 32), dtype=torch.int32, device=dev)


def block_sparse_from_mask(mask, block_q=128, block_kv=128):
    """BlockSparse of a dense boolean torch mask (Bm, Hm, Nq, Nk) (Bm in {1, B}, Hm in {1, Hq}; True = visible,
    SDPA's convention): key blocks with no visible element are skipped, blocks visible everywhere are full,
    the others partial with their bits packed into mask_bits. Same result as the mask applied densely (a row
    with no visible key: O = 0, LSE = -inf). Reads the mask once; memory O(NQB NKB + partial blocks)."""
    import torch

    from ._errors import error

    if mask.dim() != 4 or mask.dtype != torch.bool:
        raise error("attn_mask", f"{mask.dtype} {tuple(mask.shape)}", "must be a 4-d bool tensor (Bm, Hm, Nq, Nk)",
                    "expand it to 4 dims")
    bm, hm, nq, nk = mask.shape
    nqb, nkb = -(-nq // block_q), -(-nk // block_kv)
    padded = torch.nn.functional.pad(mask, (0, nkb * block_kv - nk, 0, nqb * block_q - nq))
    blocks = padded.reshape(bm, hm, nqb, block_q, nkb, block_kv)
    anyv = blocks.any(dim=5).any(dim=3)
    # full: every in-sequence element visible (padding outside the sequence does not count)
    inseq = torch.zeros(nqb * block_q, nkb * block_kv, dtype=torch.bool, device=mask.device)
    inseq[:nq, :nk] = True
    inseq = inseq.reshape(nqb, block_q, nkb, block_kv)
    allv = (blocks | ~inseq).all(dim=5).all(dim=3)
    partial = anyv & ~allv
    full = allv & anyv

    def lists(dense, n=nkb):
        num = dense.sum(-1, dtype=torch.int32)
        idx = torch.argsort(dense.to(torch.int8), dim=-1, descending=True, stable=True)
        return _sorted_lists(num, idx, n)

    kv_num, kv_idx = lists(partial)
    fkv_num, fkv_idx = lists(full)
    bl, offsets = _partial_blocks(kv_num, kv_idx)
    bits = None
    if bl is not None and bl[0].numel():
        b, h, r, c = bl
        bits = _pack_bits(blocks[b, h, r, :, c, :])
    # the transposed lists (per key block, the query blocks listing it): the CUDA backward walks them
    q_num, q_idx = lists(partial.transpose(-1, -2).contiguous(), nqb)
    fq_num, fq_idx = lists(full.transpose(-1, -2).contiguous(), nqb)
    return BlockSparse(block_q, block_kv, kv_num, kv_idx, fkv_num, fkv_idx, q_num, q_idx, fq_num, fq_idx,
                       mask_bits=bits, mask_block_offsets=offsets if bits is not None else None)
