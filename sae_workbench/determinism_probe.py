"""The determinism test's probe: extraction and a few SAE steps in a fresh
process, pinned by `import sae_workbench` like every stage.

    python -m sae_workbench.determinism_probe --probe TEXTS --out DIR [--steps N]   # md5s as JSON
    python -m sae_workbench.determinism_probe                                      # the pinned settings

Kept out of sae_workbench.determinism, which every process imports, so that
importing the package does not reach the model, extraction and training code.
"""

from __future__ import annotations

import os

import sae_workbench  # noqa: F401  (pins the numerics before torch computes)

from .determinism import ENV, effective

def probe(texts_path: str, out_dir: str, steps: int = 3, params_path: str = "params.yaml", warmup: bool = False) -> dict:
    """Extract activations of the texts (every hook of params.yaml), take a causal LM's
    next-token log-probs of four of them and 4 greedy tokens after the first, and train an
    SAE for `steps` steps on the first hook (CPU). Returns md5s of every output
    file, of the log-probs and tokens, and of the SAE's weights, and timings (bench/determinism_cost.py and
    tests/pipeline/test_determinism.py run this in fresh processes). `warmup`: extract
    once untimed first (the first forward pass carries one-off set-up costs)."""
    import dataclasses
    import hashlib
    import time
    from pathlib import Path

    import numpy as np
    import torch
    from safetensors.torch import save

    from .extraction import extract_activations
    from .kinds import model_kind
    from .kinds.causal_lm import token_logprobs
    from .steer.generation import greedy_continuation
    from .config import load_params
    from .data import read_texts
    from .models import load_model, pad_batch
    from .sae.buffer import ShuffledBuffer, safetensors_reader
    from .sae.train import train_sae

    params = load_params(params_path)
    torch.manual_seed(params.seed)
    texts = read_texts(texts_path)
    handle = load_model(params.model)
    out = Path(out_dir)
    if warmup:
        extract_activations(handle, texts, params.hooks, out, params.data.max_tokens, params.data.batch_size, desc="probe warm-up")
    t0 = time.perf_counter()
    table = extract_activations(handle, texts, params.hooks, out, params.data.max_tokens, params.data.batch_size, desc="probe extract")
    t_extract = time.perf_counter() - t0
    n_tokens = sum(len(t["tokens"]) for t in table.texts)
    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(out.iterdir()) if f.is_file()}
    if model_kind(params.model).steering == "generation":
        # the LM head: next-token log-probs (kinds.causal_lm.log_probs) and greedy steps (decode.Decoder)
        toks = [handle.tokenize(t.text, params.data.max_tokens) for t in texts[:4]]
        ids, mask = pad_batch([t.ids for t in toks], handle.pad_id)
        with torch.no_grad():
            lp = token_logprobs(handle, ids, mask)
            gen = greedy_continuation(handle, torch.tensor([toks[0].ids]), 4)
        md5["next_token_logprobs"] = hashlib.md5(lp.numpy().tobytes()).hexdigest()
        md5["greedy_tokens"] = hashlib.md5(gen.numpy().tobytes()).hexdigest()

    read, n, d = safetensors_reader(out / f"{params.hooks[0]}.safetensors")
    batch = min(params.sae.batch_tokens, n)
    cfg = dataclasses.replace(
        params.sae, device="cpu", batch_tokens=batch, buffer_tokens=max(batch, n),
        epochs=max(1, -(-(steps * batch) // n)), checkpoint_every=0,
        dead_window_tokens=min(params.sae.dead_window_tokens, batch),  # step 2 on: AuxK on dead latents runs too
    )
    buffer = ShuffledBuffer(read, np.arange(n), cfg.batch_tokens, cfg.buffer_tokens, params.seed)
    result = train_sae(buffer, d, cfg, params.seed, desc="probe train", stop_after=steps)
    state = {k: v.contiguous() for k, v in result.sae.state_dict().items()}
    md5["sae.safetensors"] = hashlib.md5(save(state)).hexdigest()
    md5["sae.curve"] = hashlib.md5(repr((result.scale, result.curve)).encode()).hexdigest()
    return {
        "md5": md5,
        "tokens": n_tokens,
        "extract_s": t_extract,
        "extract_tokens_per_s": n_tokens / t_extract,
        "train_steps": result.steps,
        "train_batch_tokens": batch,
        "train_step_s": cfg.batch_tokens / result.tokens_per_s,
        "effective": effective(),
    }


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probe", metavar="TEXTS", help="JSON-lines texts to extract and train on")
    p.add_argument("--out", default="build/determinism_probe", help="probe: activation directory")
    p.add_argument("--steps", type=int, default=3, help="probe: SAE training steps")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--warmup", action="store_true", help="probe: time a second extraction (benchmarks)")
    a = p.parse_args(argv)
    if a.probe:
        print(json.dumps(probe(a.probe, a.out, a.steps, a.params, a.warmup)))
    else:
        print(json.dumps({"env": {k: os.environ.get(k) for k in ENV}, "effective": effective()}, indent=2))


if __name__ == "__main__":
    main()
