"""Bad input raises flatattn.FlatattnError naming the argument (with value, limit and fix), before any output
is written."""

import numpy as np
import pytest

import flatattn
from cases import Case, make


def _call(t, **kw):
    args = dict(out=t["out"], lse=t["lse"])
    args.update(kw)
    q = args.pop("q", t["q"])
    k = args.pop("k", t["k"])
    v = args.pop("v", t["v"])
    return flatattn.forward(q, k, v, **args)


def _raises(t, argument, **kw):
    with pytest.raises(flatattn.FlatattnError) as e:
        _call(t, **kw)
    err = e.value
    assert err.argument == argument, f"named {err.argument!r}, expected {argument!r}: {err}"
    assert err.limit and err.fix, f"an error must say the limit and the fix: {err}"
    assert str(err).startswith("flatattn: " + argument), str(err)
    assert np.isnan(t["out"]).all() and np.isnan(t["lse"]).all(), "nothing may be written on an invalid call"
    return err


@pytest.fixture
def t(rng):
    return make(Case(b=2, nq=8, nk=10, hq=4, hkv=2, d=16), rng)


def test_error_is_a_value_error(t):
    err = _raises(t, "q", q=t["q"].astype(np.float64))
    assert isinstance(err, ValueError) and err.kind == "invalid_argument"
    assert "f64" in err.value


@pytest.mark.parametrize("what, argument, change", [
    ("int dtype", "q", lambda t: dict(q=t["q"].astype(np.int64))),
    ("k dtype differs", "k", lambda t: dict(k=t["k"].astype(np.float16))),
    ("v dtype differs", "v", lambda t: dict(v=t["v"].astype(np.float16))),
    ("heads not a multiple", "k", lambda t: dict(k=np.zeros((2, 10, 3, 16), np.float32),
                                                 v=np.zeros((2, 10, 3, 16), np.float32))),
    ("k head dim", "k", lambda t: dict(k=np.zeros((2, 10, 2, 8), np.float32))),
    ("v head dim", "v", lambda t: dict(v=np.zeros((2, 10, 2, 8), np.float32))),
    ("v length", "v", lambda t: dict(v=np.zeros((2, 11, 2, 16), np.float32))),
    ("k batch", "k", lambda t: dict(k=np.zeros((3, 10, 2, 16), np.float32), v=np.zeros((3, 10, 2, 16), np.float32))),
    ("q last dim strided", "q", lambda t: dict(q=np.zeros((2, 8, 4, 32), np.float32)[..., ::2])),
    ("q rank 5", "q", lambda t: dict(q=np.zeros((1, 2, 8, 4, 16), np.float32))),
    ("q rank 3 without cu_seqlens", "q", lambda t: dict(q=np.zeros((8, 4, 16), np.float32))),
    ("out shape", "out", lambda t: dict(out=np.full((2, 8, 4, 8), np.nan, np.float32))),
    ("out dtype", "out", lambda t: dict(out=np.full((2, 8, 4, 16), np.nan, np.float16))),
    ("lse shape", "lse", lambda t: dict(lse=np.full((2, 8, 4), np.nan, np.float32))),
    ("lse dtype", "lse", lambda t: dict(lse=np.full((2, 4, 8), np.nan, np.float64))),
    ("causal with window right", "window.right", lambda t: dict(causal=True, window=(4, 3))),
    ("window left", "window.left", lambda t: dict(window=(-2, -1))),
    ("negative softcap", "softcap", lambda t: dict(softcap=-1.0)),
    ("nan scale", "softmax_scale", lambda t: dict(softmax_scale=float("nan"))),
    ("bad align", "causal_align", lambda t: dict(causal_align="diagonal")),
    ("bad window", "window", lambda t: dict(window=3)),
    ("bad dataflow", "dataflow", lambda t: dict(dataflow="fastest")),
    ("negative threads", "num_threads", lambda t: dict(num_threads=-1)),
])
def test_forward_errors_name_the_argument(t, what, argument, change):
    _raises(t, argument, **change(t))


