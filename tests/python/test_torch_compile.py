"""The custom ops under torch.library.opcheck, torch.compile(fullgraph=True) and CUDA-graph capture."""

import pytest

torch = pytest.importorskip("torch")

import flatattn  # noqa: E402
from flatattn import flash_attn_interface as fa  # noqa: E402
from flatattn import torch_ops  # noqa: E402,F401  (registers torch.ops.flatattn.*)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
DTYPE = {"cpu": torch.float32, "cuda": torch.bfloat16}


def _inputs(device, seed, b=2, nq=24, nk=40, hq=4, hkv=2, d=32, grad=False):
    g = torch.Generator().manual_seed(seed)
    dt = DTYPE[device]
    t = [torch.randn(b, n, h, d, generator=g).to(device, dt) for n, h in ((nq, hq), (nk, hkv), (nk, hkv))]
    return [x.requires_grad_(grad) for x in t]


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device, seed):
    q, k, v = _inputs(device, seed)
    opts = (None, True, False, -1, -1, 0.0, False, 0.0, 0, 0, "auto", 0)
    torch.library.opcheck(torch.ops.flatattn.fwd.default, (q, k, v, *opts))
    qg, kg, vg = _inputs(device, seed, grad=True)
    torch.library.opcheck(torch.ops.flatattn.fwd.default, (qg, kg, vg, *opts))
    out, lse = torch.ops.flatattn.fwd(q, k, v, *opts)
    torch.library.opcheck(torch.ops.flatattn.bwd.default,
                          (torch.randn_like(out), q, k, v, out, lse, None, True, False, -1, -1, 0.0, False, 0.0, 0, 0,
                           0))
    # dropout: (p, seed, offset) ride in the schema; the backward regenerates the forward's mask
    dopts = (None, True, False, -1, -1, 0.0, False, 0.25, 12345, 678, "auto", 0)
    torch.library.opcheck(torch.ops.flatattn.fwd.default, (qg, kg, vg, *dopts))
    out, lse = torch.ops.flatattn.fwd(q, k, v, *dopts)
    torch.library.opcheck(torch.ops.flatattn.bwd.default,
                          (torch.randn_like(out), q, k, v, out, lse, None, True, False, -1, -1, 0.0, False, 0.25,
                           12345, 678, 0))
    cu_q = torch.tensor([0, 10, 24], dtype=torch.int32, device=device)
    cu_k = torch.tensor([0, 30, 40], dtype=torch.int32, device=device)
    qv, kv_, vv = q.reshape(-1, 4, 32)[:24], k.reshape(-1, 2, 32)[:40], v.reshape(-1, 2, 32)[:40]
    vopts = (None, False, False, -1, -1, 0.0, False, 0.0, 0, 0, "auto", 0)
    torch.library.opcheck(torch.ops.flatattn.varlen_fwd.default, (qv, kv_, vv, cu_q, cu_k, 14, 30, *vopts))
    out, lse = torch.ops.flatattn.varlen_fwd(qv, kv_, vv, cu_q, cu_k, 14, 30, *vopts)
    torch.library.opcheck(torch.ops.flatattn.varlen_bwd.default,
                          (torch.randn_like(out), qv, kv_, vv, out, lse, cu_q, cu_k, 14, 30,
                           None, False, False, -1, -1, 0.0, False, 0.0, 0, 0, 0))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_ext_ops(device, seed):
    """variant_fwd / variant_bwd with ALiBi slopes and sinks (batched and varlen) under opcheck: schema, fake kernel, autograd
    registration, AOT dispatch."""
    q, k, v = _inputs(device, seed, grad=True)
    g = torch.Generator().manual_seed(seed + 1)
    slopes = (torch.rand(4, generator=g) * 0.5).to(device)
    sinks = torch.randn(4, generator=g).to(device).requires_grad_()
    opts = (None, True, False, -1, -1, 0.0, False, 0.0, 0, 0, "auto", 0)
    for al, sk in ((slopes, None), (None, sinks), (slopes, sinks)):
        torch.library.opcheck(torch.ops.flatattn.variant_fwd.default,
                              (q, k, v, None, None, 24, 40, al, sk, None, 0, 0, [], *opts))
        with torch.no_grad():
            out, lse = torch.ops.flatattn.variant_fwd(q, k, v, None, None, 24, 40, al, sk, None, 0, 0, [], *opts)
        torch.library.opcheck(torch.ops.flatattn.variant_bwd.default,
                              (torch.randn_like(out), q.detach(), k.detach(), v.detach(), out, lse, None, None, 24,
                               40, al, None if sk is None else sk.detach(), None, 0, 0, [], False, *opts[:-2], 0))
    cu_q = torch.tensor([0, 10, 24], dtype=torch.int32, device=device)
    cu_k = torch.tensor([0, 30, 40], dtype=torch.int32, device=device)
    qv, kv_, vv = (t.detach().reshape(-1, t.shape[2], 32)[:n] for t, n in ((q, 24), (k, 40), (v, 40)))
    torch.library.opcheck(torch.ops.flatattn.variant_fwd.default,
                          (qv, kv_, vv, cu_q, cu_k, 14, 30, slopes, sinks.detach(), None, 0, 0, [], *opts))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("paged", [False, True])
