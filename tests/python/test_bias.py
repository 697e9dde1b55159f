"""The additive bias with gradient through the Python APIs: the native API on numpy arrays against the fp64
oracle (forward, backward and dbias, broadcast shapes) under the rule; with torch (skipped without it) the
bias's autograd through the bias ops, SDPA's float and boolean attn_mask against torch's own SDPA, and a 4-D
mask through the Hugging Face attention function."""

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


@pytest.mark.parametrize("shape,causal,deterministic", [("bhq", False, False), ("hq", True, False),
                                                        ("q", False, True), ("b", True, True), ("-", False, False)])
def test_forward_backward_match_oracle(rng, seed, shape, causal, deterministic):
    b, nq, nk, hq, hkv, d = 2, 37, 53, 4, 2, 32
    q, k, v, dout = _inputs(rng, b, nq, nk, hq, hkv, d)
    bshape = (b if "b" in shape else 1, hq if "h" in shape else 1, nq if "q" in shape else 1, nk)
    bias = rng.standard_normal(bshape).astype(np.float32)
    opts = dict(causal=causal, bias=bias)
    out, lse = flatattn.forward(q, k, v, **opts)
    ref_out, ref_lse = flatattn.reference.forward(q, k, v, **opts)
    naive_out, _ = flatattn.reference.forward(q, k, v, precision="input", **opts)
    verdict = judge(out, ref_out, naive_out, "float32")
    assert verdict.passed, f"seed={seed}: out {verdict}"
    assert judge_lse(lse, ref_lse, 1e-5).passed, f"seed={seed}: lse"
    # the bias matters: without it the output is far off
    plain, _ = flatattn.forward(q, k, v, causal=causal)
    assert not judge(plain, ref_out, naive_out, "float32").passed

    grads = flatattn.backward(dout, q, k, v, out, lse, deterministic=deterministic, **opts)
    ref = flatattn.reference.backward(dout, q, k, v, **opts)
    naive = flatattn.reference.backward(dout, q, k, v, precision="input", **opts)
    assert len(grads) == 4 and grads[3].shape == bias.shape
    for name, got, r, n in zip(("dq", "dk", "dv", "dbias"), grads, ref, naive):
        verdict = judge(got, r, n, "float32")
        assert verdict.passed, f"seed={seed}: {name} {verdict}"
    if deterministic:
        again = flatattn.backward(dout, q, k, v, out, lse, deterministic=True, **opts)
        assert np.array_equal(again[3], grads[3])


def test_bad_bias_is_named(rng):
    q, k, v, dout = _inputs(rng, 1, 8, 8, 4, 4, 16)
    for bad in (np.ones((1, 3, 8, 8), np.float32), np.ones((8, 8), np.float32), np.ones((1, 1, 8, 8), np.int32)):
        with pytest.raises(flatattn.FlatattnError) as e:
            flatattn.forward(q, k, v, bias=bad)
        assert e.value.argument == "bias"
    with pytest.raises(NotImplementedError) as e:
        flatattn.forward(q, k, v, softcap=5.0, bias=np.zeros((1, 1, 8, 8), np.float32))
    assert e.value.argument == "bias"
    bias = np.zeros((1, 4, 8, 8), np.float32)
    out, lse = flatattn.forward(q, k, v, bias=bias)
    with pytest.raises(flatattn.FlatattnError) as e:
        flatattn.backward(dout, q, k, v, out, lse, bias=bias, dbias=np.zeros((1, 1, 8, 8), np.float32))
    assert e.value.argument == "dbias"
    with pytest.raises(flatattn.FlatattnError) as e:
        flatattn.backward(dout, q, k, v, out, lse, dbias=np.zeros((1, 4, 8, 8), np.float32))
    assert e.value.argument == "dbias"


def _torch_ref(torch, q, k, v, mask, causal=False):
    """fp64 SDPA math: (B, H, L, E) inputs, a float (additive) or boolean mask."""
    s = (q.double() @ k.double().transpose(-1, -2)) / q.shape[-1] ** 0.5
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.double()
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v.double()


@pytest.mark.parametrize("mshape", [(2, 4, 20, 24), (1, 4, 20, 24), (20, 24), (2, 1, 1, 24), (24,)])
def test_sdpa_float_mask_gradient_matches_torch(rng, seed, mshape):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 4, 20, 32, generator=g, requires_grad=True)
    k = torch.randn(2, 4, 24, 32, generator=g, requires_grad=True)
    v = torch.randn(2, 4, 24, 32, generator=g, requires_grad=True)
    mask = torch.randn(*mshape, generator=g).requires_grad_(True)
    out = flatattn.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    dout = torch.randn_like(out)
    out.backward(dout)
    leaves = [t.detach().double().requires_grad_(True) for t in (q, k, v, mask)]  # fp64 grads
    ref = _torch_ref(torch, *leaves)
    ref.backward(dout.double())
    assert torch.allclose(out.double(), ref, atol=2e-5, rtol=1e-4), f"seed={seed}"
    for name, got, r in zip(("q", "k", "v", "attn_mask"), (q.grad, k.grad, v.grad, mask.grad), leaves):
        assert got.shape == r.grad.shape, name
        assert torch.allclose(got.double(), r.grad, atol=5e-5, rtol=1e-3), f"seed={seed}: d{name}"


