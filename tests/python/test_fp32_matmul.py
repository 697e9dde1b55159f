"""flatattn.forward / backward's fp32_matmul="bf16" (Options::fp32_matmul: float32 inputs multiplied as bf16 on the
CPU's AMX / AVX512-BF16 units). Judged as tests/cpu/test_fp32_matmul.cc judges it: against the fp64 oracle of the
inputs rounded to bf16 (nearest even), under the rule for bf16 (here with the float32 naive attention of the rounded
inputs as the yardstick, tighter than the C++ suite's bf16 one; the bf16 floor covers the rounding of P and O)."""

import numpy as np
import pytest

import flatattn
from cases import Case, make
from rule import LSE_TOL, judge, judge_lse, round_to


def _rounded(x):
    return round_to(x, "bfloat16").astype(np.float32)


def _served(fn):
    """Runs fn; a machine without AMX-BF16 and AVX512-BF16 must refuse with an error naming fp32_matmul (skip)."""
    try:
        return fn()
    except flatattn.FlatattnError as e:
        assert e.argument == "fp32_matmul", str(e)
        pytest.skip("this CPU has neither AMX-BF16 nor AVX512-BF16: fp32_matmul='bf16' is refused here")


@pytest.mark.parametrize("case", [Case(b=2, nq=70, nk=90, hq=4, hkv=2, d=64, causal=True),
                                  Case(b=1, nq=33, nk=65, hq=2, hkv=2, d=59, layout="bhnd"),
                                  Case(b=1, nq=40, nk=40, hq=2, hkv=1, d=128, window=(8, 0))], ids=str)
@pytest.mark.parametrize("dataflow", ["flash", "flat"])
def test_forward_and_backward_match_the_rounded_oracle(case, dataflow, rng, seed):
    t = make(case, rng, backward=True)
    opts = case.options()
    out, lse, rep = _served(lambda: flatattn.forward(t["q"], t["k"], t["v"], dataflow=dataflow, fp32_matmul="bf16",
                                                      return_report=True, **opts))
    assert rep.kernel.endswith(("_amx", "_avx512bf16")), rep.kernel
    assert out.dtype == np.float32 and lse.dtype == np.float32
    q, k, v, do = (_rounded(t[n]) for n in ("q", "k", "v", "dout"))
    ref, ref_lse = flatattn.reference.forward(q, k, v, **opts)
    naive, _ = flatattn.reference.forward(q, k, v, precision="input", **opts)
    vo = judge(out, ref, naive, "bfloat16")
    assert vo.passed, f"{case} {dataflow} seed={seed}: out {vo}"
    assert judge_lse(lse, ref_lse, LSE_TOL["float32"]).passed, f"{case} seed={seed}: lse"
    # Not the exact path: the rounding shows (f32 inputs are not bf16-representable).
    exact, _ = flatattn.forward(t["q"], t["k"], t["v"], dataflow=dataflow, **opts)
    assert not np.array_equal(out, exact)

    dq, dk, dv, brep = flatattn.backward(t["dout"], t["q"], t["k"], t["v"], out, lse, fp32_matmul="bf16",
                                         return_report=True, **opts)
    assert brep.kernel.endswith(("_amx", "_avx512bf16")), brep.kernel
    refs = flatattn.reference.backward(do, q, k, v, **opts)
    naives = flatattn.reference.backward(do, q, k, v, precision="input", **opts)
    for name, got, r, n in zip(("dq", "dk", "dv"), (dq, dk, dv), refs, naives):
        vg = judge(got, r, n, "bfloat16")
        assert vg.passed, f"{case} seed={seed}: {name} {vg}"


def test_refusals(rng):
    t = make(Case(b=1, nq=16, nk=16, hq=2, hkv=2, d=32, dtype="float16"), rng)
    with pytest.raises(flatattn.FlatattnError) as e:
        flatattn.forward(t["q"], t["k"], t["v"], fp32_matmul="bf16")
    assert e.value.argument == "fp32_matmul"
    assert np.isnan(t["out"]).all()
    t = make(Case(b=1, nq=16, nk=16, hq=2, hkv=2, d=32), rng)
    with pytest.raises(flatattn.FlatattnError) as e:
        flatattn.forward(t["q"], t["k"], t["v"], fp32_matmul="tf32")
    assert e.value.argument == "fp32_matmul"


def test_torch_autograd_is_refused_not_dropped():
    torch = pytest.importorskip("torch")
    q = torch.randn(1, 16, 2, 32, requires_grad=True)
    k, v = torch.randn(1, 16, 2, 32), torch.randn(1, 16, 2, 32)
    with pytest.raises(flatattn.FlatattnError) as e:
        flatattn.forward(q, k, v, fp32_matmul="bf16")
    assert e.value.argument == "fp32_matmul"
    with torch.no_grad():  # no graph wanted: served (or refused by a CPU without the units)
        try:
            o, _ = flatattn.forward(q, k, v, fp32_matmul="bf16")
            assert o.dtype == torch.float32 and not o.requires_grad
        except flatattn.FlatattnError as err:
            assert err.argument == "fp32_matmul"
