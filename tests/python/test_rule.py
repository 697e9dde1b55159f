"""The correctness rule itself: it passes the oracle's own rounding and fails real errors (a check that
cannot fail is a defect)."""

import numpy as np
import pytest

import flatattn
from cases import Case, make
from rule import judge, judge_lse, round_to


def test_rule_fails_a_wrong_output(rng):
    c = Case(b=1, nq=20, nk=20, hq=2, hkv=2, d=32, dtype="float16")
    t = make(c, rng)
    ref, ref_lse = flatattn.reference.forward(t["q"], t["k"], t["v"])
    naive, _ = flatattn.reference.forward(t["q"], t["k"], t["v"], precision="input")
    rounded = ref.astype(np.float16)
    assert judge(rounded, ref, naive, "float16").passed
    bad = rounded.copy()
    bad[0, 3, 1, 7] += np.float16(0.05)
    assert not judge(bad, ref, naive, "float16").passed
    bad = rounded.copy()
    bad[0, 0, 0, 0] = np.nan  # an unwritten (poisoned) element
    v = judge(bad, ref, naive, "float16")
    assert not v.passed and v.nonfinite == 1
    lse = ref_lse.astype(np.float32)
    assert judge_lse(lse, ref_lse, 1e-6).passed
    lse[0, 1, 2] = -np.inf
    assert not judge_lse(lse, ref_lse, 1e-6).passed


def test_rule_accepts_matching_infinities():
    ref = np.array([[-np.inf, 1.0]])
    assert judge_lse(np.array([[-np.inf, 1.0]], np.float32), ref, 1e-6).passed
    assert not judge_lse(np.array([[0.0, 1.0]], np.float32), ref, 1e-6).passed


def test_bf16_rounding_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(10000) * 10.0 ** rng.integers(-6, 6, 10000)
    mine = round_to(x, "bfloat16")
    theirs = torch.from_numpy(x).to(torch.float32).to(torch.bfloat16).to(torch.float64).numpy()
    assert np.array_equal(mine, theirs)


def test_forward_floor_covers_p_rounding(rng):
    """Large logits (nearly one-hot rows) in f16: a naive yardstick can be exact there, so the bound would be
    the output's rounding alone; a kernel rounds P before P V as well. With `allow` = sum_j P|V| the floor is
    2 u (|O| + allow), about 2 ulps: a kernel-like output passes, an error a few ulps beyond fails."""
    from rule import UNIT_ROUNDOFF, p_abs_v

    b, n, h, d = 1, 24, 2, 16
    q = rng.standard_normal((b, n, h, d)) * 10
    k = rng.standard_normal((b, n, h, d)) * 10
    v = round_to(rng.standard_normal((b, n, h, d)), "float16")
    s = np.einsum("bihd,bjhd->bhij", q, k) / np.sqrt(d)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = np.einsum("bhij,bjhd->bihd", p, v)
    u = UNIT_ROUNDOFF["float16"]
    sim = round_to(ref * (1 - 1.9 * u), "float16")  # P rounded down by ~2u, then O rounded
    allow = p_abs_v(p, v)
    after = judge(sim, ref, ref, "float16", allow=allow)
    assert after.passed, str(after)
    assert after.bound <= 2 * u * np.max(np.abs(ref) + allow) * (1 + 1e-12)
    # On one-hot rows allow = |O| (so the floor there is 4 u |O|, about 2 ulps); other rows' allow is larger
    # (V's signs mix), which is why the bound is stated per element above and not as 4 u max |O|.
    onehot = np.moveaxis(p.max(-1) > 1 - 1e-9, 1, 2)  # (b, n, h), as ref's rows
    assert onehot.any()
    # |allow - |O|| <= 2 (1 - max P) max|V| < 2e-9 max|V| on those rows
    np.testing.assert_allclose(allow[onehot], np.abs(ref[onehot]), rtol=0, atol=2e-9 * np.abs(v).max())
    arg = np.unravel_index(np.argmax(np.abs(ref)), ref.shape)
    ulp = 2.0 ** (np.floor(np.log2(np.abs(ref[arg]))) - 10)
    bad = sim.copy()
    bad[arg] = ref[arg] + np.copysign(after.bound + 3 * ulp, ref[arg])
    assert not judge(bad, ref, ref, "float16", allow=allow).passed
