"""flatattn.distributed (context parallelism) as multi-process gloo runs on the CPU: ring attention (zigzag and
contiguous layouts) and Ulysses attention on world sizes 2 and 4. Every rank's output and gradients, put back
in sequence order, are judged against the fp64 oracle under the project's rule (docs/design.md; rule.judge),
as is single-process flatattn on the full sequence; bad input must raise FlatattnError on every rank.
The same cases run on NCCL with one GPU per rank (world sizes 2, 4, 8) where the machine has the GPUs (marked
cuda); the multi-GPU throughput runs are bench/context_parallel.py (docs/context_parallel.md)."""

import socket
import zlib
import tempfile

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is unavailable", allow_module_level=True)

import flatattn  # noqa: E402
import flatattn.distributed as cp  # noqa: E402
from flatattn import torch_ops  # noqa: E402
from rule import judge  # noqa: E402
from torch_ref import attention_ref, grads_ref  # noqa: E402

# (name, kind, layout, causal, window, softcap, Hq, Hkv, dtype)
CASES = [
    ("ring_causal_zigzag", "ring", "zigzag", True, (-1, -1), 0.0, 2, 2, torch.bfloat16),
    ("ring_causal_zigzag_f32", "ring", "zigzag", True, (-1, -1), 0.0, 2, 2, torch.float32),
    ("ring_full", "ring", "contiguous", False, (-1, -1), 0.0, 2, 2, torch.bfloat16),
    ("ring_causal_contiguous", "ring", "contiguous", True, (-1, -1), 0.0, 2, 2, torch.bfloat16),
    ("ring_gqa_causal", "ring", "zigzag", True, (-1, -1), 0.0, 4, 1, torch.bfloat16),
    ("ring_window_causal", "ring", "zigzag", True, (5, 0), 0.0, 2, 2, torch.bfloat16),
    ("ring_window_both", "ring", "contiguous", False, (3, 6), 0.0, 4, 2, torch.float32),
    # cut after 2 steps; fp32 for the same reason as ring_window_zigzag_full below (bf16: 1 of 80 seeds failed)
    ("ring_window_cut", "ring", "contiguous", True, (5, 0), 0.0, 2, 1, torch.float32),
    # fp32: in bf16 this case (a key's dK split over up to 4 blocks, each rounded to bf16 by the backward kernel)
    # exceeded the rule in 1 of ~250 seeds (docs/context_parallel.md, "Precision")
    ("ring_window_zigzag_full", "ring", "zigzag", False, (2, 9), 0.0, 2, 2, torch.float32),
    ("ring_softcap", "ring", "zigzag", True, (-1, -1), 4.0, 2, 1, torch.bfloat16),
    ("ulysses_causal", "ulysses", "contiguous", True, (-1, -1), 0.0, 8, 8, torch.bfloat16),
    ("ulysses_gqa_window_softcap", "ulysses", "contiguous", False, (4, 2), 3.0, 16, 8, torch.float32),
    ("ulysses_gqa_f16", "ulysses", "contiguous", True, (-1, -1), 0.0, 16, 8, torch.float16),
]
N_LOCAL = {2: 12, 4: 8, 8: 8}
D = 16


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs(world, seed):
    g = torch.Generator().manual_seed(seed)
    n = N_LOCAL[world] * world
    cases = []
    for name, kind, layout, causal, window, softcap, hq, hkv, dtype in CASES:
        r = lambda h: (torch.randn(1, n, h, D, generator=g) * 1.5).to(dtype)  # noqa: E731
        cases.append(dict(name=name, kind=kind, layout=layout, causal=causal, window=window, softcap=softcap,
                          q=r(hq), k=r(hkv), v=r(hkv), dout=r(hq)))
    for name, layout, causal, window, hq, hkv, dtype, n_local, docs in GLOO_EXTRAS:
        m = (n_local or N_LOCAL[world]) * world
        r = lambda h: (torch.randn(1, m, h, D, generator=g) * 1.5).to(dtype)  # noqa: E731
        drop = None if docs else (0.2, *(int(x) for x in torch.randint(0, 2**62, (2,), generator=g)))
        cases.append(dict(name=name, kind="ring", layout=layout, causal=causal, window=window, softcap=0.0,
                          q=r(hq), k=r(hkv), v=r(hkv), dout=r(hq), dropout=drop,
                          cu_seqlens=_doc_bounds(m) if docs else None))
    for name, kind, layout, causal, window, hq, hkv, dtype, n_local, docs, drop in GLOO_MORE:
        m = n_local * world
        r = lambda h: (torch.randn(1, m, h, D, generator=g) * 1.5).to(dtype)  # noqa: E731
        bounds = None if not docs else (_aligned_doc_bounds(m) if kind == "ring" and drop else _doc_bounds(m))
        cases.append(dict(name=name, kind=kind, layout=layout, causal=causal, window=window, softcap=0.0,
                          q=r(hq), k=r(hkv), v=r(hkv), dout=r(hq), cu_seqlens=bounds,
                          dropout=(0.2, *(int(x) for x in torch.randint(0, 2**62, (2,), generator=g))) if drop else None))
    return cases


# Dropout and document masks through ring_attention on the process group (issue 19):
# (name, layout, causal, window, Hq, Hkv, dtype, n_local (None: N_LOCAL), documents (else dropout 0.2))
GLOO_EXTRAS = [
    ("mp_drop_causal_zigzag", "zigzag", True, (-1, -1), 2, 1, torch.bfloat16, 128, False),
    ("mp_drop_full_contiguous", "contiguous", False, (-1, -1), 2, 2, torch.float32, 64, False),
    ("mp_docs_causal_zigzag", "zigzag", True, (-1, -1), 4, 2, torch.bfloat16, None, True),
    ("mp_docs_window_contiguous", "contiguous", False, (3, 5), 2, 1, torch.float32, None, True),
]


