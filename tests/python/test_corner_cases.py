"""Corner cases of the Python entry points (issue 20, item 3): empty inputs return empty outputs, varlen with
0 or 1 packed rows runs whatever strides the exporter reports for size-1 dims, num_threads=0 means all hardware
threads on every path, and ``stream=`` is honoured on the torch-op path."""

import numpy as np
import pytest

import flatattn


@pytest.mark.parametrize("shape_q,shape_k", [((0, 5, 2, 16), (0, 7, 2, 16)), ((2, 0, 2, 16), (2, 7, 2, 16))],
                         ids=["B=0", "Nq=0"])
def test_numpy_empty_inputs_give_empty_outputs(shape_q, shape_k):
    q = np.zeros(shape_q, np.float32)
    k = np.zeros(shape_k, np.float32)
    out, lse = flatattn.forward(q, k, k)
    assert out.shape == q.shape and lse.shape == (shape_q[0], shape_q[2], shape_q[1])
    dq, dk, dv = flatattn.backward(out, q, k, k, out, lse)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == k.shape


def test_numpy_no_keys_give_zero_and_minus_inf():
    q = np.ones((1, 3, 2, 8), np.float32)
    k = np.zeros((1, 0, 2, 8), np.float32)
    out, lse = flatattn.forward(q, k, k)
    assert np.all(out == 0) and np.all(np.isneginf(lse))


@pytest.mark.parametrize("rows", [0, 1])
def test_numpy_varlen_zero_or_one_row(rows, rng):
    q = rng.standard_normal((rows, 2, 16)).astype(np.float32)
    k = rng.standard_normal((rows, 1, 16)).astype(np.float32)
    cu = np.array([0, rows], np.int32)
    out, lse = flatattn.forward(q, k, k, cu_seqlens_q=cu, cu_seqlens_k=cu)
    ref, ref_lse = flatattn.reference.forward(q, k, k, cu_seqlens_q=cu, cu_seqlens_k=cu)
    assert out.shape == q.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_torch_stream_and_num_threads_on_the_op_path(rng):
    torch = pytest.importorskip("torch")
    q = torch.randn(1, 40, 2, 32)
    a, _ = flatattn.forward(q, q, q, num_threads=0)
    b, _ = flatattn.forward(q, q, q, num_threads=1)
    assert torch.equal(a, b)  # the CPU engine is bitwise reproducible for any thread count
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for the stream check")
    qc = q.to("cuda", torch.float16)
    ref, _ = flatattn.forward(qc, qc, qc)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    torch.cuda._sleep(2_000_000_000)  # the current stream is busy for ~1 s
    out, _ = flatattn.forward(qc, qc, qc, stream=side)
    with torch.cuda.stream(side):  # read on `side` only: right iff the op ran there, not behind the sleep
        got = out.to("cpu")
    assert not torch.cuda.current_stream().query(), "the sleep ended too early to tell the streams apart"
    assert torch.equal(got, ref.cpu())
