"""Random attention cases as numpy arrays in several memory layouts, with poisoned (NaN) outputs."""

from __future__ import annotations

import dataclasses

import numpy as np

NP_DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclasses.dataclass
class Case:
    b: int = 1
    nq: int = 16
    nk: int = 16
    hq: int = 2
    hkv: int = 2
    d: int = 32
    dtype: str = "float32"
    layout: str = "bnhd"  # bnhd (contiguous) | bhnd (transposed view) | padded (row padding: non-contiguous)
    causal: bool = False
    causal_align: str = "bottom_right"
    window: tuple = (-1, -1)
    softcap: float = 0.0
    softmax_scale: float | None = None
    seqlens_q: tuple | None = None  # varlen when given
    seqlens_k: tuple | None = None
    sd: float = 1.0  # input standard deviation (large -> large logits)

    @property
    def varlen(self):
        return self.seqlens_q is not None

    def options(self):
        return dict(softmax_scale=self.softmax_scale, causal=self.causal, causal_align=self.causal_align,
                    window=self.window, softcap=self.softcap)

    def __str__(self):
        s = f"{self.dtype} {self.layout} B{self.b} Nq{self.nq} Nk{self.nk} Hq{self.hq} Hkv{self.hkv} D{self.d}"
        if self.causal:
            s += f" causal-{self.causal_align}"
        if self.window != (-1, -1):
            s += f" window{self.window}"
        if self.softcap:
            s += f" softcap{self.softcap}"
        if self.varlen:
            s += f" varlen{list(zip(self.seqlens_q, self.seqlens_k))}"
        if self.sd != 1.0:
            s += f" sd{self.sd}"
        return s


def alloc(shape, dtype, layout, fill=np.nan):
    """An array of logical `shape` ((B, N, H, D) or varlen (T, H, D)) in the given memory layout."""
    dt = NP_DTYPES.get(dtype, dtype)
    if layout == "bnhd":
        return np.full(shape, fill, dtype=dt)
    if layout == "bhnd":  # physical (B, H, N, D) [(H, T, D) for varlen], viewed as (B, N, H, D)
        if len(shape) == 4:
            b, n, h, d = shape
            return np.full((b, h, n, d), fill, dtype=dt).transpose(0, 2, 1, 3)
        t, h, d = shape
        return np.full((h, t, d), fill, dtype=dt).transpose(1, 0, 2)
    if layout == "padded":  # 8 spare elements after each head row: strides are not those of a dense array
        big = np.full((*shape[:-1], shape[-1] + 8), fill, dtype=dt)
        return big[..., : shape[-1]]
    raise ValueError(layout)


def randn(rng, shape, dtype, layout, sd=1.0):
    a = alloc(shape, dtype, layout)
    a[...] = (rng.standard_normal(shape) * sd).astype(a.dtype)
    return a


def cu_seqlens(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)


def make(c: Case, rng, backward=False):
    """Inputs (random), poisoned outputs, and cu_seqlens for a case; a dict."""
    if c.varlen:
        tq, tk = int(sum(c.seqlens_q)), int(sum(c.seqlens_k))
        qs, ks = (tq, c.hq, c.d), (tk, c.hkv, c.d)
        lse = np.full((c.hq, tq), np.nan, np.float32)
    else:
        qs, ks = (c.b, c.nq, c.hq, c.d), (c.b, c.nk, c.hkv, c.d)
        lse = np.full((c.b, c.hq, c.nq), np.nan, np.float32)
    t = dict(q=randn(rng, qs, c.dtype, c.layout, c.sd), k=randn(rng, ks, c.dtype, c.layout, c.sd),
             v=randn(rng, ks, c.dtype, c.layout), out=alloc(qs, c.dtype, c.layout), lse=lse)
    if c.varlen:
        t["cu_seqlens_q"], t["cu_seqlens_k"] = cu_seqlens(c.seqlens_q), cu_seqlens(c.seqlens_k)
    if backward:
        t["dout"] = randn(rng, qs, c.dtype, c.layout)
        t["dq"], t["dk"], t["dv"] = alloc(qs, c.dtype, c.layout), alloc(ks, c.dtype, c.layout), alloc(
            ks, c.dtype, c.layout)
    return t


def varlen_kwargs(t):
    return {k: t[k] for k in ("cu_seqlens_q", "cu_seqlens_k") if k in t}
