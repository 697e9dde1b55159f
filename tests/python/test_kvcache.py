"""flatattn.flash_attn_with_kvcache / flatattn.forward_kvcache (paged and contiguous KV caches, in-place append with
rotary) against the fp64 oracle (flatattn.reference.forward_kvcache) with the project's rule: numpy on the CPU
always; torch (CPU, and CUDA where a GPU and the decode kernels are present) when torch is installed."""

import numpy as np
import pytest

import flatattn
from rule import judge, judge_lse

LSE_TOL = 1e-5


def make_cache(rng, *, b, nq, nnew, hq, hkv, d, page, seqlens, paged=True, dtype="float32", rotary_dim=0,
               batch_idx=False, leftpad=False):
    """Random inputs; every cache row no sequence reads holds NaN (a stray read fails)."""
    seqlens = np.asarray(seqlens, dtype=np.int32)
    t = {"cache_seqlens": seqlens}
    if paged:
        need = [max(1, -(-(int(s) + nnew) // page)) for s in seqlens]
        pool = rng.permutation(sum(need) + 2).astype(np.int32)
        bt = np.full((b, max(need) + 1), -1, dtype=np.int32)
        nxt = 0
        for i, n in enumerate(need):
            bt[i, :n] = pool[nxt:nxt + n]
            nxt += n
        t["block_table"] = bt
        rows, ps = len(pool), page
    else:
        ps = int(seqlens.max()) + nnew + 2
        rows = b + (2 if batch_idx else 0)
        if batch_idx:
            t["cache_batch_idx"] = rng.permutation(rows)[:b].astype(np.int32)
    t["k_cache"] = np.full((rows, ps, hkv, d), np.nan, dtype=dtype)
    t["v_cache"] = np.full((rows, ps, hkv, d), np.nan, dtype=dtype)
    lp = np.zeros(b, dtype=np.int32)
    if leftpad:
        lp = np.array([rng.integers(0, s + 1) for s in seqlens], dtype=np.int32)
        t["cache_leftpad"] = lp

    def row(i, pos):
        if paged:
            return t["block_table"][i, pos // ps], pos % ps
        return (t["cache_batch_idx"][i] if batch_idx else i), pos

    for i in range(b):
        for pos in range(int(lp[i]), int(seqlens[i])):
            r, c = row(i, pos)
            t["k_cache"][r, c] = rng.standard_normal((hkv, d))
            t["v_cache"][r, c] = rng.standard_normal((hkv, d))
    t["q"] = rng.standard_normal((b, nq, hq, d)).astype(dtype)
    if nnew:
        t["k"] = rng.standard_normal((b, nnew, hkv, d)).astype(dtype)
        t["v"] = rng.standard_normal((b, nnew, hkv, d)).astype(dtype)
    if rotary_dim:
        npos = rows * ps + nq + 1
        inv = 10000.0 ** (-np.arange(0, rotary_dim, 2) / rotary_dim)
        ang = np.arange(npos)[:, None] * inv[None, :]
        t["rotary_cos"] = np.cos(ang).astype(dtype)
        t["rotary_sin"] = np.sin(ang).astype(dtype)
    return t


def copy(t):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in t.items()}


def kw(t, names=("k", "v", "rotary_cos", "rotary_sin", "cache_batch_idx", "cache_leftpad", "block_table")):
    return {n: t[n] for n in names if n in t}


def same_nan(a, b):
    return np.array_equal(a, b, equal_nan=True)


CASES = [
    dict(b=3, nq=1, nnew=1, hq=8, hkv=2, d=32, page=16, seqlens=(0, 1, 40)),
    dict(b=2, nq=4, nnew=4, hq=4, hkv=1, d=16, page=1, seqlens=(7, 30), causal=True, rotary_dim=16,
         rotary_interleaved=True),
    dict(b=2, nq=3, nnew=3, hq=4, hkv=2, d=32, page=64, seqlens=(70, 5), causal=True, rotary_dim=8,
         rotary_interleaved=False, leftpad=True),
    dict(b=3, nq=2, nnew=0, hq=6, hkv=3, d=24, page=256, seqlens=(300, 2, 17), window_size=(16, 0), softcap=10.0),
    dict(b=2, nq=20, nnew=20, hq=2, hkv=2, d=16, page=16, seqlens=(0, 33), causal=True, num_splits=3),  # chunked prefill
    dict(b=3, nq=1, nnew=2, hq=4, hkv=4, d=16, page=0, seqlens=(3, 0, 9), paged=False, batch_idx=True, alibi=True),
    dict(b=2, nq=2, nnew=1, hq=4, hkv=2, d=32, page=0, seqlens=(12, 4), paged=False, rotary_dim=32, causal=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_numpy_matches_oracle(case, rng, seed):
    case = dict(case)
    causal = case.pop("causal", False)
    window = case.pop("window_size", (-1, -1))
    softcap = case.pop("softcap", 0.0)
    interleaved = case.pop("rotary_interleaved", True)
    splits = case.pop("num_splits", 0)
    alibi = case.pop("alibi", False)
    t = make_cache(rng, **case)
    slopes = (2.0 ** (-8.0 * np.arange(1, case["hq"] + 1) / case["hq"])).astype(np.float32) if alibi else None
    before, ref_t, naive_t = copy(t), copy(t), copy(t)
    out, lse = flatattn.flash_attn_with_kvcache(
        t["q"], t["k_cache"], t["v_cache"], cache_seqlens=t["cache_seqlens"], causal=causal, window_size=window,
        softcap=softcap, rotary_interleaved=interleaved, num_splits=splits, alibi_slopes=slopes,
        return_softmax_lse=True, **kw(t))
    right = -1 if causal else window[1]
    opts = dict(causal=causal, window=(window[0], right), softcap=softcap, rotary_interleaved=interleaved,
                alibi_slopes=slopes)
    ref, ref_lse = flatattn.reference.forward_kvcache(ref_t["q"], ref_t["k_cache"], ref_t["v_cache"],
                                                      ref_t["cache_seqlens"], **opts, **kw(ref_t))
    naive, _ = flatattn.reference.forward_kvcache(naive_t["q"], naive_t["k_cache"], naive_t["v_cache"],
                                                  naive_t["cache_seqlens"], precision="input", **opts, **kw(naive_t))
    v = judge(out, ref, naive, "float32")
    assert v.passed, f"{case} seed={seed}: out {v}"
    lv = judge_lse(lse, ref_lse, LSE_TOL)
    assert lv.passed, f"{case} seed={seed}: lse {lv}"
    # The caches: appended rows as the oracle's (fp32: within a few ulps), all else unchanged.
    for name in ("k_cache", "v_cache"):
        got, want, was = t[name], ref_t[name], before[name]
        changed = ~((got == was) | (np.isnan(got) & np.isnan(was)))
        assert np.allclose(got[changed], want[changed], rtol=1e-6, atol=1e-6), f"{name}: appended rows differ"
        assert same_nan(np.where(changed, 0, got), np.where(changed, 0, want)), f"{name}: other rows changed"
    if case.get("nnew", 0):
        assert not same_nan(t["k_cache"], before["k_cache"]), "the append wrote nothing"


def test_returns_out_only_and_int_seqlens(rng):
    t = make_cache(rng, b=2, nq=1, nnew=1, hq=2, hkv=1, d=16, page=16, seqlens=(5, 5))
    out = flatattn.flash_attn_with_kvcache(t["q"], t["k_cache"], t["v_cache"], cache_seqlens=5, **kw(t))
    assert isinstance(out, np.ndarray) and out.shape == t["q"].shape and np.isfinite(out).all()


def test_bad_input_names_argument_and_writes_nothing(rng):
    t = make_cache(rng, b=2, nq=1, nnew=2, hq=2, hkv=1, d=16, page=4, seqlens=(3, 6))
    before = copy(t)
    bt = t["block_table"].copy()
    bt[1, 0] = 999  # a page outside the cache
    with pytest.raises(flatattn.FlatattnError) as e:
        flatattn.flash_attn_with_kvcache(t["q"], t["k_cache"], t["v_cache"], cache_seqlens=t["cache_seqlens"],
                                         k=t["k"], v=t["v"], block_table=bt)
    assert e.value.argument == "block_table" and "999" in str(e.value)
    assert isinstance(e.value, RuntimeError)  # FlashAttention-2 raises RuntimeError
    assert same_nan(t["k_cache"], before["k_cache"]) and same_nan(t["v_cache"], before["v_cache"])
    with pytest.raises(flatattn.FlatattnError) as e:  # beyond the capacity
        flatattn.flash_attn_with_kvcache(t["q"], t["k_cache"], t["v_cache"], cache_seqlens=np.array([3, 11], np.int32),
                                         k=t["k"], v=t["v"], block_table=t["block_table"])
    assert e.value.argument == "cache_seqlens"
    with pytest.raises(flatattn.FlatattnError) as e:  # wrong dtype of the block table
        flatattn.flash_attn_with_kvcache(t["q"], t["k_cache"], t["v_cache"], cache_seqlens=t["cache_seqlens"],
                                         block_table=t["block_table"].astype(np.int64))
    assert e.value.argument == "block_table"
    assert same_nan(t["k_cache"], before["k_cache"]) and same_nan(t["v_cache"], before["v_cache"])


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_torch_matches_numpy_oracle(device, rng):
    torch = pytest.importorskip("torch")
    if device == "cuda" and not (torch.cuda.is_available() and flatattn.cuda_built()):
        pytest.skip("no CUDA device or build")
    dtype = "float32" if device == "cpu" else "float16"
    t = make_cache(rng, b=3, nq=2, nnew=2, hq=8, hkv=2, d=64, page=16, seqlens=(0, 17, 50), rotary_dim=32,
                   dtype=dtype)
    ref_t, naive_t = copy(t), copy(t)
    tt = {k: torch.from_numpy(v).to(device) for k, v in t.items()}
    try:
        out, lse = flatattn.flash_attn_with_kvcache(
            tt["q"], tt["k_cache"], tt["v_cache"], cache_seqlens=tt["cache_seqlens"], causal=True,
            rotary_interleaved=False, return_softmax_lse=True, **kw(tt))
    except flatattn.FlatattnUnsupportedError as e:
        pytest.skip(f"no decode kernels in this build: {e}")
    opts = dict(causal=True, rotary_interleaved=False)
    ref, ref_lse = flatattn.reference.forward_kvcache(ref_t["q"], ref_t["k_cache"], ref_t["v_cache"],
                                                      ref_t["cache_seqlens"], **opts, **kw(ref_t))
    naive, _ = flatattn.reference.forward_kvcache(naive_t["q"], naive_t["k_cache"], naive_t["v_cache"],
                                                  naive_t["cache_seqlens"], precision="input", **opts, **kw(naive_t))
    v = judge(out, ref, naive, dtype)
    assert v.passed, f"out {v}"
    assert judge_lse(lse, ref_lse, 1e-5 if device == "cpu" else 2e-4).passed
    assert np.allclose(tt["k_cache"].cpu().float().numpy()[~np.isnan(ref_t["k_cache"])],
                       ref_t["k_cache"].astype(np.float32)[~np.isnan(ref_t["k_cache"])], rtol=2e-3, atol=2e-3)


def test_torch_compile_and_op_schema(rng):
    torch = pytest.importorskip("torch")
    t = make_cache(rng, b=2, nq=1, nnew=1, hq=4, hkv=2, d=32, page=16, seqlens=(3, 20))
    tt = {k: torch.from_numpy(v) for k, v in t.items()}
    tt2 = {k: v.clone() for k, v in tt.items()}

    def step(q, kc, vc, k, v, sl, bt):
        return flatattn.flash_attn_with_kvcache(q, kc, vc, k=k, v=v, cache_seqlens=sl, block_table=bt, causal=True)

    eager = step(tt["q"], tt["k_cache"], tt["v_cache"], tt["k"], tt["v"], tt["cache_seqlens"], tt["block_table"])
    compiled = torch.compile(step, fullgraph=True)(tt2["q"], tt2["k_cache"], tt2["v_cache"], tt2["k"], tt2["v"],
                                                     tt2["cache_seqlens"], tt2["block_table"])
    assert torch.equal(eager, compiled)
    assert torch.equal(tt["k_cache"].nan_to_num(7.0), tt2["k_cache"].nan_to_num(7.0)), "compiled call must append"
