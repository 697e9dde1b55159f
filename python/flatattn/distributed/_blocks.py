"""The per-hop work of ring attention: which (query rows, key rows) blocks of two ranks' shards see each other
under the global mask, as flatattn calls; and the fp32 log-sum-exp merge of partial results.

Global mask (docs/design.md, Semantics 2, on the full square sequence, where both causal alignments coincide):
key position kp is visible to query position qp when −left ≤ kp − qp ≤ right (a side of −1 is unbounded; causal
sets right = 0). For a query run starting at global position gq and a key run at gk, local rows i and j see each
other when j − i ∈ [lo, hi] with lo = gq − gk − left and hi = gq − gk + right. A block is skipped when no (i, j)
meets that, computed without a mask when all do, and otherwise run as one top-left aligned call on a sub-block:
rows before −hi (no key) and keys before lo (no query) are cut off, which brings the band back to the
diagonal, where flatattn's window (left, right) expresses it.

Document masks (cu_seqlens of the packed global sequence, as the C++ ring's src/cp/ring_plan.cc): a query sees only
keys of its own document, so each run is cut at the document boundaries and only pieces of one document are paired;
each piece pair is one call with the mask above (a document's causal/window band is the global one restricted to it).
Dropout: every call carries the global position of its first query row and key (Block.row0, col0), so its mask is
the whole sequence's there (Options::dropout_row0/col0); fused calls spanning runs that are not adjacent in the
global sequence have no such position, so plan_hop(fuse=False) keeps one call per pair. Under a document mask a
call also carries its document (Block.doc): single-device varlen numbers the dropout stream per document (sequence
b = the document's index, rows and keys counted from the document's start), so the ring's call passes
dropout_batch0 = doc and the piece's offsets inside the document (ring.py, _dropout_pos).
"""

from __future__ import annotations

import dataclasses

INF = float("inf")


@dataclasses.dataclass(frozen=True)
class Block:
    """One flatattn call: query rows [q0, q1) of the local shard against key rows [k0, k1) of the visiting shard,
    top-left aligned, with this causal flag and window (-1: unbounded)."""

    q0: int
    q1: int
    k0: int
    k1: int
    causal: bool = False
    window_left: int = -1
    window_right: int = -1
    row0: int = -1  # global positions of rows q0 and keys k0 (-1: a fused call over runs not adjacent globally)
    col0: int = -1
    doc: int = -1  # the document (index into cu_seqlens) both runs lie in, under a document mask; -1 without


def _pair(qseg, kseg, left, right):
    """None (skip), or the Block of one (query run, key run) pair. left/right: global window sides, INF unbounded."""
    gq, lq, n = qseg
    gk, lk, m = kseg
    lo, hi = gq - gk - left, gq - gk + right
    if hi < -(n - 1) or lo > m - 1:
        return None
    if lo <= -(n - 1) and hi >= m - 1:
        return Block(lq, lq + n, lk, lk + m, row0=gq, col0=gk)
    t = int(max(0, -hi))  # leading query rows with no visible key
    s = int(max(0, lo))   # leading keys no query sees
    wl, wr = s - t - lo, hi - s + t  # the band relative to the cut block's diagonal (both >= 0, or inf)
    wl = -1 if wl == INF else int(wl)
    wr = -1 if wr == INF else int(wr)
    if wl == -1 and wr == 0 and n - t == m - s:
        return Block(lq + t, lq + n, lk + s, lk + m, causal=True, row0=gq + t, col0=gk + s)
    return Block(lq + t, lq + n, lk + s, lk + m, window_left=wl, window_right=wr, row0=gq + t, col0=gk + s)


def _doc_pieces(seg, bounds):
    """{document: sub-run} of a run (global_start, local_start, length) cut at the documents' boundaries
    (bounds: cu_seqlens, increasing, bounds[0] = 0, bounds[-1] = N)."""
    import bisect

    g, l, n = seg
    out = {}
    pos = g
    while pos < g + n:
        d = bisect.bisect_right(bounds, pos) - 1  # the document holding pos (empty documents are skipped)
        end = min(g + n, bounds[d + 1])
        out[d] = (pos, l + pos - g, end - pos)
        pos = end
    return out