def test_sdpa_bool_mask_and_causal(rng, seed):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 3, 17, 16, generator=g) for _ in range(3))
    mask = torch.rand(2, 1, 17, 17, generator=g) > 0.3
    mask[..., 0] = True  # every row sees a key (SDPA gives NaN rows otherwise, flatattn 0)
    out = flatattn.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(out.double(), _torch_ref(torch, q, k, v, mask), atol=2e-5, rtol=1e-4), f"seed={seed}"
    out = flatattn.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
    assert torch.allclose(out.double(), _torch_ref(torch, q, k, v, mask, causal=True), atol=2e-5, rtol=1e-4)


def test_native_torch_bias_autograd_deterministic(rng, seed):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 30, 4, 32, generator=g, requires_grad=True)
    k = torch.randn(2, 30, 2, 32, generator=g, requires_grad=True)
    v = torch.randn(2, 30, 2, 32, generator=g, requires_grad=True)
    bias = torch.randn(1, 4, 30, 30, generator=g, requires_grad=True)  # broadcast over B: a reduction
    grads = []
    for _ in range(2):
        out, _ = flatattn.forward(q, k, v, causal=True, bias=bias, deterministic=True)
        (gb,) = torch.autograd.grad(out, bias, torch.ones_like(out))
        grads.append(gb)
    assert torch.equal(grads[0], grads[1])
    ref = flatattn.reference.backward(torch.ones(2, 30, 4, 32).numpy(), q.detach().numpy(), k.detach().numpy(),
                                      v.detach().numpy(), causal=True, bias=bias.detach().numpy())
    naive = flatattn.reference.backward(torch.ones(2, 30, 4, 32).numpy(), q.detach().numpy(), k.detach().numpy(),
                                        v.detach().numpy(), causal=True, bias=bias.detach().numpy(), precision="input")
    verdict = judge(grads[0], ref[3], naive[3], "float32")
    assert verdict.passed, f"seed={seed}: dbias {verdict}"


def test_transformers_4d_float_mask(rng, seed):
    torch = pytest.importorskip("torch")
    from flatattn.transformers import attention_forward

    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 4, 9, 16, generator=g)
    k, v = torch.randn(2, 2, 12, 16, generator=g), torch.randn(2, 2, 12, 16, generator=g)
    mask = torch.randn(2, 1, 9, 14, generator=g)  # a static cache's mask: longer than the keys

    class M(torch.nn.Module):
        is_causal = True

    out, _ = attention_forward(M(), q, k, v, mask, scaling=0.25)
    kr, vr = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    s = (q.double() @ kr.double().transpose(-1, -2)) * 0.25 + mask[..., :12].double()
    ref = (torch.softmax(s, -1) @ vr.double()).transpose(1, 2)
    assert torch.allclose(out.double(), ref, atol=2e-5, rtol=1e-4), f"seed={seed}"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_bias_ops_opcheck(device, seed):
    torch = pytest.importorskip("torch")
    from flatattn import torch_ops  # noqa: F401  (registers torch.ops.flatattn.*)

    dt = torch.float32 if device == "cpu" else torch.bfloat16
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 24, 4, 32, generator=g).to(device, dt)
    k, v = (torch.randn(2, 40, 2, 32, generator=g).to(device, dt) for _ in range(2))
    bias = torch.randn(1, 4, 24, 40, generator=g).to(device, dt)
    opts = (None, True, False, -1, -1, 0.0, False, 0.0, 0, 0)
    fwd_args = (q, k, v, None, None, 0, 0, None, None, bias, 0, 0, [], *opts, "auto", 0)
    torch.library.opcheck(torch.ops.flatattn.variant_fwd.default, fwd_args)
    grad_args = (q.requires_grad_(True), k, v, None, None, 0, 0, None, None, bias.clone().requires_grad_(True), 0, 0,
                 [], *opts, "auto", 0)
    torch.library.opcheck(torch.ops.flatattn.variant_fwd.default, grad_args)
    out, lse = torch.ops.flatattn.variant_fwd(q.detach(), k, v, None, None, 0, 0, None, None, bias, 0, 0, [], *opts,
                                              "auto", 0)
    for want in (True, False):
        torch.library.opcheck(torch.ops.flatattn.variant_bwd.default,
                              (torch.randn_like(out), q.detach(), k, v, out, lse, None, None, 0, 0, None, None, bias,
                               0, 0, [], want, *opts, 0))
