"""ALiBi slopes and attention sinks through the Python APIs: the native API on numpy arrays against the fp64
oracle (forward, backward and dsinks) under the rule; with torch (skipped without it) the autograd of the
sinks through the ext op, and flash_attn_func(alibi_slopes=...) as FlashAttention-2."""

import numpy as np
import pytest

import flatattn
from rule import judge, judge_lse


def _inputs(rng, b, nq, nk, hq, hkv, d, dtype="float32"):
    q = rng.standard_normal((b, nq, hq, d)).astype(dtype)
    k = rng.standard_normal((b, nk, hkv, d)).astype(dtype)
    v = rng.standard_normal((b, nk, hkv, d)).astype(dtype)
    dout = rng.standard_normal((b, nq, hq, d)).astype(dtype)
    return q, k, v, dout


def _slopes(rng, b, hq, batched):
    base = np.exp2(-8.0 * np.arange(1, hq + 1) / hq) * rng.uniform(0.5, 1.5, (b, hq) if batched else hq)
    return base.astype(np.float32)


@pytest.mark.parametrize("causal,batched_slopes,with_sinks", [(False, False, True), (True, True, True),
                                                             (True, False, False), (False, True, False)])
def test_forward_backward_match_oracle(rng, seed, causal, batched_slopes, with_sinks):
    b, nq, nk, hq, hkv, d = 2, 37, 53, 4, 2, 32
    q, k, v, dout = _inputs(rng, b, nq, nk, hq, hkv, d)
    slopes = _slopes(rng, b, hq, batched_slopes)
    sinks = rng.standard_normal(hq).astype(np.float32) + 1.0 if with_sinks else None
    opts = dict(causal=causal, alibi_slopes=slopes, sinks=sinks)
    out, lse = flatattn.forward(q, k, v, **opts)
    ref_out, ref_lse = flatattn.reference.forward(q, k, v, **opts)
    naive_out, _ = flatattn.reference.forward(q, k, v, precision="input", **opts)
    verdict = judge(out, ref_out, naive_out, "float32")
    assert verdict.passed, f"seed={seed}: out {verdict}"
    assert judge_lse(lse, ref_lse, 1e-5).passed, f"seed={seed}: lse"

    grads = flatattn.backward(dout, q, k, v, out, lse, **opts)
    ref = flatattn.reference.backward(dout, q, k, v, **opts)
    naive = flatattn.reference.backward(dout, q, k, v, precision="input", **opts)
    assert len(grads) == (4 if with_sinks else 3)
    for name, got, r, n in zip(("dq", "dk", "dv", "dsinks"), grads, ref, naive):
        verdict = judge(got, r, n, "float32")
        assert verdict.passed, f"seed={seed}: {name} {verdict}"


def test_bad_slopes_and_sinks_are_named(rng):
    q, k, v, _ = _inputs(rng, 1, 8, 8, 4, 4, 16)
    with pytest.raises(flatattn.FlatattnError) as e:
        flatattn.forward(q, k, v, alibi_slopes=np.ones(3, np.float32))
    assert e.value.argument == "alibi_slopes"
    with pytest.raises(flatattn.FlatattnError) as e:
        flatattn.forward(q, k, v, sinks=np.ones(4, np.float64))
    assert e.value.argument == "sinks"
    with pytest.raises(NotImplementedError) as e:
        flatattn.forward(q, k, v, softcap=5.0, alibi_slopes=np.ones(4, np.float32))
    assert e.value.argument == "alibi_slopes"


def test_torch_sinks_autograd_and_fa2_alibi(rng, seed):
    torch = pytest.importorskip("torch")
    from flatattn import flash_attn_func

    b, n, hq, d = 2, 29, 4, 32
    q, k, v, dout = (torch.from_numpy(x) for x in _inputs(rng, b, n, n, hq, hq, d))
    for t in (q, k, v):
        t.requires_grad_(True)
    sinks = torch.from_numpy(rng.standard_normal(hq).astype(np.float32)).requires_grad_(True)
    out, lse = flatattn.forward(q, k, v, causal=True, sinks=sinks)
    out.backward(dout)
    ref = flatattn.reference.backward(dout.numpy(), q.detach().numpy(), k.detach().numpy(), v.detach().numpy(),
                                      causal=True, sinks=sinks.detach().numpy())
    naive = flatattn.reference.backward(dout.numpy(), q.detach().numpy(), k.detach().numpy(), v.detach().numpy(),
                                        causal=True, sinks=sinks.detach().numpy(), precision="input")
    for name, got, r, nv in zip(("dq", "dk", "dv", "dsinks"), (q.grad, k.grad, v.grad, sinks.grad), ref, naive):
        verdict = judge(got, r, nv, "float32")
        assert verdict.passed, f"seed={seed}: {name} {verdict}"

    slopes = torch.from_numpy(_slopes(rng, b, hq, False))
    o = flash_attn_func(q.detach(), k.detach(), v.detach(), causal=True, alibi_slopes=slopes)
    r, _ = flatattn.reference.forward(q.detach().numpy(), k.detach().numpy(), v.detach().numpy(), causal=True,
                                      alibi_slopes=slopes.numpy())
    nv, _ = flatattn.reference.forward(q.detach().numpy(), k.detach().numpy(), v.detach().numpy(), causal=True,
                                       alibi_slopes=slopes.numpy(), precision="input")
    verdict = judge(o, r, nv, "float32")
    assert verdict.passed, f"seed={seed}: flash_attn_func alibi {verdict}"
