"""The correctness rule of docs/design.md, ported from judge() in src/check/rule.cc:

    max|out - ref| <= 2 * max|naive_lowp - ref| + floor

ref is the fp64 oracle, naive_lowp naive attention computed in the input dtype (the oracle's
Precision::input), floor = 2 * the rounding of the output dtype at the reference's values
(|round(round(r + 0.3) - 0.3) - r|, FlashAttention 3's rule), and for forward outputs at least
2 u (|r| + sum_j P_ij |V_jd|) when `allow` (that sum, see p_abs_v) is given: the rounding of P before P V and
of O, which a naive yardstick that happens to be exact cannot stand for (src/check/rule.cc Judge::add). Non-finite outputs fail unless they equal an
infinite reference (LSE = -inf of an empty row). Arrays may be numpy or torch (any device, any dtype).
"""

from __future__ import annotations

import dataclasses

import numpy as np


def as_f64(x) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().to("cpu")
        import torch

        x = x.to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """float64 -> dtype -> float64 with round-to-nearest-even (through float32, as src/core/half.h does)."""
    x32 = np.asarray(x, dtype=np.float64).astype(np.float32)
    if dtype in ("float32", "f32"):
        return x32.astype(np.float64)
    if dtype in ("float16", "f16"):
        return x32.astype(np.float16).astype(np.float64)
    if dtype in ("bfloat16", "bf16"):
        u = x32.view(np.uint32).astype(np.uint64)
        nan = np.isnan(x32)
        u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
        r = u.astype(np.uint32).view(np.float32).astype(np.float64)
        return np.where(nan, np.nan, r)
    if dtype in ("float64", "f64"):
        return np.asarray(x, dtype=np.float64)
    raise ValueError(f"unknown dtype {dtype}")


def dtype_name(x) -> str:
    s = str(x.dtype)
    return s.replace("torch.", "")


@dataclasses.dataclass
class Verdict:
    max_err: float = 0.0
    naive_err: float = 0.0
    floor: float = 0.0
    rel_err: float = 0.0
    bound: float = 0.0
    nonfinite: int = 0
    passed: bool = False

    def __str__(self):
        return (f"max_err={self.max_err:.3g} bound={self.bound:.3g} (2*naive={2 * self.naive_err:.3g} + "
                f"floor={self.floor:.3g}) rel={self.rel_err:.3g} nonfinite={self.nonfinite} "
                f"{'PASS' if self.passed else 'FAIL'}")


UNIT_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24, "float64": 2.0**-53}


def p_abs_v(p, v) -> np.ndarray:
    """sum_j P_ij |V_jd| of a forward output, judge()'s `allow`: p (B, H, Nq, Nk) the oracle's probabilities,
    v (B, Nk, H, D) (or Hkv heads: GQA groups repeat them). Returns (B, Nq, H, D) in float64."""
    pp, vv = as_f64(p), np.abs(as_f64(v))
    h, hkv = pp.shape[1], vv.shape[2]
    vv = np.repeat(vv, h // hkv, axis=2)
    return np.einsum("bhij,bjhd->bihd", pp, vv)


FP32_REL_TOL = 1e-5  # docs/design.md: fp32 CPU kernels match the oracle to ~1e-5 relative


def judge(out, ref, naive, dtype: str, rel_tol: float = 0.0, allow=None) -> Verdict:
    """Compares `out` with the oracle `ref` under the rule; `naive` may be None (bound = floor + rel_tol*max|ref|).
    `allow` (forward outputs, same shape, p_abs_v): the floor is then at least 2 u (|ref| + allow).

    fp32: the oracle's low-precision yardstick accumulates its dot products in double, so it is more
    accurate than any fp32 kernel; docs/design.md's fp32 tolerance (1e-5 relative) is added to the bound.
    """
    if dtype == "float32":
        rel_tol = max(rel_tol, FP32_REL_TOL)
    o, r = as_f64(out), as_f64(ref)
    assert o.shape == r.shape, f"shape {o.shape} != reference {r.shape}"
    v = Verdict()
    finite = np.isfinite(o) & np.isfinite(r)
    v.nonfinite = int(np.count_nonzero(~finite & ~(np.isinf(o) & (o == r))))
    of, rf = o[finite], r[finite]
    if of.size:
        diff = np.abs(of - rf)
        v.max_err = float(diff.max())
        den = float(np.sum(rf * rf))
        v.rel_err = float(np.sqrt(np.sum(diff * diff) / den)) if den > 0 else float(np.sqrt(np.sum(diff * diff)))
        if naive is not None:
            nd = np.abs(as_f64(naive)[finite] - rf)
            v.naive_err = float(np.nanmax(nd)) if np.any(~np.isnan(nd)) else 0.0
        v.floor = float(2.0 * np.max(np.abs(round_to(round_to(rf + 0.3, dtype) - 0.3, dtype) - rf)))
        if allow is not None:
            a = np.broadcast_to(as_f64(allow), o.shape)[finite]
            v.floor = max(v.floor, float(2.0 * UNIT_ROUNDOFF[dtype] * np.max(np.abs(rf) + a)))
        maxref = float(np.max(np.abs(rf)))
    else:
        maxref = 0.0
    v.bound = 2.0 * v.naive_err + v.floor + rel_tol * maxref
    v.passed = v.nonfinite == 0 and v.max_err <= v.bound
    return v


def judge_lse(lse, ref, tol: float) -> Verdict:
    """Exact -inf where the row is empty, otherwise |lse - ref| <= tol * max(1, |ref|)."""
    o, r = as_f64(lse), as_f64(ref)
    assert o.shape == r.shape, f"shape {o.shape} != reference {r.shape}"
    v = Verdict(bound=tol)
    special = np.isinf(r) | np.isinf(o) | np.isnan(o)
    v.nonfinite = int(np.count_nonzero(special & ~(np.isinf(r) & (r == o))))
    ok = ~special
    if np.any(ok):
        v.max_err = float(np.max(np.abs(o[ok] - r[ok]) / np.maximum(1.0, np.abs(r[ok]))))
    v.passed = v.nonfinite == 0 and v.max_err <= tol
    return v


# LSE tolerance per input dtype: LSE is accumulated in fp32 whatever the input; inputs are rounded first.
LSE_TOL = {"float32": 1e-5, "float16": 1e-5, "bfloat16": 1e-5}