# Dropout with document masks in the ring, and Ulysses with dropout and/or documents, on the process group:
# (name, kind, layout, causal, window, Hq, Hkv, dtype, n_local, documents, dropout 0.2)
GLOO_MORE = [
    ("mp_ring_docs_drop_zigzag", "ring", "zigzag", True, (-1, -1), 2, 1, torch.bfloat16, 128, True, True),
    ("mp_ulysses_drop", "ulysses", "contiguous", True, (-1, -1), 8, 4, torch.bfloat16, 16, False, True),
    ("mp_ulysses_docs", "ulysses", "contiguous", False, (3, 5), 8, 4, torch.float32, 12, True, False),
    ("mp_ulysses_docs_drop", "ulysses", "contiguous", True, (-1, -1), 4, 4, torch.float32, 16, True, True),
]

_RUNS = {}


def _run(world, seed, backend="gloo"):
    """Spawns `world` ranks once per (world size, backend); returns (cases, per-rank results)."""
    if (world, backend) not in _RUNS:
        import torch.multiprocessing as mp

        import _cp_worker

        if backend == "nccl" and torch.cuda.device_count() < world:
            pytest.skip(f"needs {world} CUDA GPUs, {torch.cuda.device_count()} present")
        cases = _inputs(world, seed)
        with tempfile.TemporaryDirectory() as path:
            torch.save(cases, f"{path}/cases.pt")
            mp.spawn(_cp_worker.run, args=(world, _free_port(), path, backend), nprocs=world, join=True)
            _RUNS[world, backend] = cases, [torch.load(f"{path}/rank{r}.pt") for r in range(world)]
    return _RUNS[world, backend]


@pytest.fixture(scope="module")
def run_seed():
    """The run's seed (conftest.py prints it; replay with FLATATTN_SEED=...)."""
    import conftest

    return conftest._SEED


def _judged(name, got, ref, naive, dtype, seed):
    v = judge(got, ref, naive, str(dtype)[6:])
    assert v.passed, f"{name} seed={seed}: {v}"