def test_opcheck_fwd_kvcache(device, paged, seed):
    """fwd_kvcache under opcheck: the caches it appends k/v to are declared mutated (Tensor(a!)), the fake kernel
    matches (with and without lse), and AOT dispatch replays the in-place append."""
    g = torch.Generator().manual_seed(seed)
    dt = DTYPE[device]
    b, hq, hkv, d, nnew, page = 2, 4, 2, 64, 2, 16  # D = 64: the CUDA decode kernels serve 64, 128 and 256
    seqlens = torch.tensor([5, 19], dtype=torch.int32)
    if paged:
        block_table = torch.tensor([[3, 0], [1, 2]], dtype=torch.int32, device=device)
        shape = (4, page, hkv, d)
    else:
        block_table = None
        shape = (b, 24, hkv, d)
    k_cache, v_cache = (torch.randn(*shape, generator=g).to(device, dt) for _ in range(2))
    q = torch.randn(b, nnew, hq, d, generator=g).to(device, dt)
    k_new, v_new = (torch.randn(b, nnew, hkv, d, generator=g).to(device, dt) for _ in range(2))
    for return_lse in (False, True):
        args = (q, k_cache, v_cache, seqlens.to(device), block_table, None, None, k_new, v_new, None, None, False,
                None, None, None, True, -1, -1, 0.0, 0, return_lse, 0)
        torch.library.opcheck(torch.ops.flatattn.fwd_kvcache.default, args)


def _step(q, k, v):
    out = fa.flash_attn_func(q, k, v, causal=True)
    sd = flatattn.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True, enable_gqa=True)
    return (out.float().square().sum() + sd.float().sum()), out


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_matches_eager(device, seed):
    """torch.compile(fullgraph=True) raises on any graph break; the compiled step must equal eager, grads too."""
    torch._dynamo.reset()
    backend = "aot_eager" if device == "cpu" else "inductor"  # inductor on the GPU; aot_eager keeps CI fast
    q, k, v = _inputs(device, seed, grad=True)
    loss, out = _step(q, k, v)
    loss.backward()
    eager = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    compiled = torch.compile(_step, fullgraph=True, backend=backend)
    closs, cout = compiled(q, k, v)
    closs.backward()
    assert torch.equal(cout, out)  # the same op on the same inputs
    # aot_eager replays the same ops: bitwise; inductor may round the loss's gradient differently
    tol = dict(rtol=0, atol=0) if backend == "aot_eager" else {}
    for a, t in zip(eager, (q, k, v)):
        torch.testing.assert_close(t.grad, a, **tol)


