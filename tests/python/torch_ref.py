"""Attention in plain torch ops (the math reference of the GPU and autograd tests).

``attention_ref`` computes in ``dtype`` (float64: the reference; the input dtype: naive_lowp of the
correctness rule) with the library's semantics: softcap, causal (both alignments), window, GQA, varlen; a
row that sees no key gives out = 0 and lse = -inf. It is differentiable (no NaN on empty rows).
"""

from __future__ import annotations

import torch


def visible(nq, nk, causal=False, top_left=False, window=(-1, -1), device=None):
    """(nq, nk) bool: key j visible to query i (src/core/mask.h)."""
    i = torch.arange(nq, device=device)[:, None]
    j = torch.arange(nk, device=device)[None, :]
    diag = i if top_left else i + (nk - nq)
    left, right = window
    if causal:
        right = 0
    m = torch.ones(nq, nk, dtype=torch.bool, device=device)
    if left >= 0:
        m &= j >= diag - left
    if right >= 0:
        m &= j <= diag + right
    return m


def _batched(q, k, v, scale, softcap, mask, dtype, dropout=None):
    b, nq, hq, d = q.shape
    hkv = k.shape[2]
    qf, kf, vf = q.to(dtype), k.to(dtype), v.to(dtype)
    kf = kf.repeat_interleave(hq // hkv, dim=2)
    vf = vf.repeat_interleave(hq // hkv, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", qf, kf) * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    s_masked = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s_masked.to(torch.float64), dim=-1)
    any_key = mask.any(-1, keepdim=True)
    p = torch.softmax(torch.where(any_key, s_masked, torch.zeros_like(s)), dim=-1) * mask
    if dropout is not None:  # (keep mask (B, Hq, Nq, Nk), p): P Z / (1 - p), the lse unchanged
        keep, prob = dropout
        p = p * keep.to(p.dtype) / (1.0 - prob)
    out = torch.einsum("bhij,bjhd->bihd", p.to(dtype), vf)
    return out, lse


def attention_ref(q, k, v, *, softmax_scale=None, causal=False, top_left=False, window=(-1, -1), softcap=0.0,
                  cu_seqlens_q=None, cu_seqlens_k=None, dtype=torch.float64, dropout=None):
    """(out (like q, in `dtype`), lse (B, Hq, Nq) or (Hq, total_q) float64). q (B, Nq, Hq, D) or varlen.
    dropout: None or (keep mask (B, Hq, Nq, Nk) of flatattn.dropout_mask, p); varlen: (S, Hq, max Nq, max Nk),
    sequence b's mask the top-left corner of keep[b] (varlen numbers the stream per sequence)."""
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    if cu_seqlens_q is None:
        mask = visible(q.shape[1], k.shape[1], causal, top_left, window, q.device)
        return _batched(q, k, v, scale, softcap, mask, dtype, dropout)
    outs, lses = [], []
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for b in range(len(cq) - 1):
        qs, ks, vs = q[cq[b]:cq[b + 1]], k[ck[b]:ck[b + 1]], v[ck[b]:ck[b + 1]]
        mask = visible(qs.shape[0], ks.shape[0], causal, top_left, window, q.device)
        drop = None if dropout is None else (dropout[0][b:b + 1, :, :qs.shape[0], :ks.shape[0]], dropout[1])
        o, l = _batched(qs[None], ks[None], vs[None], scale, softcap, mask, dtype, drop)
        outs.append(o[0])
        lses.append(l[0])
    return torch.cat(outs, 0), torch.cat(lses, 1)


def grads_ref(q, k, v, dout, dtype=torch.float64, **kw):
    """(dq, dk, dv) by autograd through attention_ref computed in `dtype`."""
    qr, kr, vr = (t.detach().to(dtype).requires_grad_() for t in (q, k, v))
    out, _ = attention_ref(qr, kr, vr, dtype=dtype, **kw)
    out.backward(dout.to(dtype))
    return qr.grad, kr.grad, vr.grad
