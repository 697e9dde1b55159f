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
