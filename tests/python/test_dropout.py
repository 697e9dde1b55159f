"""Dropout through the native API on numpy arrays: forward and backward vs the fp64 oracle given the same
(dropout_p, seed, offset) (the oracle evaluates the keep function itself), the mask read back from the output,
and flatattn.dropout_mask (bad p refused, nothing written)."""

import numpy as np
import pytest

import flatattn
from cases import Case, make, varlen_kwargs
from rule import LSE_TOL, judge, judge_lse

CASES = [
    Case(b=2, nq=40, nk=70, hq=4, hkv=2, d=32, causal=True),
    Case(b=1, nq=33, nk=33, hq=2, hkv=2, d=64, dtype="float16", layout="bhnd"),
    Case(hq=2, hkv=1, d=32, seqlens_q=(12, 0, 30), seqlens_k=(12, 5, 41), causal=True),
]


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_dropout_matches_oracle(case, p, rng, seed):
    t = make(case, rng, backward=True)
    vl = varlen_kwargs(t)
    drop = dict(dropout_p=p, dropout_seed=int(rng.integers(0, 2**63)), dropout_offset=int(rng.integers(0, 2**63)))
    opts = case.options()
    out, lse = flatattn.forward(t["q"], t["k"], t["v"], **opts, **vl, **drop)
    ref, ref_lse = flatattn.reference.forward(t["q"], t["k"], t["v"], **opts, **vl, **drop)
    naive, _ = flatattn.reference.forward(t["q"], t["k"], t["v"], precision="input", **opts, **vl, **drop)
    v = judge(out, ref, naive, case.dtype)
    assert v.passed, f"{case} p={p} seed={seed}: out {v}"
    assert judge_lse(lse, ref_lse, LSE_TOL[case.dtype]).passed
    plain, plain_lse = flatattn.forward(t["q"], t["k"], t["v"], **opts, **vl)
    # The lse is that of the undropped softmax. Bitwise on the fp32 path; on the CPU's bf16 matrix paths (f16 since
    # the split path, src/cpu/amx/amx.h) the plain call runs the fused slab softmax (exp2 polynomial) and the dropout
    # call the unfused one, so the two agree to fp32 rounding (a few ulp), not bit for bit.
    np.testing.assert_allclose(lse, plain_lse, rtol=1e-6, atol=0, err_msg="the lse is that of the undropped softmax")
    assert not np.array_equal(out, plain)
    dq, dk, dv = flatattn.backward(t["dout"], t["q"], t["k"], t["v"], out, lse, **opts, **vl, **drop)
    rg = flatattn.reference.backward(t["dout"], t["q"], t["k"], t["v"], **opts, **vl, **drop)
    ng = flatattn.reference.backward(t["dout"], t["q"], t["k"], t["v"], precision="input", **opts, **vl, **drop)
    for name, got, r, n in zip(("dq", "dk", "dv"), (dq, dk, dv), rg, ng):
        g = judge(got, r, n, case.dtype)
        assert g.passed, f"{case} p={p} seed={seed}: {name} {g}"


def test_mask_read_back_from_the_output(rng):
    """q = k = 0 (P = 1/N), v = identity: out[b, i, h, j] = keep[b, h, i, j] / ((1 - p) N)."""
    n, p = 48, 0.3
    q = np.zeros((2, n, 3, n), np.float32)
    v = np.broadcast_to(np.eye(n, dtype=np.float32)[None, :, None, :], (2, n, 3, n)).copy()
    seed, offset = int(rng.integers(0, 2**63)), int(rng.integers(0, 2**63))
    out, _ = flatattn.forward(q, q, v, dropout_p=p, dropout_seed=seed, dropout_offset=offset)
    keep = flatattn.dropout_mask(2, 3, n, n, dropout_p=p, dropout_seed=seed, dropout_offset=offset)
    assert keep.dtype == np.uint8 and keep.shape == (2, 3, n, n) and set(np.unique(keep)) <= {0, 1}
    np.testing.assert_allclose(out.transpose(0, 2, 1, 3), keep / ((1 - p) * n), rtol=1e-6, atol=0)
    frac = keep.mean()
    pq = np.round(p * 256) / 256  # the drop probability the 8-bit threshold gives (src/core/philox.h)
    sd = np.sqrt(pq * (1 - pq) / keep.size)
    assert abs((1 - frac) - pq) < 5 * sd