def plan_hop_docs(q_segs, k_segs, causal, window, bounds):
    """The Blocks of one hop under a document mask: per (query run, key run) pair, one call per document that both
    runs hold a piece of, with the global mask on that piece pair (no fusion: pieces of different documents never
    see each other)."""
    left = INF if window[0] < 0 else window[0]
    right = 0 if causal else (INF if window[1] < 0 else window[1])
    blocks = []
    for qs in q_segs:
        qp = _doc_pieces(qs, bounds)
        for ks in k_segs:
            kp = _doc_pieces(ks, bounds)
            for d in sorted(qp.keys() & kp.keys()):
                blk = _pair(qp[d], kp[d], left, right)
                if blk is not None:
                    blocks.append(dataclasses.replace(blk, doc=d))
    return blocks


def plan_hop(q_segs, k_segs, causal, window, fuse=True):
    """The Blocks of one hop: the local query runs q_segs against the visiting key runs k_segs (layout.segments).
    Pairs are fused into one call where that gives the same mask: all visible pairs unmasked and forming one
    rectangle of adjacent runs; or the shard against itself under a plain causal mask (runs in increasing global
    order, each causal within itself and fully visible to the later ones). fuse=False: one call per visible pair,
    each with its global position (dropout)."""
    left = INF if window[0] < 0 else window[0]
    right = 0 if causal else (INF if window[1] < 0 else window[1])
    pairs = {(a, b): _pair(qs, ks, left, right) for a, qs in enumerate(q_segs) for b, ks in enumerate(k_segs)}
    live = {ab: blk for ab, blk in pairs.items() if blk is not None}
    if not live:
        return []
    if not fuse:
        return [live[ab] for ab in sorted(live)]
    if q_segs == k_segs and left == INF and right == 0:
        n = sum(s[2] for s in q_segs)
        return [Block(0, n, 0, n, causal=True)]
    rows = sorted({a for a, _ in live})
    cols = sorted({b for _, b in live})
    unmasked = all(blk.causal is False and blk.window_left == -1 and blk.window_right == -1 and
                   (blk.q1 - blk.q0, blk.k1 - blk.k0) == (q_segs[a][2], k_segs[b][2]) for (a, b), blk in live.items())
    rect = len(live) == len(rows) * len(cols)
    adjacent = rows == list(range(rows[0], rows[-1] + 1)) and cols == list(range(cols[0], cols[-1] + 1))
    if unmasked and rect and adjacent:
        q0, k0 = q_segs[rows[0]][1], k_segs[cols[0]][1]
        q1 = q_segs[rows[-1]][1] + q_segs[rows[-1]][2]
        k1 = k_segs[cols[-1]][1] + k_segs[cols[-1]][2]
        return [Block(q0, q1, k0, k1)]
    return [live[ab] for ab in sorted(live)]


def merge_(acc_out, acc_lse, out, lse):
    """acc ← the softmax-weighted union of acc and a partial result, in place, in fp32 (FlashAttention-2's rescaling,
    Dao 2023, §3.1, applied across blocks): L = logaddexp(L_acc, L_new), O = O_acc·e^(L_acc−L) + O_new·e^(L_new−L).
    acc_out (B, n, H, D) fp32, acc_lse (B, H, n) fp32 (views may be strided); out (B, n, H, D) any float dtype,
    lse (B, H, n) fp32. A row empty in both stays O = 0, L = −inf (no NaN)."""
    import torch

    new = torch.logaddexp(acc_lse, lse)
    safe = torch.where(torch.isneginf(new), torch.zeros_like(new), new)
    w_acc = torch.exp(acc_lse - safe).transpose(1, 2).unsqueeze(-1)
    w_new = torch.exp(lse - safe).transpose(1, 2).unsqueeze(-1)
    acc_out.mul_(w_acc).add_(out.float() * w_new)
    acc_lse.copy_(new)
