"""attn_implementation="flatattn" in Hugging Face transformers (BERT, GPT-2, Llama) vs the same model with
SDPA, both judged against the model in float64 (SDPA's math path: eager's additive float64 mask overflows to
-inf and turns padded rows into NaN) -- the correctness rule of docs/design.md at model level."""

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import flatattn  # noqa: E402
import flatattn.transformers  # noqa: E402
from rule import judge  # noqa: E402

flatattn.transformers.register()

DEVICES = [pytest.param(("cpu", torch.float32), id="cpu-float32"),
           pytest.param(("cuda", torch.float16), marks=pytest.mark.cuda, id="cuda-float16"),
           pytest.param(("cuda", torch.bfloat16), marks=pytest.mark.cuda, id="cuda-bfloat16")]


def _variants(model, device, dtype):
    """(flatattn model, sdpa model, float64 sdpa model) sharing the weights."""
    model = model.eval()
    ref = copy.deepcopy(model).to(device=device, dtype=torch.float64)
    ref.set_attn_implementation("sdpa")
    sdpa = copy.deepcopy(model).to(device=device, dtype=dtype)
    sdpa.set_attn_implementation("sdpa")
    flat = model.to(device=device, dtype=dtype)
    flat.set_attn_implementation("flatattn")
    return flat, sdpa, ref


def _judge(name, out, naive, ref, dtype, seed, where=None):
    if where is not None:
        out, naive, ref = out[where], naive[where], ref[where]
    v = judge(out, ref, naive, str(dtype)[6:])
    assert v.passed, f"{name} seed={seed}: {v}"


def _bert(seed):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                  vocab_size=128, max_position_embeddings=64)
    return transformers.BertModel(cfg)


def _llama(seed, **kw):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=128, max_position_embeddings=128,
                                   pad_token_id=0, bos_token_id=1, eos_token_id=2, **kw)
    return transformers.LlamaForCausalLM(cfg)


@pytest.mark.parametrize("dev", DEVICES)
def test_bert_padded_batch(dev, seed):
    device, dtype = dev
    flat, sdpa, ref = _variants(_bert(seed), device, dtype)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 128, (4, 19), generator=g).to(device)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[2, 4:] = 0
    mask[3, :] = 1
    with torch.no_grad():
        out = flat(input_ids=ids, attention_mask=mask).last_hidden_state
        naive = sdpa(input_ids=ids, attention_mask=mask).last_hidden_state
        r = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    # bidirectional models keep every query row, so padded positions match SDPA as well
    _judge("bert last_hidden_state", out, naive, r, dtype, seed)


@pytest.mark.parametrize("dev", DEVICES)
def test_gpt2_left_padded_batch(dev, seed):
    device, dtype = dev
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=64,
                                  bos_token_id=1, eos_token_id=2)
    flat, sdpa, ref = _variants(transformers.GPT2LMHeadModel(cfg), device, dtype)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 128, (3, 16), generator=g).to(device)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding, as for generation
    mask[2, :1] = 0
    with torch.no_grad():
        out, naive, r = (m(input_ids=ids, attention_mask=mask).logits for m in (flat, sdpa, ref))
    valid = mask.bool()  # padded query rows are 0 in flatattn (like FlashAttention), garbage in SDPA
    _judge("gpt2 logits", out, naive, r, dtype, seed, where=valid)
    with torch.no_grad():  # no padding at all: the batched (non-varlen) path
        out, naive, r = (m(input_ids=ids).logits for m in (flat, sdpa, ref))
    _judge("gpt2 logits (no mask)", out, naive, r, dtype, seed)


@pytest.mark.parametrize("dev", DEVICES)
def test_llama_gqa_generate(dev, seed):
    """Greedy generation with a KV cache (prefill, then Nq = 1 decode steps against a growing cache)."""
    device, dtype = dev
    flat, sdpa, ref = _variants(_llama(seed), device, dtype)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 128, (2, 12), generator=g).to(device)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    kw = dict(attention_mask=mask, max_new_tokens=10, do_sample=False, output_logits=True,
              return_dict_in_generate=True, pad_token_id=0)
    with torch.no_grad():
        gen = flat.generate(ids, **kw)
        # teacher-force flatattn's sequence through all three models and compare the logits of every step
        seq = gen.sequences
        full_mask = torch.cat([mask, torch.ones_like(seq[:, ids.shape[1]:])], 1)
        out, naive, r = (m(input_ids=seq, attention_mask=full_mask).logits for m in (flat, sdpa, ref))
    _judge("llama logits", out, naive, r, dtype, seed, where=full_mask.bool())
    steps = torch.stack(gen.logits, 1)  # (B, new, V) from the cached decode
    tf = out[:, ids.shape[1] - 1:-1]
    naive_steps = naive[:, ids.shape[1] - 1:-1]
    ref_steps = r[:, ids.shape[1] - 1:-1]
    _judge("llama cached-decode logits", steps, naive_steps, ref_steps, dtype, seed)
    assert tf.shape == steps.shape


def test_llama_packed_sequences(seed):
    """Batch 1 with restarting position_ids and no mask: the sequences must not see each other."""
    flat, sdpa, _ = _variants(_llama(seed), "cpu", torch.float32)
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(3, 128, (1, 7), generator=g), torch.randint(3, 128, (1, 5), generator=g)
    packed = torch.cat([a, b], 1)
    pos = torch.cat([torch.arange(7), torch.arange(5)])[None]
    with torch.no_grad():
        out = flat(input_ids=packed, position_ids=pos).logits
        ra, rb = sdpa(input_ids=a).logits, sdpa(input_ids=b).logits
    torch.testing.assert_close(out, torch.cat([ra, rb], 1), rtol=1e-4, atol=1e-4)


def test_training_dropout_runs_fused(seed):
    """attention_dropout > 0 in train mode: the dropout is applied (the output differs from eval), the same
    torch seed replays the same output and gradients, and gradients reach every parameter."""
    model = _llama(seed, attention_dropout=0.3)
    model.set_attn_implementation("flatattn")
    ids = torch.randint(3, 128, (2, 11), generator=torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        eval_logits = model(input_ids=ids).logits
    model.train()
    runs = []
    for _ in range(2):
        torch.manual_seed(seed + 1)
        model.zero_grad()
        logits = model(input_ids=ids).logits
        logits.float().square().mean().backward()
        runs.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    assert not torch.allclose(runs[0][0], eval_logits), "dropout had no effect in train mode"
    assert torch.equal(runs[0][0], runs[1][0]), "the same torch seed must replay the same dropout"
    for a, b in zip(runs[0][1], runs[1][1]):
        assert torch.equal(a, b)
    assert all(g.abs().sum() > 0 for g in runs[0][1] if g.dim() > 1)


def test_training_backward_through_padding(seed):
    """Gradients flow through the unpadded varlen path (eval dropout 0): compare with SDPA."""
    flat, sdpa, _ = _variants(_llama(seed), "cpu", torch.float32)
    ids = torch.randint(3, 128, (2, 9), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    losses = []
    for m in (flat, sdpa):
        m.zero_grad()
        logits = m(input_ids=ids, attention_mask=mask).logits
        loss = (logits.float().square() * mask[..., None]).mean()
        loss.backward()
        losses.append([p.grad.clone() for p in m.parameters()])
    for gf, gs in zip(*losses):
        torch.testing.assert_close(gf, gs, rtol=1e-3, atol=1e-5)