def test_dropout_mask_refuses_bad_p():
    for bad in (-0.5, 1.0, float("nan")):
        m = np.full((1, 1, 2, 3), 7, np.uint8)
        with pytest.raises(flatattn.FlatattnError) as e:
            flatattn.dropout_mask(1, 1, 2, 3, dropout_p=bad, dropout_seed=1, dropout_offset=2, out=m)
        assert e.value.argument == "dropout_p"
        assert np.all(m == 7), "nothing may be written"


def test_sub_block_at_a_position_carries_the_whole_sequence_mask(rng):
    """dropout_row0/col0 (context parallelism): a call on a block of a longer sequence applies that sequence's mask
    at the block's position: dropout_mask, the forward's output (probe: q = k = 0, v = identity) and the backward's
    dV; forward and backward agree with the oracle given the same position."""
    p, n, big_q, big_k, r0, c0 = 0.3, 48, 130, 200, 37, 128
    seed, offset = int(rng.integers(0, 2**63)), int(rng.integers(0, 2**63))
    drop = dict(dropout_p=p, dropout_seed=seed, dropout_offset=offset)
    whole = flatattn.dropout_mask(2, 3, big_q, big_k, **drop)
    sub = flatattn.dropout_mask(2, 3, 50, 70, dropout_row0=r0, dropout_col0=c0, **drop)
    assert np.array_equal(sub, whole[:, :, r0:r0 + 50, c0:c0 + 70])
    at = dict(drop, dropout_row0=r0, dropout_col0=c0)
    q = np.zeros((2, n, 3, n), np.float32)
    v = np.broadcast_to(np.eye(n, dtype=np.float32)[None, :, None, :], (2, n, 3, n)).copy()
    out, lse = flatattn.forward(q, q, v, **at)
    want = whole[:, :, r0:r0 + n, c0:c0 + n] / ((1 - p) * n)
    np.testing.assert_allclose(out.transpose(0, 2, 1, 3), want, rtol=1e-6, atol=0)
    _, _, dv = flatattn.backward(v, q, q, v, out, lse, **at)  # dout = identity: dV[b, j, h, i] = Z_ij / ((1 - p) n)
    np.testing.assert_allclose(dv.transpose(0, 2, 3, 1), want, rtol=1e-6, atol=0)
    case = CASES[0]
    t = make(case, rng, backward=True)
    opts = case.options()
    o, l = flatattn.forward(t["q"], t["k"], t["v"], **opts, **at)
    ref, _ = flatattn.reference.forward(t["q"], t["k"], t["v"], **opts, **at)
    naive, _ = flatattn.reference.forward(t["q"], t["k"], t["v"], precision="input", **opts, **at)
    assert judge(o, ref, naive, case.dtype).passed
    o0, _ = flatattn.forward(t["q"], t["k"], t["v"], **opts, **drop)
    assert not np.array_equal(o, o0), "the position must change the mask"
    g = flatattn.backward(t["dout"], t["q"], t["k"], t["v"], o, l, **opts, **at)
    rg = flatattn.reference.backward(t["dout"], t["q"], t["k"], t["v"], **opts, **at)
    ng = flatattn.reference.backward(t["dout"], t["q"], t["k"], t["v"], precision="input", **opts, **at)
    for name, got, r, nv in zip(("dq", "dk", "dv"), g, rg, ng):
        assert judge(got, r, nv, case.dtype).passed, name


def test_position_off_the_64_key_grid_is_refused():
    q = np.zeros((1, 8, 1, 8), np.float32)
    for kw, arg in ((dict(dropout_col0=16), "dropout_col0"), (dict(dropout_col0=32), "dropout_col0"),
                    (dict(dropout_col0=-32), "dropout_col0"),
                    (dict(dropout_row0=-1), "dropout_row0")):
        with pytest.raises(flatattn.FlatattnError) as e:
            flatattn.forward(q, q, q, dropout_p=0.1, **kw)
        assert e.value.argument == arg
        m = np.full((1, 1, 2, 3), 7, np.uint8)
        with pytest.raises(flatattn.FlatattnError) as e:
            flatattn.dropout_mask(1, 1, 2, 3, dropout_p=0.1, dropout_seed=1, dropout_offset=2, out=m, **kw)
        assert e.value.argument == arg and np.all(m == 7)