@pytest.mark.slow
def test_compile_inductor_cpu(seed):
    """The full inductor pipeline on the CPU (C++ codegen around the opaque op), dynamic shapes included.
    Slow (a minute on 2 cores): runs with FLATATTN_TEST_SLOW=1."""
    torch._dynamo.reset()
    fn = torch.compile(lambda q, k, v: fa.flash_attn_func(q, k, v, causal=True) * 2, fullgraph=True, dynamic=True)
    for nq in (24, 31):
        q, k, v = _inputs("cpu", seed, nq=nq)
        assert torch.equal(fn(q, k, v), fa.flash_attn_func(q, k, v, causal=True) * 2)


def _capture(fn, seed):
    """Captures fn() in a CUDA graph after a side-stream warm-up; returns (graph, the static outputs)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up on a side stream, as torch.cuda.graphs requires
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = fn()
    return graph, static


FWD = (None, True, False, -1, -1, 0.0, False, 0.0, 0, 0, "auto", 0)
BWD = (None, True, False, -1, -1, 0.0, False, 0.0, 0, 0, 0)


@pytest.mark.cuda
def test_cuda_graph_capture_forward(seed):
    """The forward op captured in a CUDA graph, replayed on new inputs copied into the static ones."""
    q, k, v = _inputs("cuda", seed)
    graph, (g_out, g_lse) = _capture(lambda: torch.ops.flatattn.fwd(q, k, v, *FWD), seed)
    for i in range(3):
        for dst, src in zip((q, k, v), _inputs("cuda", seed + 1 + i)):
            dst.copy_(src)
        graph.replay()
        out, lse = torch.ops.flatattn.fwd(q, k, v, *FWD)
        torch.cuda.synchronize()
        assert torch.equal(g_out, out) and torch.equal(g_lse, lse)


@pytest.mark.cuda
def test_cuda_graph_capture_backward(seed):
    """The backward op captured in a CUDA graph (no allocation or synchronization inside it)."""
    q, k, v = _inputs("cuda", seed)
    out, lse = torch.ops.flatattn.fwd(q, k, v, *FWD)
    dout = torch.randn_like(q)
    graph, (g_dq, g_dk, g_dv) = _capture(lambda: torch.ops.flatattn.bwd(dout, q, k, v, out, lse, *BWD), seed)
    for i in range(2):
        dout.copy_(torch.randn_like(dout))
        graph.replay()
        dq, dk, dv = torch.ops.flatattn.bwd(dout, q, k, v, out, lse, *BWD)
        torch.cuda.synchronize()
        torch.testing.assert_close(g_dq, dq)  # the backward may accumulate dq in another order
        torch.testing.assert_close(g_dk, dk)
        torch.testing.assert_close(g_dv, dv)


@pytest.mark.cuda
def test_compiled_cuda_graphs(seed):
    """torch.compile(mode='reduce-overhead') wraps the op in inductor's CUDA graphs."""
    torch._dynamo.reset()
    fn = torch.compile(lambda q, k, v: fa.flash_attn_func(q, k, v, causal=True), mode="reduce-overhead",
                       fullgraph=True)
    for i in range(3):
        q, k, v = _inputs("cuda", seed + i)
        assert torch.equal(fn(q, k, v), fa.flash_attn_func(q, k, v, causal=True))


@pytest.mark.cuda
def test_runs_on_the_current_stream(seed):
    """Work is queued on torch's current stream: q is written on a busy side stream (torch's streams do not
    synchronize with the legacy default stream), so a kernel on any other stream would read the zeros."""
    q0, k, v = _inputs("cuda", seed, nq=256, nk=256)
    q = torch.zeros_like(q0)
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        torch.cuda._sleep(50_000_000)  # tens of milliseconds of GPU time before q gets its values
        q.copy_(q0)
        out = fa.flash_attn_func(q, k, v)
    torch.cuda.synchronize()
    ref = fa.flash_attn_func(q0, k, v)
    torch.cuda.synchronize()
    assert torch.equal(out, ref)
