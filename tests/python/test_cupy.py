"""CuPy arrays on the GPU through the native API (DLPack consumer-stream protocol), vs the fp64 oracle."""

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")

import flatattn  # noqa: E402
from cases import Case, make  # noqa: E402
from rule import judge  # noqa: E402

pytestmark = pytest.mark.cuda


def test_cupy_forward_backward(rng, seed):
    c = Case(b=2, nq=40, nk=56, hq=4, hkv=2, d=64, dtype="float16", causal=True)
    t = make(c, rng, backward=True)
    q, k, v, dout = (cupy.asarray(t[n]) for n in ("q", "k", "v", "dout"))
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        out, lse = flatattn.forward(q, k, v, causal=True)  # ordered on CuPy's current stream
        dq, dk, dv = flatattn.backward(dout, q, k, v, out, lse, causal=True)
    stream.synchronize()
    ref, _ = flatattn.reference.forward(t["q"], t["k"], t["v"], causal=True)
    naive, _ = flatattn.reference.forward(t["q"], t["k"], t["v"], causal=True, precision="input")
    v_ = judge(cupy.asnumpy(out), ref, naive, "float16")
    assert v_.passed, f"seed={seed}: {v_}"
    gref = flatattn.reference.backward(t["dout"], t["q"], t["k"], t["v"], causal=True)
    gnaive = flatattn.reference.backward(t["dout"], t["q"], t["k"], t["v"], causal=True, precision="input")
    for name, g, r, n in zip(("dq", "dk", "dv"), (dq, dk, dv), gref, gnaive):
        vg = judge(cupy.asnumpy(g), r, n, "float16")
        assert vg.passed, f"{name} seed={seed}: {vg}"
    assert isinstance(out, cupy.ndarray) and out.dtype == np.float16
