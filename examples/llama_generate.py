"""A Llama-architecture model (random weights, built from a config: GQA 8 query / 2 key-value heads) generates
greedily with flatattn and with PyTorch SDPA; the logits must agree within the dtype's tolerance.

    python examples/llama_generate.py --device all          # CPU float32, then CUDA float16 when present

The generation runs prefill on a left-padded batch (flatattn's varlen path) and then one-token decode steps
against the KV cache (Nq = 1, bottom-right causal). Tolerance is docs/design.md's correctness rule at model level: with the
same model in float64 (SDPA) as the reference, flatattn's logits must satisfy
    max|flatattn - ref| <= 2 * max|sdpa - ref| + floor      (floor: the dtype's rounding of the logits)
on every real (non-padding) position of the generated sequences, teacher-forced. Exit status 1 on failure.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch


def build(seed):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8,
                      num_key_value_heads=2, vocab_size=2048, max_position_embeddings=512, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


def rounding_floor(ref, dtype):
    r = ref.double()
    return float(2 * ((r + 0.3).to(dtype).double().sub(0.3).to(dtype).double() - r).abs().max())


def run(device, dtype, seed, new_tokens):
    import flatattn.transformers

    flatattn.transformers.register()
    base = build(seed)
    models = {}
    for name, impl, dt in (("flatattn", "flatattn", dtype), ("sdpa", "sdpa", dtype), ("ref", "sdpa", torch.float64)):
        m = copy.deepcopy(base).to(device=device, dtype=dt)
        m.set_attn_implementation(impl)
        models[name] = m
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 2048, (4, 48), generator=g).to(device)
    mask = torch.ones_like(ids)
    mask[1, :9] = 0  # left padding, as a tokenizer pads prompts for generation
    mask[3, :30] = 0
    kw = dict(attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
              pad_token_id=0)
    with torch.no_grad():
        seq = {n: models[n].generate(ids, **kw) for n in ("flatattn", "sdpa")}
        full = torch.cat([mask, torch.ones_like(seq["flatattn"][:, ids.shape[1]:])], 1)
        logits = {n: m(input_ids=seq["flatattn"], attention_mask=full).logits for n, m in models.items()}
    valid = full.bool()
    out, naive, ref = (logits[n][valid].double() for n in ("flatattn", "sdpa", "ref"))
    err, naive_err = float((out - ref).abs().max()), float((naive - ref).abs().max())
    floor = rounding_floor(ref, dtype)
    bound = 2 * naive_err + floor
    new = slice(ids.shape[1], None)
    same = (seq["flatattn"][:, new] == seq["sdpa"][:, new]).float().mean().item()
    ok = err <= bound
    print(f"[{device} {str(dtype)[6:]}] logits vs float64: flatattn {err:.3g}, sdpa {naive_err:.3g}, bound {bound:.3g} "
          f"(2*sdpa + floor {floor:.3g}) -> {'PASS' if ok else 'FAIL'}; greedy tokens equal to sdpa's: {same:.1%} "
          f"of {seq['flatattn'][:, new].numel()}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="all", help="cpu, cuda, or all")
    ap.add_argument("--dtype", default="float16", help="GPU dtype: float16 or bfloat16 (the CPU runs float32)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--new-tokens", type=int, default=32)
    args = ap.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if args.device == "all" and not torch.cuda.is_available():
        devices = ["cpu"]
    ok = True
    for dev in devices:
        dtype = torch.float32 if dev == "cpu" else getattr(torch, args.dtype)
        ok &= run(dev, dtype, args.seed, args.new_tokens)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
