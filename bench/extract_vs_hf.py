"""Extraction speed against a bare Hugging Face forward pass, side by side in one run.

$ python bench/extract_vs_hf.py [--texts 192] [--reps 3]

Both run on the default profile's model (Gemma 3 270M, the cached fp32
conversion), pinned numerics (importing sae_workbench pins them), the same
labelled texts, the same length-sorted right-padded batches (data.batch_size):
- ours: `activations.token_activations` at every hook of params.yaml (one
  TransformerLens forward pass that stops after the deepest hook, activations
  gathered per text with special tokens dropped);
- bare HF: `AutoModelForCausalLM`'s decoder truncated to the same deepest layer,
  `model.model(input_ids, attention_mask)`, nothing gathered, no LM head.
Reps alternate between the two; best and median tokens/s of each are reported,
and their ratio (target: ours >= 0.9x bare HF). Writes bench/results/extract_vs_hf.json.
"""

import sae_workbench  # noqa: F401  first: pins the numerics

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from sae_workbench.extraction import token_activations
from sae_workbench.config import hook_layer, load_params
from sae_workbench.data import read_texts
from sae_workbench.models import length_batches, load_model, pad_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=192)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="bench/results/extract_vs_hf.json")
    a = ap.parse_args()
    params = load_params()
    if params.model.loader != "gguf":
        raise SystemExit("this benchmark compares against the default gguf profile's Hugging Face model")
    from transformers import AutoModelForCausalLM

    from sae_workbench.model_cache import gguf_hf_dir

    handle = load_model(params.model)
    texts = read_texts("data/texts/labelled.jsonl")[: a.texts]
    toks = [handle.tokenize(t.text, params.data.max_tokens) for t in texts]
    n_tokens = sum(len(t.ids) for t in toks)
    batches = [pad_batch([toks[i].ids for i in idx], handle.pad_id) for idx in length_batches(toks, params.data.batch_size)]
    deepest = max(hook_layer(h) for h in params.hooks)
    hf = AutoModelForCausalLM.from_pretrained(str(gguf_hf_dir(params.model.name)), dtype=torch.float32).eval()
    hf.model.layers = hf.model.layers[: deepest + 1]
    hf.config.num_hidden_layers = deepest + 1

    def ours():
        token_activations(handle, toks, params.hooks, params.data.batch_size, desc="ours")

    @torch.no_grad()
    def bare():
        for ids, mask in batches:
            hf.model(input_ids=ids, attention_mask=mask)

    runs = {"ours (TransformerLens, all hooks, gathered)": [], f"bare HF forward (layers 0..{deepest})": []}
    ours(), bare()  # warm-up
    for _ in range(a.reps):
        for name, fn in zip(runs, (ours, bare)):
            t = time.perf_counter()
            fn()
            runs[name].append(n_tokens / (time.perf_counter() - t))
    (o, b) = runs.values()
    summary = {name: {"best_tokens_per_s": round(max(v), 1), "median_tokens_per_s": round(statistics.median(v), 1)} for name, v in runs.items()}
    result = {
        "what": __doc__.splitlines()[0],
        "model": params.model.name, "hooks": params.hooks, "deepest_layer": deepest,
        "texts": len(texts), "tokens": n_tokens, "batch_size": params.data.batch_size, "reps": a.reps,
        "summary": summary,
        "ratio_ours_to_bare": {"best": round(max(o) / max(b), 3), "median": round(statistics.median(o) / statistics.median(b), 3)},
        "runs_tokens_per_s": {k: [round(x, 1) for x in v] for k, v in runs.items()},
    }
    for name, s in summary.items():
        print(f"{name:50s} best {s['best_tokens_per_s']:8.1f} tok/s   median {s['median_tokens_per_s']:8.1f} tok/s")
    print(f"ratio ours / bare: best {result['ratio_ours_to_bare']['best']}, median {result['ratio_ours_to_bare']['median']}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