@pytest.fixture
def tv(rng):
    return make(Case(hq=2, hkv=2, d=16, seqlens_q=(3, 5), seqlens_k=(4, 6)), rng)


@pytest.mark.parametrize("argument, change", [
    ("cu_seqlens_q", lambda t: dict(cu_seqlens_q=t["cu_seqlens_q"].astype(np.int64), cu_seqlens_k=t["cu_seqlens_k"])),
    ("cu_seqlens_k", lambda t: dict(cu_seqlens_q=t["cu_seqlens_q"])),
    ("cu_seqlens_q", lambda t: dict(cu_seqlens_q=np.array([0, 5, 3], np.int32), cu_seqlens_k=t["cu_seqlens_k"])),
    ("cu_seqlens_q", lambda t: dict(cu_seqlens_q=np.array([1, 3, 8], np.int32), cu_seqlens_k=t["cu_seqlens_k"])),
    ("cu_seqlens_k", lambda t: dict(cu_seqlens_q=t["cu_seqlens_q"], cu_seqlens_k=np.array([0, 4, 99], np.int32))),
    ("cu_seqlens_k", lambda t: dict(cu_seqlens_q=t["cu_seqlens_q"], cu_seqlens_k=np.array([0, 10], np.int32))),
    ("max_seqlen_q", lambda t: dict(cu_seqlens_q=t["cu_seqlens_q"], cu_seqlens_k=t["cu_seqlens_k"], max_seqlen_q=2)),
])
def test_varlen_errors_name_the_argument(tv, argument, change):
    _raises(tv, argument, **change(tv))


def test_backward_errors_name_the_argument(rng):
    t = make(Case(b=1, nq=6, nk=6, hq=2, hkv=2, d=16), rng, backward=True)
    out, lse = flatattn.forward(t["q"], t["k"], t["v"])
    for argument, kw in [("lse", dict(lse=lse[:, :, :3])), ("dq", dict(dq=np.zeros((1, 6, 2, 8), np.float32))),
                         ("dout", dict(dout=t["dout"].astype(np.float16))),
                         ("dk", dict(dk=np.zeros((1, 6, 1, 16), np.float32)))]:
        args = dict(dout=t["dout"], q=t["q"], k=t["k"], v=t["v"], out=out, lse=lse, dq=t["dq"])
        args.update({k: v for k, v in kw.items() if k in args})
        extra = {k: v for k, v in kw.items() if k not in args}
        with pytest.raises(flatattn.FlatattnError) as e:
            flatattn.backward(args["dout"], args["q"], args["k"], args["v"], args["out"], args["lse"], dq=args["dq"],
                              **extra)
        assert e.value.argument == argument, str(e.value)
    assert np.isnan(t["dq"]).all(), "nothing may be written on an invalid call"


def test_not_an_array():
    with pytest.raises(TypeError, match="numpy, torch or CuPy"):
        flatattn.forward([[1.0]], [[1.0]], [[1.0]])


def test_oracle_rejects_bad_precision(rng):
    t = make(Case(), rng)
    with pytest.raises(flatattn.FlatattnError) as e:
        flatattn.reference.forward(t["q"], t["k"], t["v"], precision="f16")
    assert e.value.argument == "precision"


def test_cuda_arrays_without_cuda_build_are_an_unsupported_error():
    torch = pytest.importorskip("torch")
    if flatattn.cuda_built() or not torch.cuda.is_available():
        pytest.skip("needs a GPU and a CPU-only build")
    q = torch.randn(1, 4, 1, 16, device="cuda", dtype=torch.float16)
    with pytest.raises(flatattn.FlatattnUnsupportedError) as e:
        flatattn.forward(q, q, q)
    assert isinstance(e.value, NotImplementedError)
