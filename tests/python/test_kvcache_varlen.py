"""Paged prefill: flatattn.forward_kvcache with varlen queries (cu_seqlens_q; q packed (total_q, H, D)) over a
paged or contiguous cache, and flatattn.flash_attn_varlen_func(..., block_table=...) (torch), against the fp64
oracle (flatattn.reference.forward_kvcache) with the project's rule; bad offsets name the argument."""

import numpy as np
import pytest

import flatattn
from rule import judge, judge_lse
from test_kvcache import copy, kw, make_cache

CASES = [
    dict(q_lens=(7, 0, 1, 20), hq=8, hkv=2, d=32, page=16, seqlens=(30, 4, 0, 50), causal=True),
    dict(q_lens=(1, 1, 1), hq=4, hkv=1, d=16, page=1, seqlens=(9, 1, 17), causal=True, num_splits=3),
    dict(q_lens=(12, 5), hq=4, hkv=4, d=16, page=256, seqlens=(300, 5), window_size=(16, 0)),
    dict(q_lens=(0, 0), hq=2, hkv=1, d=16, page=16, seqlens=(3, 8)),
    dict(q_lens=(4, 9, 2), hq=6, hkv=3, d=24, page=0, seqlens=(10, 9, 40), paged=False, batch_idx=True, causal=True,
         max_seqlen_q=0),
]


def packed_q(rng, q_lens, hq, d, dtype="float32"):
    cu = np.concatenate([[0], np.cumsum(q_lens)]).astype(np.int32)
    return rng.standard_normal((int(cu[-1]), hq, d)).astype(dtype), cu


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_numpy_varlen_matches_oracle(case, rng, seed):
    case = dict(case)
    q_lens = case.pop("q_lens")
    causal = case.pop("causal", False)
    window = case.pop("window_size", (-1, -1))
    splits = case.pop("num_splits", 0)
    max_q = case.pop("max_seqlen_q", max(q_lens))
    t = make_cache(rng, b=len(q_lens), nq=1, nnew=0, **case)
    q, cu = packed_q(rng, q_lens, case["hq"], case["d"])
    right = -1 if causal else window[1]
    opts = dict(causal=causal, window=(window[0], right), cu_seqlens_q=cu, max_seqlen_q=max_q, **kw(t))
    before = copy(t)
    out, lse, rep = flatattn.forward_kvcache(q, t["k_cache"], t["v_cache"], t["cache_seqlens"], num_splits=splits,
                                             return_lse=True, return_report=True, **opts)
    assert "_varlen" in rep.kernel
    assert out.shape == q.shape and lse.shape == (case["hq"], q.shape[0])
    ref, ref_lse = flatattn.reference.forward_kvcache(q, t["k_cache"], t["v_cache"], t["cache_seqlens"], **opts)
    naive, _ = flatattn.reference.forward_kvcache(q, t["k_cache"], t["v_cache"], t["cache_seqlens"],
                                                  precision="input", **opts)
    v = judge(out, ref, naive, "float32")
    assert v.passed, f"{case} seed={seed}: out {v}"
    assert judge_lse(lse, ref_lse, 1e-5).passed, f"{case} seed={seed}: lse"
    for name in ("k_cache", "v_cache"):  # no append in the varlen form: the caches are untouched
        assert np.array_equal(t[name], before[name], equal_nan=True), name
    # Each sequence alone through the batched form (B = 1, Nq = Nq_b) gives the same rows.
    for b, n in enumerate(q_lens):
        if n == 0:
            continue
        one = {k: v[b:b + 1] for k, v in kw(t).items() if k in ("block_table", "cache_batch_idx")}
        ob, _ = flatattn.forward_kvcache(q[cu[b]:cu[b + 1]][None], t["k_cache"], t["v_cache"],
                                         t["cache_seqlens"][b:b + 1], causal=causal, window=(window[0], right),
                                         num_splits=1, **one)
        assert np.allclose(ob[0], out[cu[b]:cu[b + 1]], rtol=1e-5, atol=1e-5), f"sequence {b}"


def test_bad_offsets_and_append_are_refused(rng):
    t = make_cache(rng, b=2, nq=1, nnew=0, hq=2, hkv=1, d=16, page=4, seqlens=(5, 6))
    q, cu = packed_q(rng, (3, 2), 2, 16)
    for bad, arg in ((np.array([0, 3, 2], np.int32), "cu_seqlens_q"), (np.array([1, 3, 5], np.int32), "cu_seqlens_q"),
                     (np.array([0, 3, 9], np.int32), "cu_seqlens_q")):
        with pytest.raises(flatattn.FlatattnError) as e:
            flatattn.forward_kvcache(q, t["k_cache"], t["v_cache"], t["cache_seqlens"], block_table=t["block_table"],
                                     cu_seqlens_q=bad)
        assert e.value.argument == arg, str(e.value)
    with pytest.raises(flatattn.FlatattnError) as e:
        flatattn.forward_kvcache(q, t["k_cache"], t["v_cache"], t["cache_seqlens"], block_table=t["block_table"],
                                 cu_seqlens_q=cu, max_seqlen_q=2)
    assert e.value.argument == "max_seqlen_q"
    kn = rng.standard_normal((2, 1, 1, 16)).astype(np.float32)
    with pytest.raises(flatattn.FlatattnUnsupportedError) as e:
        flatattn.forward_kvcache(q, t["k_cache"], t["v_cache"], t["cache_seqlens"], block_table=t["block_table"],
                                 cu_seqlens_q=cu, k=kn, v=kn)
    assert e.value.argument == "k_new"


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_flash_attn_varlen_func_with_block_table(device, rng):
    torch = pytest.importorskip("torch")
    if device == "cuda" and not (torch.cuda.is_available() and flatattn.cuda_built()):
        pytest.skip("no CUDA device or build")
    dtype = "float32" if device == "cpu" else "float16"
    q_lens, seqlens = (5, 0, 1, 17), (40, 3, 0, 17)
    t = make_cache(rng, b=4, nq=1, nnew=0, hq=8, hkv=2, d=64, page=16, seqlens=seqlens, dtype=dtype)
    q, cu = packed_q(rng, q_lens, 8, 64, dtype)
    cu_k = np.concatenate([[0], np.cumsum(seqlens)]).astype(np.int32)
    tt = {k: torch.from_numpy(v).to(device) for k, v in t.items()}
    try:
        out, lse, _ = flatattn.flash_attn_varlen_func(
            torch.from_numpy(q).to(device), tt["k_cache"], tt["v_cache"], torch.from_numpy(cu).to(device),
            torch.from_numpy(cu_k).to(device), max(q_lens), max(seqlens), causal=True, return_attn_probs=True,
            block_table=tt["block_table"])
    except flatattn.FlatattnUnsupportedError as e:
        pytest.skip(f"no decode kernels in this build: {e}")
    opts = dict(causal=True, block_table=t["block_table"], cu_seqlens_q=cu, max_seqlen_q=max(q_lens))
    ref, ref_lse = flatattn.reference.forward_kvcache(q, t["k_cache"], t["v_cache"], t["cache_seqlens"], **opts)
    naive, _ = flatattn.reference.forward_kvcache(q, t["k_cache"], t["v_cache"], t["cache_seqlens"],
                                                  precision="input", **opts)
    v = judge(out, ref, naive, dtype)
    assert v.passed, f"out {v}"
    assert tuple(lse.shape) == (8, q.shape[0])
    assert judge_lse(lse, ref_lse, 1e-5 if device == "cpu" else 2e-4).passed
