"""flatattn.forward / backward with local + global attention (``global_positions`` / ``global_counts``, the
Longformer / BigBird rule of include/flatattn/sparse.h) on numpy arrays: against a dense fp64 reference built here
from an explicit boolean mask (independent of the library's rule), and against the library's oracle
(flatattn.reference) under docs/design.md's rule. Bad positions raise FlatattnError naming them, nothing written.
No torch needed."""

import numpy as np
import pytest

import flatattn
from rule import judge


def _mask(n, window, causal, positions, counts):
    """(B, N, N) bool: query i sees key j (self-attention, Nq = Nk = n): |band| or i global or j global, then causal."""
    left, right = window
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    band = np.ones((n, n), dtype=bool)
    if left >= 0:
        band &= j >= i - left
    if right >= 0:
        band &= j <= i + right
    out = []
    for b in range(len(counts)):
        g = np.zeros(n, dtype=bool)
        g[positions[b if positions.shape[0] > 1 else 0, :counts[b]]] = True
        vis = band | g[:, None] | g[None, :]
        if causal:
            vis &= j <= i
        out.append(vis)
    return np.stack(out)


def _dense(q, k, v, vis, scale):
    """Masked softmax attention in fp64: q (B, N, H, D) ... vis (B, N, N); a row with no key -> 0."""
    s = np.einsum("bihd,bjhd->bhij", q.astype(np.float64), k.astype(np.float64)) * scale
    s = np.where(vis[:, None], s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    p = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    den = p.sum(-1, keepdims=True)
    p = np.where(den > 0, p / np.where(den > 0, den, 1.0), 0.0)
    return np.einsum("bhij,bjhd->bihd", p, v.astype(np.float64))


# (global_positions rows, counts or None, window, causal): globals at the ends and in the middle, G = 0, counts
# shorter than G, one row shared by the batch.
CASES = [
    ([[0, 37, 99], [5, 50, 98]], None, (8, 8), False),
    ([[0, 1, 64, 99], [40, 41, 0, 0]], [4, 2], (16, 16), False),
    ([[0, 50, 99]], None, (8, 0), True),
    ([[3, 60, 61], [0, 99, 99]], [3, 1], (4, -1), True),
    (np.zeros((2, 0), dtype=np.int32), None, (8, 8), False),  # G = 0: the band alone
]


def _inputs(rng, b=2, n=100, h=2, d=32):
    return [rng.standard_normal((b, n, h, d)).astype(np.float32) for _ in range(3)]


@pytest.mark.parametrize("positions,counts,window,causal", CASES)
def test_forward_backward_local_global(positions, counts, window, causal, rng, seed):
    q, k, v = _inputs(rng)
    b, n, _, d = q.shape
    gp = np.ascontiguousarray(np.asarray(positions, dtype=np.int32))
    gc = None if counts is None else np.asarray(counts, dtype=np.int32)
    kw = dict(window=window, causal=causal, global_positions=gp, global_counts=gc)
    out, lse = flatattn.forward(q, k, v, **kw)

    cnt = gc if gc is not None else np.full(b, gp.shape[1], dtype=np.int32)
    scale = float(np.float32(1.0 / np.sqrt(d)))  # Options::softmax_scale is a float
    dense = _dense(q, k, v, _mask(n, window, causal, gp, cnt), scale)
    ref, _ = flatattn.reference.forward(q, k, v, **kw)
    naive, _ = flatattn.reference.forward(q, k, v, precision="input", **kw)
    assert np.max(np.abs(ref - dense)) < 1e-12, f"seed={seed}: the oracle's local + global rule != the dense mask"
    verdict = judge(out, ref, naive, "float32")
    assert verdict.passed, f"seed={seed}: out {verdict}"
    assert np.max(np.abs(out - dense)) <= verdict.bound, f"seed={seed}: out vs the dense mask {verdict}"

    # without the globals the same call is a plain window: the globals must change the result
    if gp.shape[1]:
        plain, _ = flatattn.forward(q, k, v, window=window, causal=causal)
        assert np.max(np.abs(plain - out)) > 10 * verdict.bound

    dout = rng.standard_normal(q.shape).astype(np.float32)
    grads = flatattn.backward(dout, q, k, v, out, lse, **kw)
    rgrads = flatattn.reference.backward(dout, q, k, v, **kw)
    ngrads = flatattn.reference.backward(dout, q, k, v, precision="input", **kw)
    for name, g, r, nv in zip(("dq", "dk", "dv"), grads, rgrads, ngrads):
        verdict = judge(g, r, nv, "float32")
        assert verdict.passed, f"seed={seed}: {name} {verdict}"


BAD = [
    (np.array([[5, 3]], dtype=np.int32), None, "local_global.global_positions"),  # not increasing
    (np.array([[1, 1]], dtype=np.int32), None, "local_global.global_positions"),  # repeated
    (np.array([[0, 100]], dtype=np.int32), None, "local_global.global_positions"),  # out of range (N = 100)
    (np.array([[0, 1]], dtype=np.int64), None, "local_global.global_positions"),  # dtype
    (np.array([[0, 1]] * 3, dtype=np.int32), None, "local_global.global_positions"),  # B' = 3, B = 2
    (np.array([[0, 1]], dtype=np.int32), np.array([3], dtype=np.int32), "local_global.global_counts"),  # > G
    (None, np.array([1], dtype=np.int32), "local_global.global_counts"),  # counts without positions
]


@pytest.mark.parametrize("positions,counts,argument", BAD)
def test_bad_globals_raise_naming_them(positions, counts, argument, rng):
    q, k, v = _inputs(rng)
    out = np.full_like(q, 7.0)
    lse = np.full((q.shape[0], q.shape[2], q.shape[1]), 7.0, dtype=np.float32)
    with pytest.raises(flatattn.FlatattnError) as info:
        flatattn.forward(q, k, v, window=(8, 8), global_positions=positions, global_counts=counts, out=out, lse=lse)
    assert info.value.argument == argument, str(info.value)
    assert "global" in str(info.value)
    assert np.all(out == 7.0) and np.all(lse == 7.0), "nothing may be written on error"
