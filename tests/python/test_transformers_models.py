"""Whole Hugging Face models from small configs with random weights through attn_implementation="flatattn" vs
the stock implementation, both judged against the stock implementation in float64 (the rule of docs/design.md at
model level): gpt-oss (attention sinks ``s_aux``, sliding-window layers, GQA) and BLOOM (ALiBi). Skipped without
torch/transformers, or where the installed transformers lacks the model or does not dispatch its attention
through AttentionInterface (then attn_implementation cannot reach flatattn and there is nothing to compare)."""

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import flatattn  # noqa: E402
import flatattn.transformers  # noqa: E402
from rule import judge  # noqa: E402

flatattn.transformers.register()

DEVICES = [pytest.param(("cpu", torch.float32), id="cpu-float32"),
           pytest.param(("cuda", torch.bfloat16), marks=pytest.mark.cuda, id="cuda-bfloat16")]


def _dispatches(model_cls):
    return bool(getattr(model_cls, "_supports_attention_backend", False))


def _variants(model, device, dtype, stock):
    """(flatattn model, stock model, float64 stock model) sharing the weights."""
    model = model.eval()
    ref = copy.deepcopy(model).to(device=device, dtype=torch.float64)
    ref.set_attn_implementation(stock)
    base = copy.deepcopy(model).to(device=device, dtype=dtype)
    base.set_attn_implementation(stock)
    flat = model.to(device=device, dtype=dtype)
    flat.set_attn_implementation("flatattn")
    return flat, base, ref


def _judge(name, out, naive, ref, dtype, seed, where=None):
    if where is not None:
        out, naive, ref = out[where], naive[where], ref[where]
    v = judge(out, ref, naive, str(dtype)[6:])
    assert v.passed, f"{name} seed={seed}: {v}"


@pytest.mark.parametrize("dev", DEVICES)
def test_gpt_oss_sinks_logits(dev, seed):
    if not hasattr(transformers, "GptOssConfig"):
        pytest.skip("this transformers has no gpt-oss")
    if not _dispatches(transformers.GptOssPreTrainedModel):
        pytest.skip("gpt-oss does not dispatch through AttentionInterface in this transformers")
    device, dtype = dev
    torch.manual_seed(seed)
    cfg = transformers.GptOssConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
                                    vocab_size=128, max_position_embeddings=128, sliding_window=8,
                                    layer_types=["sliding_attention", "full_attention"],
                                    # the float64 reference model: the default grouped_mm experts take 16/32-bit only
                                    experts_implementation="eager")
    model = transformers.GptOssForCausalLM(cfg)
    with torch.no_grad():  # sinks away from 0 so that they matter
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_(0.0, 2.0)
    flat, base, ref = _variants(model, device, dtype, "eager")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 128, (2, 20), generator=g).to(device)
    with torch.no_grad():
        out, naive, r = (m(input_ids=ids).logits for m in (flat, base, ref))
    _judge("gpt-oss logits", out, naive, r, dtype, seed)


@pytest.mark.parametrize("dev", DEVICES)
def test_bloom_alibi_logits(dev, seed):
    if not _dispatches(transformers.BloomPreTrainedModel):
        pytest.skip("BLOOM builds its ALiBi bias outside AttentionInterface in this transformers: "
                    "attn_implementation='flatattn' never reaches it")
    device, dtype = dev
    torch.manual_seed(seed)
    cfg = transformers.BloomConfig(hidden_size=64, n_layer=2, n_head=4, vocab_size=128)
    flat, base, ref = _variants(transformers.BloomForCausalLM(cfg), device, dtype, "eager")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 128, (2, 20), generator=g).to(device)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    with torch.no_grad():
        out, naive, r = (m(input_ids=ids, attention_mask=mask).logits for m in (flat, base, ref))
    _judge("bloom logits", out, naive, r, dtype, seed, where=mask.bool())


@pytest.mark.parametrize("dev", DEVICES)
def test_bloom_alibi_patched_logits(dev, seed):
    """BLOOM through flatattn.transformers.patch_bloom_alibi (ALiBi inside the kernel) = stock BLOOM: a left-padded
    prompt, then one decoding step against the KV cache (Nq = 1, keys unpadded by the mask)."""
    if not hasattr(transformers, "BloomConfig"):
        pytest.skip("this transformers has no BLOOM")
    device, dtype = dev
    torch.manual_seed(seed)
    cfg = transformers.BloomConfig(hidden_size=96, n_layer=2, n_head=6, vocab_size=128)  # 6 heads: not a power of 2
    model = transformers.BloomForCausalLM(cfg).eval()
    ref = copy.deepcopy(model).to(device=device, dtype=torch.float64)
    base = copy.deepcopy(model).to(device=device, dtype=dtype)
    flat = model.to(device=device, dtype=dtype)
    assert flatattn.transformers.patch_bloom_alibi(flat) == 2
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 128, (3, 21), generator=g).to(device)
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding
    mask[2, :1] = 0
    prompt, last, pmask = ids[:, :20], ids[:, 20:], mask[:, :20]
    with torch.no_grad():
        runs = [m(input_ids=prompt, attention_mask=pmask, use_cache=True) for m in (flat, base)]
        step = [m(input_ids=last, attention_mask=mask, past_key_values=r.past_key_values).logits
                for m, r in zip((flat, base), runs)]
        # The float64 reference runs each sequence unpadded: stock BLOOM in float64 turns its fully masked (padded)
        # rows into NaN, which then reach every row through V. Left padding: the same positions either way.
        ref_prompt, ref_step = torch.zeros_like(runs[0].logits, dtype=torch.float64), []
        for b in range(ids.shape[0]):
            keep = pmask[b].bool()
            r = ref(input_ids=prompt[b, keep][None], use_cache=True)
            ref_prompt[b, keep] = r.logits[0]
            ref_step.append(ref(input_ids=last[b][None], past_key_values=r.past_key_values).logits[0])
    _judge("bloom prompt logits", runs[0].logits, runs[1].logits, ref_prompt, dtype, seed, where=pmask.bool())
    _judge("bloom decode-step logits", step[0], step[1], torch.stack(ref_step), dtype, seed)
    with pytest.raises(flatattn.FlatattnError, match="output_attentions"):
        with torch.no_grad():
            flat(input_ids=prompt, output_attentions=True)
