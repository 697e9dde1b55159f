"""flatattn.backward on numpy arrays vs the oracle's exact gradients (the correctness rule, docs/design.md)."""

import numpy as np
import pytest

import flatattn
from cases import Case, make, varlen_kwargs
from rule import judge

CASES = [
    Case(b=2, nq=40, nk=40, hq=4, hkv=4, d=64),
    Case(b=2, nq=33, nk=33, hq=4, hkv=2, d=32, dtype="float16", layout="bhnd", causal=True),
    Case(b=1, nq=1, nk=1, hq=1, hkv=1, d=16),
    Case(b=1, nq=45, nk=17, hq=3, hkv=1, d=40, layout="padded", causal=True),  # fully masked rows: zero grads
    Case(b=1, nq=20, nk=50, hq=2, hkv=2, d=32, causal=True, causal_align="top_left", window=(7, -1)),
    Case(b=1, nq=30, nk=44, hq=2, hkv=1, d=80, softcap=20.0, sd=2.0, dtype="float16"),
    Case(hq=4, hkv=2, d=32, seqlens_q=(12, 0, 30), seqlens_k=(12, 5, 41), causal=True),
    Case(hq=2, hkv=2, d=32, seqlens_q=(9, 17), seqlens_k=(25, 3), layout="bhnd", dtype="float16"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_oracle(case, rng, seed):
    t = make(case, rng, backward=True)
    vl = varlen_kwargs(t)
    opts = case.options()
    out, lse = flatattn.forward(t["q"], t["k"], t["v"], **opts, **vl)
    dq, dk, dv = flatattn.backward(t["dout"], t["q"], t["k"], t["v"], out, lse, dq=t["dq"], dk=t["dk"], dv=t["dv"],
                                   **opts, **vl)
    assert dq is t["dq"] and dk is t["dk"] and dv is t["dv"], "gradients must be written in place"

    ref = flatattn.reference.backward(t["dout"], t["q"], t["k"], t["v"], **opts, **vl)
    naive = flatattn.reference.backward(t["dout"], t["q"], t["k"], t["v"], precision="input", **opts, **vl)
    for name, got, r, n in zip(("dq", "dk", "dv"), (dq, dk, dv), ref, naive):
        v = judge(got, r, n, case.dtype)
        assert v.passed, f"{case} seed={seed}: {name} {v}"


def test_backward_allocates(rng, seed):
    c = Case(b=1, nq=12, nk=20, hq=4, hkv=2, d=32, layout="bhnd", causal=True)
    t = make(c, rng, backward=True)
    out, lse = flatattn.forward(t["q"], t["k"], t["v"], **c.options())
    dq, dk, dv = flatattn.backward(t["dout"], t["q"], t["k"], t["v"], out, lse, **c.options())
    assert dq.shape == t["q"].shape and dk.shape == t["k"].shape and dv.strides == t["v"].strides
    ref = flatattn.reference.backward(t["dout"], t["q"], t["k"], t["v"], **c.options())
    naive = flatattn.reference.backward(t["dout"], t["q"], t["k"], t["v"], precision="input", **c.options())
    for got, r, n in zip((dq, dk, dv), ref, naive):
        v = judge(got, r, n, c.dtype)
        assert v.passed, f"seed={seed}: {v}"


def test_deterministic_backward_is_bitwise_reproducible(rng):
    c = Case(b=2, nq=64, nk=64, hq=4, hkv=1, d=32, causal=True)
    t = make(c, rng, backward=True)
    out, lse = flatattn.forward(t["q"], t["k"], t["v"], **c.options())
    a = flatattn.backward(t["dout"], t["q"], t["k"], t["v"], out, lse, deterministic=True, **c.options())
    b = flatattn.backward(t["dout"], t["q"], t["k"], t["v"], out, lse, deterministic=True, **c.options())
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