BACKENDS = ["gloo", pytest.param("nccl", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world", [2, 4, 8])
@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_matches_single_device(world, case, backend, run_seed):
    if backend == "gloo" and world == 8:
        pytest.skip("gloo runs world sizes 2 and 4 (the 2-core CI machine); 8 is the NCCL run's")
    cases, results = _run(world, run_seed, backend)
    c = next(x for x in cases if x["name"] == case)
    if case not in results[0]:
        pytest.skip("float32 case: the CUDA kernels take 16-bit inputs")
    got = {key: cp.unshard([r[case][key] for r in results], c["layout"]) for key in ("out", "dq", "dk", "dv")}
    q, k, v, dout = c["q"], c["k"], c["v"], c["dout"]
    kw = dict(causal=c["causal"], window=c["window"], softcap=c["softcap"])
    ref, _ = attention_ref(q, k, v, **kw)
    naive, _ = attention_ref(q, k, v, dtype=q.dtype, **kw)
    _judged(f"{case} W={world} out", got["out"], ref, naive, q.dtype, run_seed)
    gref = grads_ref(q, k, v, dout, **kw)
    gnaive = grads_ref(q, k, v, dout, dtype=q.dtype, **kw)
    for i, key in enumerate(("dq", "dk", "dv")):
        _judged(f"{case} W={world} {key}", got[key], gref[i], gnaive[i], q.dtype, run_seed)
    # single-process flatattn on the full sequence meets the same rule (the yardstick the ring must also meet)
    single, _ = torch_ops.attention(q, k, v, causal=c["causal"], window_left=c["window"][0],
                                    window_right=c["window"][1], softcap=c["softcap"])
    _judged(f"{case} single-process out", single, ref, naive, q.dtype, run_seed)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world", [2, 4, 8])
@pytest.mark.parametrize("case", [c[0] for c in GLOO_EXTRAS])
def test_dropout_and_documents_match_single_device(world, case, backend, run_seed):
    """ring_attention with dropout equals single-device flatattn with the same (seed, offset) (both judged against
    the oracle with the whole sequence's mask); with cu_seqlens, single-device varlen attention over the documents."""
    if backend == "gloo" and world == 8:
        pytest.skip("gloo runs world sizes 2 and 4 (the 2-core CI machine); 8 is the NCCL run's")
    cases, results = _run(world, run_seed, backend)
    c = next(x for x in cases if x["name"] == case)
    if case not in results[0]:
        pytest.skip("float32 case: the CUDA kernels take 16-bit inputs")
    got = [cp.unshard([r[case][key] for r in results], c["layout"]) for key in ("out", "dq", "dk", "dv")]
    q, k, v, dout = c["q"], c["k"], c["v"], c["dout"]
    if c["dropout"]:
        p, seed, offset = c["dropout"]
        refs = _drop_refs(q, k, v, dout, c["causal"], c["window"], p, seed, offset)
        _judge_all(f"{case} W={world} {backend}", got, refs, q.dtype, run_seed)
        single = _single_device_dropout(q, k, v, dout, c["causal"], c["window"], p, seed, offset)
        _judge_all(f"{case} single-device", single, refs, q.dtype, run_seed)
        return
    cu = torch.tensor(c["cu_seqlens"], dtype=torch.int32)
    kw = dict(causal=c["causal"], window=c["window"], cu_seqlens_q=cu, cu_seqlens_k=cu)
    ref, _ = attention_ref(q[0], k[0], v[0], **kw)
    naive, _ = attention_ref(q[0], k[0], v[0], dtype=q.dtype, **kw)
    refs = ((ref, naive), (grads_ref(q[0], k[0], v[0], dout[0], **kw),
                           grads_ref(q[0], k[0], v[0], dout[0], dtype=q.dtype, **kw)))
    _judge_all(f"{case} W={world} {backend}", [t[0] for t in got], refs, q.dtype, run_seed)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world", [2, 4, 8])
@pytest.mark.parametrize("case", [c[0] for c in GLOO_MORE])
def test_documents_dropout_ulysses_match_single_device(world, case, backend, run_seed):
    """Ring attention with dropout and documents together, and Ulysses with dropout and/or documents, equal the
    single-device result: judged against the oracle with the single-device mask (varlen: numbered per document;
    Ulysses: every rank's heads draw the whole problem's head numbering), as is single-device flatattn."""
    if backend == "gloo" and world == 8:
        pytest.skip("gloo runs world sizes 2 and 4 (the 2-core CI machine); 8 is the NCCL run's")
    cases, results = _run(world, run_seed, backend)
    c = next(x for x in cases if x["name"] == case)
    if case not in results[0]:
        pytest.skip("float32 case: the CUDA kernels take 16-bit inputs")
    got = [cp.unshard([r[case][key] for r in results], c["layout"]) for key in ("out", "dq", "dk", "dv")]
    q, k, v, dout = c["q"], c["k"], c["v"], c["dout"]
    p, seed, offset = c["dropout"] if c["dropout"] else (0.0, 0, 0)
    if c["cu_seqlens"] is None:
        refs = _drop_refs(q, k, v, dout, c["causal"], c["window"], p, seed, offset)
        single = _single_device_dropout(q, k, v, dout, c["causal"], c["window"], p, seed, offset)
    else:
        refs, _ = _varlen_drop_refs(q, k, v, dout, c["causal"], c["window"], p, seed, offset, c["cu_seqlens"])
        got = [t[0] for t in got]
        single = _single_device_varlen(q, k, v, dout, c["causal"], c["window"], p, seed, offset, c["cu_seqlens"])
    _judge_all(f"{case} W={world} {backend}", got, refs, q.dtype, run_seed)
    _judge_all(f"{case} single-device", single, refs, q.dtype, run_seed)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world", [2, 4])
def test_bad_input_raises_on_every_rank(world, backend, run_seed):
    _, results = _run(world, run_seed, backend)
    errs = [r["_errors"] for r in results]

    def arg(scenario, rank):
        e = errs[rank][scenario]
        assert e is not None, f"{scenario}: rank {rank} raised nothing"
        return e[1]

    for rank in range(world):
        assert arg("uneven", rank) == "q.shape[1] (n_local)"
        assert arg("odd_zigzag", rank) == "q.shape[1]"
        assert arg("options_differ", rank) == "softcap"
        assert arg("bad_shape_one_rank", rank) == ("k" if rank == 1 else "group")
        assert arg("ulysses_heads", rank) == "q.shape[2]"
        assert arg("ulysses_uneven", rank) == "q.shape[1] (n_local)"
        assert arg("shard_uneven", rank) == "x.shape[dim]"
        if rank:
            assert arg("not_member", rank) == "group"
        assert arg("dropout_docs_unaligned", rank) == "cu_seqlens"
        assert arg("ulysses_bad_docs", rank) == "cu_seqlens"
        assert arg("dropout_unaligned", rank) == "q.shape[1]"
        assert arg("dropout_bad_p", rank) == "dropout_p"
        assert arg("docs_bad", rank) == "cu_seqlens"
        assert arg("docs_differ", rank) == "cu_seqlens (values)"
        assert arg("rng_differ", rank) == "rng_state offset (low 32 bits)"
        assert errs[rank]["drawn_rng_equal"], "rng_state=None: the ranks did not use group rank 0's draw"
    assert errs[0]["solo_err"] <= (0.0 if backend == "gloo" else 1e-2)


def test_not_initialized_raises():
    q = torch.zeros(1, 4, 1, 8)
    if dist.is_initialized():
        pytest.skip("a process group exists in this process")
    with pytest.raises(flatattn.FlatattnError) as e:
        cp.ring_attention(q, q, q)
    assert e.value.argument == "group" and "init_process_group" in e.value.fix


def test_layout_round_trip():
    x = torch.arange(2 * 24).reshape(2, 24)
    for world in (1, 2, 3, 4):
        for layout in ("zigzag", "contiguous"):
            parts = [cp.shard(x, r, world, layout) for r in range(world)]
            assert torch.equal(cp.unshard(parts, layout), x)
    z = [cp.shard(x[:1], r, 3, "zigzag")[0].tolist() for r in range(3)]
    assert z[0] == [0, 1, 2, 3, 20, 21, 22, 23] and z[2] == [8, 9, 10, 11, 12, 13, 14, 15]


def _assert_plans_cover(big, lay, world, n, plan, what, positions=False):
    """Every (rank r, source s) hop's blocks from plan(q segments, k segments) cover exactly big's visible pairs
    between the two shards' global positions, each once; with positions, each block also carries its global
    row0/col0 (dropout's position)."""
    from flatattn.distributed import layout
    from torch_ref import visible

    pos = [[g + i for g, _, m in layout.segments(lay, r, world, n) for i in range(m)] for r in range(world)]
    for r in range(world):
        for s in range(world):
            want = big[pos[r]][:, pos[s]]
            got = torch.zeros(n, n, dtype=torch.int32)
            for b in plan(layout.segments(lay, r, world, n), layout.segments(lay, s, world, n)):
                m = visible(b.q1 - b.q0, b.k1 - b.k0, b.causal, True, (b.window_left, b.window_right))
                got[b.q0:b.q1, b.k0:b.k1] += m.int()
                if positions:
                    assert pos[r][b.q0] == b.row0 and pos[s][b.k0] == b.col0
            assert torch.equal(got, want.int()), (world, n, lay, *what, r, s)


def test_plan_hop_matches_mask():
    """Every (rank, source) hop's blocks cover exactly the globally visible pairs, each once."""
    from flatattn.distributed import _blocks
    from torch_ref import visible

    for world, n in ((2, 6), (3, 4), (4, 8)):
        for lay in ("zigzag", "contiguous"):
            for causal, window in ((True, (-1, -1)), (False, (-1, -1)), (True, (3, 0)), (False, (2, 5)),
                                   (False, (0, 0)), (True, (9, -1))):
                big = visible(world * n, world * n, causal, False, window)
                _assert_plans_cover(big, lay, world, n, lambda qs, ks: _blocks.plan_hop(qs, ks, causal, window),
                                    (causal, window))


def test_window_cuts_the_ring():
    """A causal window on contiguous shards needs only the nearest shards: the ring stops after the last step
    at which any rank has work (the dK/dV accumulators then go straight home)."""
    from flatattn.distributed import ring

    assert {len(r) for r in ring._plan("contiguous", 4, 8, True, (5, 0))} == {2}
    assert {len(r) for r in ring._plan("contiguous", 8, 8, True, (16, 0))} == {3}
    assert {len(r) for r in ring._plan("contiguous", 4, 8, False, (3, 6))} == {4}  # right side: the last step
    assert {len(r) for r in ring._plan("zigzag", 4, 8, True, (-1, -1))} == {4}


# ---- the ring's math in one process: one thread per rank, queues for P2P (runs flatattn's CUDA kernels on ONE
# GPU with every block shape, window cut and merge of the multi-GPU run; the transport is not NCCL's)


class _Peer:
    """One rank of an in-process ring: exchange() as ring._exchange's contract (FIFO per (src, dst, tag))."""

    def __init__(self, rank, world, queues):
        self.rank, self.world, self.queues = rank, world, queues

    def exchange(self, send, recv, to, frm, tag):
        self.queues[self.rank, (self.rank + to) % self.world, tag].put(send.clone())
        src = (self.rank + frm) % self.world
        queues, me = self.queues, self.rank

        class Req:
            def wait(self):
                recv.copy_(queues[src, me, tag].get(timeout=120))

        return [Req()]


def _threaded_ring(world, q, k, v, dout, layout, causal, window, softcap, dropout=(0.0, 0, 0), docs=None):
    import math
    import queue
    import threading

    from flatattn.distributed import ring

    # every queue made up front: a defaultdict would race (two threads making the same queue, a message lost)
    queues = {(a, b, tag): queue.Queue() for a in range(world) for b in range(world)
              for tag in (ring._TAG_KV, ring._TAG_DKV)}
    results, errors = [None] * world, []

    def body(r):
        try:
            cfg = ring._Cfg(_Peer(r, world, queues), r, world, layout, causal, tuple(window), float(softcap),
                            1.0 / math.sqrt(q.shape[-1]), False, *dropout, None if docs is None else tuple(docs))
            qs, ks, vs, ds = (cp.shard(t, r, world, layout) for t in (q, k, v, dout))
            out, lse = ring._forward(qs, ks, vs, cfg)
            results[r] = (out, *ring._backward(ds, qs, ks, vs, out, lse, cfg))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[0]
    return [cp.unshard([res[i] for res in results], layout) for i in range(4)]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("world", [2, 4, 8])
@pytest.mark.parametrize("case", [c[0] for c in CASES if c[1] == "ring"])
def test_ring_math_in_one_process(case, world, device, run_seed):
    name, _, layout, causal, window, softcap, hq, hkv, dtype = next(c for c in CASES if c[0] == case)
    if device == "cuda" and dtype == torch.float32:
        pytest.skip("float32 case: the CUDA kernels take 16-bit inputs")
    g = torch.Generator().manual_seed((run_seed ^ zlib.crc32(f"{case}-{world}".encode())) & 0x7FFFFFFF)
    n = N_LOCAL[world] * world
    q, k, v, dout = ((torch.randn(1, n, h, D, generator=g) * 1.5).to(dtype) for h in (hq, hkv, hkv, hq))
    got = _threaded_ring(world, *(t.to(device) for t in (q, k, v, dout)), layout, causal, window, softcap)
    kw = dict(causal=causal, window=window, softcap=softcap)
    ref, _ = attention_ref(q, k, v, **kw)
    naive, _ = attention_ref(q, k, v, dtype=q.dtype, **kw)
    _judged(f"{case} W={world} {device} out", got[0], ref, naive, dtype, run_seed)
    gref = grads_ref(q, k, v, dout, **kw)
    gnaive = grads_ref(q, k, v, dout, dtype=q.dtype, **kw)
    for i, key in enumerate(("dq", "dk", "dv")):
        _judged(f"{case} W={world} {device} {key}", got[i + 1], gref[i], gnaive[i], dtype, run_seed)


# ---- dropout (each rank's mask = the single-device mask) and document masks (cu_seqlens), issue 19 -------------

# (name, layout, causal, window, Hq, Hkv, dtype, n_local per world size); dropout needs every block on the 64-key
# grid (kDropoutColAlign): zigzag chunks and contiguous shards of multiples of 64 tokens, a window left side of a
# multiple of 64
DROP_CASES = [
    ("drop_causal_zigzag", "zigzag", True, (-1, -1), 2, 1, torch.bfloat16, 128),
    ("drop_full_contiguous", "contiguous", False, (-1, -1), 2, 2, torch.float32, 64),
    ("drop_window_contiguous", "contiguous", True, (64, 0), 2, 2, torch.float32, 64),
]
# (name, layout, causal, window, dtype); n_local = N_LOCAL[world]
DOC_CASES = [
    ("docs_causal_zigzag", "zigzag", True, (-1, -1), torch.bfloat16),
    ("docs_window_contiguous", "contiguous", False, (3, 5), torch.float32),
    ("docs_full_zigzag", "zigzag", False, (-1, -1), torch.float32),
]


def _doc_bounds(n):
    """Document boundaries of a packed sequence of n tokens: documents shorter than a chunk (1 token), an empty one,
    documents crossing shard and chunk boundaries."""
    return sorted([0, 2, 3, 3, n // 3 + 1, n // 2 + 3, n - 5, n])


def _drop_refs(q, k, v, dout, causal, window, p, seed, offset):
    """(out, grads) of the fp64 oracle and of the input-precision naive computation with the single-device mask
    of the whole sequence (flatattn.dropout_mask), as attention_ref applies it."""
    keep = torch.from_numpy(flatattn.dropout_mask(q.shape[0], q.shape[2], q.shape[1], k.shape[1], dropout_p=p,
                                                  dropout_seed=seed, dropout_offset=offset))
    kw = dict(causal=causal, window=window, dropout=(keep, p))
    ref, _ = attention_ref(q, k, v, **kw)
    naive, _ = attention_ref(q, k, v, dtype=q.dtype, **kw)
    return (ref, naive), (grads_ref(q, k, v, dout, **kw), grads_ref(q, k, v, dout, dtype=q.dtype, **kw))


def _judge_all(what, got, refs, dtype, seed):
    (ref, naive), (gref, gnaive) = refs
    _judged(f"{what} out", got[0], ref, naive, dtype, seed)
    for i, key in enumerate(("dq", "dk", "dv")):
        _judged(f"{what} {key}", got[i + 1], gref[i], gnaive[i], dtype, seed)


def _single_device_dropout(q, k, v, dout, causal, window, p, seed, offset):
    """Single-device flatattn on the whole sequence with the same (p, seed, offset): out, dq, dk, dv."""
    kw = dict(causal=causal, window=window, dropout_p=p, dropout_seed=seed, dropout_offset=offset)
    out, lse = flatattn.forward(q, k, v, **kw)
    return (out, *flatattn.backward(dout, q, k, v, out, lse, **kw))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("case", [c[0] for c in DROP_CASES])
def test_ring_dropout_in_one_process(case, world, device, run_seed):
    """The ring's out and gradients with dropout equal single-device flatattn with the same (seed, offset): both
    meet the rule against the oracle with the whole sequence's mask, and the ring's mask is that mask (a wrong
    mask fails the rule by far: a dropped entry is a whole P_ij / (1 - p) term)."""
    name, layout, causal, window, hq, hkv, dtype, n_local = next(c for c in DROP_CASES if c[0] == case)
    if device == "cuda" and dtype == torch.float32:
        dtype = torch.bfloat16
    g = torch.Generator().manual_seed((run_seed ^ zlib.crc32(f"{case}-{world}".encode())) & 0x7FFFFFFF)
    n = n_local * world
    q, k, v, dout = ((torch.randn(1, n, h, D, generator=g) * 1.5).to(dtype) for h in (hq, hkv, hkv, hq))
    p = 0.3
    seed, offset = (int(x) for x in torch.randint(0, 2**62, (2,), generator=g))
    got = _threaded_ring(world, *(t.to(device) for t in (q, k, v, dout)), layout, causal, window, 0.0,
                         dropout=(p, seed, offset))
    got = [t.cpu() for t in got]
    refs = _drop_refs(q, k, v, dout, causal, window, p, seed, offset)
    _judge_all(f"{case} W={world} {device}", got, refs, dtype, run_seed)
    single = _single_device_dropout(*(t.to(device) for t in (q, k, v, dout)), causal, window, p, seed, offset)
    _judge_all(f"{case} single-device {device}", [t.cpu() for t in single], refs, dtype, run_seed)
    plain = _threaded_ring(world, q, k, v, dout, layout, causal, window, 0.0)
    assert not torch.equal(plain[0], got[0].to(plain[0].dtype)), "dropout changed nothing"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("case", [c[0] for c in DOC_CASES])
def test_ring_documents_in_one_process(case, world, device, run_seed):
    """Document masks: the ring equals single-device varlen attention over the documents (the oracle's varlen
    path, and flatattn's varlen op under the same rule)."""
    name, layout, causal, window, dtype = next(c for c in DOC_CASES if c[0] == case)
    if device == "cuda" and dtype == torch.float32:
        dtype = torch.bfloat16
    g = torch.Generator().manual_seed((run_seed ^ zlib.crc32(f"{case}-{world}".encode())) & 0x7FFFFFFF)
    n = N_LOCAL[world] * world
    q, k, v, dout = ((torch.randn(1, n, h, D, generator=g) * 1.5).to(dtype) for h in (4, 2, 2, 4))
    bounds = _doc_bounds(n)
    got = _threaded_ring(world, *(t.to(device) for t in (q, k, v, dout)), layout, causal, window, 0.0, docs=bounds)
    got = [t.cpu()[0] for t in got]
    cu = torch.tensor(bounds, dtype=torch.int32)
    kw = dict(causal=causal, window=window, cu_seqlens_q=cu, cu_seqlens_k=cu)
    ref, _ = attention_ref(q[0], k[0], v[0], **kw)
    naive, _ = attention_ref(q[0], k[0], v[0], dtype=dtype, **kw)
    refs = ((ref, naive), (grads_ref(q[0], k[0], v[0], dout[0], **kw),
                           grads_ref(q[0], k[0], v[0], dout[0], dtype=dtype, **kw)))
    _judge_all(f"{case} W={world} {device}", got, refs, dtype, run_seed)
    mx = max(b - a for a, b in zip(bounds, bounds[1:]))
    dv_ = device
    single, _ = torch_ops.attention(q[0].to(dv_), k[0].to(dv_), v[0].to(dv_), causal=causal, window_left=window[0],
                                    window_right=window[1], cu_seqlens_q=cu.to(dv_), cu_seqlens_k=cu.to(dv_),
                                    max_seqlen_q=mx, max_seqlen_k=mx)
    _judged(f"{case} single-device varlen out", single.cpu(), ref, naive, dtype, run_seed)
    whole = attention_ref(q, k, v, causal=causal, window=window)[0][0]
    assert not torch.allclose(whole, ref), "the documents must change the result (else the test proves nothing)"


def test_plan_hop_docs_matches_mask():
    """Every (rank, source) hop's per-document blocks cover exactly the visible pairs of the same document, each
    once, and carry their global positions (dropout's row0/col0)."""
    from flatattn.distributed import _blocks
    from torch_ref import visible

    for world, n in ((2, 6), (3, 4), (4, 8)):
        total = world * n
        bounds = _doc_bounds(total)
        doc = torch.zeros(total, dtype=torch.long)
        for d, (a, b) in enumerate(zip(bounds, bounds[1:])):
            doc[a:b] = d
        for lay in ("zigzag", "contiguous"):
            for causal, window in ((True, (-1, -1)), (False, (-1, -1)), (True, (3, 0)), (False, (2, 5))):
                big = visible(total, total, causal, False, window) & (doc[:, None] == doc[None, :])
                _assert_plans_cover(big, lay, world, n,
                                    lambda qs, ks: _blocks.plan_hop_docs(qs, ks, causal, window, bounds),
                                    (causal, window), positions=True)


def test_unfused_plan_carries_global_positions():
    """fuse=False (dropout): every block's row0/col0 is the global position of its first row and key, and the
    blocks cover the mask exactly as the fused plan does."""
    from flatattn.distributed import _blocks, layout

    for world, n in ((2, 6), (4, 8)):
        for lay in ("zigzag", "contiguous"):
            for causal, window in ((True, (-1, -1)), (False, (-1, -1)), (True, (3, 0))):
                pos = [[g + i for g, _, m in layout.segments(lay, r, world, n) for i in range(m)]
                       for r in range(world)]
                for r in range(world):
                    for s in range(world):
                        qs, ks = layout.segments(lay, r, world, n), layout.segments(lay, s, world, n)
                        cover = [torch.zeros(n, n, dtype=torch.int32) for _ in range(2)]
                        for i, fuse in enumerate((True, False)):
                            for b in _blocks.plan_hop(qs, ks, causal, window, fuse):
                                cover[i][b.q0:b.q1, b.k0:b.k1] += 1
                                if not fuse:
                                    assert b.row0 == pos[r][b.q0] and b.col0 == pos[s][b.k0]
                                    # a call's rows and keys are each one run of consecutive global positions
                                    assert pos[r][b.q1 - 1] - b.row0 == b.q1 - 1 - b.q0
                                    assert pos[s][b.k1 - 1] - b.col0 == b.k1 - 1 - b.k0
                        assert cover[1].max() <= 1


def test_dropout_refusals_in_one_process():
    """The plan checks of ring_attention with dropout: blocks off the 64-key grid are refused by name."""
    from flatattn.distributed import ring

    def check(layout, world, n, causal, window):
        cfg = ring._Cfg(None, 0, world, layout, causal, window, 0.0, 1.0, False, 0.1, 1, 2)
        e = ring._check_plan(cfg, n)
        return None if e is None else e.argument

    assert check("zigzag", 2, 128, True, (-1, -1)) is None
    assert check("zigzag", 2, 64, True, (-1, -1)) == "q.shape[1]"  # chunks of 32
    assert check("contiguous", 4, 96, False, (-1, -1)) == "q.shape[1]"
    assert check("contiguous", 4, 64, True, (64, 0)) is None
    assert check("contiguous", 4, 64, True, (5, 0)) == "window"  # the window cuts keys at 64 r - 5


# ---- dropout with document masks (issue 19): each (hop, document) piece is a call at its document's position ----

# (name, layout, causal, window, Hq, Hkv, dtype); n_local = 128 (chunks of 64 or 128 tokens)
DOC_DROP_CASES = [
    ("docs_drop_causal_zigzag", "zigzag", True, (-1, -1), 4, 2, torch.bfloat16),
    ("docs_drop_full_contiguous", "contiguous", False, (-1, -1), 2, 1, torch.float32),
    ("docs_drop_window_contiguous", "contiguous", True, (64, 0), 2, 2, torch.float32),
]


def _aligned_doc_bounds(n):
    """Document boundaries of n = 128 W tokens for dropout: documents that cross a shard chunk (64 tokens: zigzag at
    W = 2, 4; contiguous 128) cross it at a multiple of 64 of the document (the stream's key grid, kDropoutColAlign);
    documents inside one chunk start anywhere (5, 17, 197); an empty one (17, 17)."""
    b = [0, 5, 17, 17, 64, 192, 197, 256]
    if n > 256:
        b.append(n - 6)  # [256, n - 6) crosses chunks at 320, 384, 448: columns 64, 128, 192 of the document
    return sorted(b + [n]) if n not in b else sorted(b)


def _varlen_drop_refs(q, k, v, dout, causal, window, p, seed, offset, bounds):
    """As _drop_refs over the documents (q (1, N, H, D)): the oracle and the naive computation with single-device
    varlen's mask (flatattn.dropout_mask of S sequences of the longest length, sequence b = document b). Also
    returns that mask (numpy uint8 (S, Hq, L, L))."""
    cu = torch.tensor(bounds, dtype=torch.int32)
    mx = max(b - a for a, b in zip(bounds, bounds[1:]))
    keep = flatattn.dropout_mask(len(bounds) - 1, q.shape[2], mx, mx, dropout_p=p, dropout_seed=seed,
                                 dropout_offset=offset)
    kw = dict(causal=causal, window=window, cu_seqlens_q=cu, cu_seqlens_k=cu,
              dropout=(torch.from_numpy(keep), p) if p > 0 else None)
    ref, _ = attention_ref(q[0], k[0], v[0], **kw)
    naive, _ = attention_ref(q[0], k[0], v[0], dtype=q.dtype, **kw)
    return ((ref, naive), (grads_ref(q[0], k[0], v[0], dout[0], **kw),
                           grads_ref(q[0], k[0], v[0], dout[0], dtype=q.dtype, **kw))), keep


def _single_device_varlen(q, k, v, dout, causal, window, p, seed, offset, bounds):
    """Single-device varlen flatattn over the documents with the same (p, seed, offset): out, dq, dk, dv."""
    cu = torch.tensor(bounds, dtype=torch.int32, device=q.device)
    mx = max(b - a for a, b in zip(bounds, bounds[1:]))
    kw = dict(causal=causal, window=window, dropout_p=p, dropout_seed=seed, dropout_offset=offset,
              cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=mx, max_seqlen_k=mx)
    out, lse = flatattn.forward(q[0], k[0], v[0], **kw)
    return (out, *flatattn.backward(dout[0], q[0], k[0], v[0], out, lse, **kw))


def _assert_ring_masks(layout, world, n, causal, window, bounds, p, seed, offset, hq, keep):
    """Every ring call's mask (flatattn.dropout_mask at the call's position and document, as ring.py passes it to
    the kernels) is the single-device varlen mask's block there, and together they cover every visible pair of
    every document once. Returns the number of calls."""
    import numpy as np

    from flatattn.distributed import layout as lay, ring

    cfg = ring._Cfg(None, 0, world, layout, causal, tuple(window), 0.0, 1.0, False, p, seed, offset, tuple(bounds))
    plan = ring._full_plan(cfg, n)
    seen = np.zeros(keep.shape, dtype=np.int32)
    calls = 0
    for r in range(world):
        for t, blocks in enumerate(plan[r]):
            kseg = lay.segments(layout, (r - t) % world, world, n)
            qseg = lay.segments(layout, r, world, n)
            for blk in blocks:
                row0, col0, slot = ring._dropout_pos(cfg, blk)
                assert col0 % ring.DROPOUT_COL_ALIGN == 0 and slot == (blk.doc, 0, 0)
                # the call's rows/keys: local [q0, q1) of this rank, [k0, k1) of the visiting shard, in one document
                g_row = next(g + blk.q0 - l for g, l, m in qseg if l <= blk.q0 < l + m)
                g_col = next(g + blk.k0 - l for g, l, m in kseg if l <= blk.k0 < l + m)
                start = bounds[blk.doc]
                assert (g_row - start, g_col - start) == (row0, col0)
                nr, nc = blk.q1 - blk.q0, blk.k1 - blk.k0
                m = flatattn.dropout_mask(1, hq, nr, nc, dropout_p=p, dropout_seed=seed, dropout_offset=offset,
                                          dropout_row0=row0, dropout_col0=col0, dropout_slot=slot)
                assert np.array_equal(m[0], keep[blk.doc, :, row0:row0 + nr, col0:col0 + nc]), (r, t, blk)
                seen[blk.doc, :, row0:row0 + nr, col0:col0 + nc] += 1
                calls += 1
    lens = [b - a for a, b in zip(bounds, bounds[1:])]
    for d, ln in enumerate(lens):
        assert seen[d, :, ln:].max(initial=0) == 0 and seen[d, :, :, ln:].max(initial=0) == 0
        assert seen[d].max(initial=0) <= 1  # each (row, key) of a document in at most one call
    return calls


def test_dropout_slot_numbers_sequences_and_heads():
    """Options::dropout_batch0/head0/heads: a call's mask is that of sequence b + batch0, head h + head0 of a stream
    of `heads` heads (flatattn.dropout_mask; the kernels draw it through the same function, the CPU and CUDA
    feature tables' dropout_slot case), and refused values name the field."""
    import numpy as np

    kw = dict(dropout_p=0.4, dropout_seed=12345, dropout_offset=678)
    whole = flatattn.dropout_mask(5, 6, 40, 96, **kw)
    assert np.array_equal(flatattn.dropout_mask(2, 6, 40, 96, dropout_slot=(3, 0, 0), **kw), whole[3:5])
    assert np.array_equal(flatattn.dropout_mask(1, 2, 40, 96, dropout_slot=(4, 3, 6), **kw), whole[4:5, 3:5])
    assert np.array_equal(flatattn.dropout_mask(1, 3, 7, 32, dropout_slot=(2, 1, 6), dropout_row0=30,
                                                dropout_col0=64, **kw), whole[2:3, 1:4, 30:37, 64:96])
    assert not np.array_equal(whole[0], whole[1]) and not np.array_equal(whole[0, 0], whole[0, 1])
    for slot, arg in (((0, 5, 6), "dropout_head0"), ((0, 1, 0), "dropout_head0"), ((-1, 0, 0), "dropout_batch0"),
                      ((0, 0, -2), "dropout_heads"), ((2**30, 0, 8), "dropout_batch0")):
        with pytest.raises(flatattn.FlatattnError) as e:
            flatattn.dropout_mask(1, 2, 4, 4, dropout_slot=slot, **kw)
        assert e.value.argument == arg, (slot, e.value)


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("layout", ["zigzag", "contiguous"])
def test_ring_document_masks_are_varlen_masks(world, layout):
    """The plan's per-(hop, document) calls with their dropout positions reproduce single-device varlen dropout's
    mask bit for bit, for causal, full and windowed attention."""
    n = 128
    bounds = _aligned_doc_bounds(n * world)
    mx = max(b - a for a, b in zip(bounds, bounds[1:]))
    keep = flatattn.dropout_mask(len(bounds) - 1, 3, mx, mx, dropout_p=0.3, dropout_seed=99, dropout_offset=5)
    for causal, window in ((True, (-1, -1)), (False, (-1, -1)), (True, (64, 0))):
        calls = _assert_ring_masks(layout, world, n, causal, window, bounds, 0.3, 99, 5, 3, keep)
        docs = sum(1 for a, b in zip(bounds, bounds[1:]) if b > a)
        assert calls > docs or window[0] >= 0  # without a window, documents are cut into pieces across hops


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("case", [c[0] for c in DOC_DROP_CASES])
def test_ring_documents_dropout_in_one_process(case, world, device, run_seed):
    """Dropout with document masks: the ring's out and gradients meet the rule against the oracle with single-device
    varlen dropout's mask (numbered per document), as single-device varlen flatattn with the same (seed, offset)
    does; and the ring's calls draw exactly that mask (_assert_ring_masks)."""
    name, layout, causal, window, hq, hkv, dtype = next(c for c in DOC_DROP_CASES if c[0] == case)
    if device == "cuda" and dtype == torch.float32:
        dtype = torch.bfloat16
    g = torch.Generator().manual_seed((run_seed ^ zlib.crc32(f"{case}-{world}".encode())) & 0x7FFFFFFF)
    n_local = 128
    n = n_local * world
    q, k, v, dout = ((torch.randn(1, n, h, D, generator=g) * 1.5).to(dtype) for h in (hq, hkv, hkv, hq))
    p = 0.3
    seed, offset = (int(x) for x in torch.randint(0, 2**62, (2,), generator=g))
    bounds = _aligned_doc_bounds(n)
    got = _threaded_ring(world, *(t.to(device) for t in (q, k, v, dout)), layout, causal, window, 0.0,
                         dropout=(p, seed, offset), docs=bounds)
    got = [t.cpu()[0] for t in got]
    refs, keep = _varlen_drop_refs(q, k, v, dout, causal, window, p, seed, offset, bounds)
    _judge_all(f"{case} W={world} {device}", got, refs, dtype, run_seed)
    single = _single_device_varlen(*(t.to(device) for t in (q, k, v, dout)), causal, window, p, seed, offset, bounds)
    _judge_all(f"{case} single-device varlen {device}", [t.cpu() for t in single], refs, dtype, run_seed)
    _assert_ring_masks(layout, world, n_local, causal, window, bounds, p, seed, offset, hq, keep)
    plain = _threaded_ring(world, q, k, v, dout, layout, causal, window, 0.0, docs=bounds)
    assert not torch.equal(plain[0][0], got[0].to(plain[0].dtype)), "dropout changed nothing"


def test_documents_dropout_refusals_in_one_process():
    """Dropout with documents: a document crossing a shard chunk off the 64-key grid of the document is refused,
    naming cu_seqlens; documents inside one chunk may start anywhere."""
    from flatattn.distributed import ring

    def check(layout, world, n, bounds, window=(-1, -1)):
        cfg = ring._Cfg(None, 0, world, layout, True, window, 0.0, 1.0, False, 0.1, 1, 2, tuple(bounds))
        e = ring._check_plan(cfg, n)
        return None if e is None else e.argument

    assert check("zigzag", 2, 128, _aligned_doc_bounds(256)) is None
    assert check("zigzag", 2, 128, (0, 3, 256)) == "cu_seqlens"  # [3, 256) meets the chunk at 64: column 61
    assert check("contiguous", 2, 128, (0, 3, 7, 128, 256)) is None  # no document crosses the shard boundary
    assert check("contiguous", 2, 32, (0, 5, 64)) == "cu_seqlens"  # [5, 64) crosses 32 at column 27
    assert check("contiguous", 2, 32, (0, 32, 64)) is None  # short shards, documents on the boundaries


# ---- per-hop gradients in fp32 (issue 19): the ring's gradient error does not grow with W -----------------------


def _rms_errors(grads, refs):
    return [float((g.double() - r).norm() / r.norm()) for g, r in zip(grads, refs)]


def test_ring_gradient_error_does_not_grow_with_world(run_seed, monkeypatch):
    """bf16 causal zigzag on the CPU: each hop's dQ/dK/dV come back in fp32 (the CPU engine writes fp32 gradients of
    16-bit inputs, torch_ops.backward_into) and the ring rounds their sum once, so the gradients' RMS error against
    the fp64 oracle at W = 2 and 4 stays at single-device flatattn's (the per-element rule is judged by the other
    tests). Control: the same ring with every hop's gradients rounded to bf16 (the CUDA kernels' store) is
    measurably worse, so this test can fail."""
    from flatattn.distributed import ring  # noqa: F401 - the module whose backward_into calls are patched below

    g = torch.Generator().manual_seed(run_seed & 0x7FFFFFFF)
    n, h, d = 256, 2, 64
    q, k, v, dout = ((torch.randn(1, n, h, d, generator=g) * 1.5).to(torch.bfloat16) for _ in range(4))
    refs = grads_ref(q, k, v, dout, causal=True)
    out, lse = flatattn.forward(q, k, v, causal=True)
    single = _rms_errors(flatattn.backward(dout, q, k, v, out, lse, causal=True), refs)
    errs = {w: _rms_errors(_threaded_ring(w, q, k, v, dout, "zigzag", True, (-1, -1), 0.0)[1:], refs) for w in (2, 4)}
    # dV = sum over hops of P^T dO: with fp32 hops it is single-device's up to fp32 summation order, rounded once.
    # dQ, dK also go through D_i = rowsum(dO o O) with the ring's O (merged in fp32 in another order, so its bf16
    # rounding differs from single-device's in places): their RMS error moves by up to ~20 % either way over seeds,
    # independently of W (measured 0.9-1.17 x single-device at W = 2, 4 and 8).
    for w, e in errs.items():
        for name, got, base, slack in zip(("dq", "dk", "dv"), e, single, (1.3, 1.3, 1.02)):
            assert got <= slack * base, f"W={w} {name}: RMS error {got:.3g} vs single-device {base:.3g} seed={run_seed}"
    for name, e2, e4, slack in zip(("dq", "dk", "dv"), errs[2], errs[4], (1.25, 1.25, 1.02)):
        assert e4 <= slack * e2, f"{name}: RMS error grows from W=2 ({e2:.3g}) to W=4 ({e4:.3g}) seed={run_seed}"
    orig = torch_ops.backward_into
    monkeypatch.setattr(torch_ops, "backward_into",
                        lambda *a, **kw: tuple(t.to(torch.bfloat16).float() for t in orig(*a, **kw)))
    rounded = _rms_errors(_threaded_ring(4, q, k, v, dout, "zigzag", True, (-1, -1), 0.0)[1:], refs)
    assert rounded[2] > 1.1 * errs[4][2], f"control: per-hop rounding did not show (dv {rounded[2]:.3g} vs " \
                                          f"{errs[4][2]:.3g})"
