"""Where a steering request's time goes on the default model, measured side by side in one run.

$ python bench/generation_step.py [--reps 5]

Under the pinned numerics (sae_workbench/determinism.py), on Gemma 3 270M:
  * the unembedding of M rows (262k vocabulary) five ways: F.linear on TransformerLens's
    [vocab, d_model] copy (what its Unembed does), x @ W_U and addmm with the bias as stored
    (MKL's COMPATIBLE branch: what kinds.causal_lm.log_probs did before), oneDNN on the
    [vocab, d_model] copy reordered at every call, and models.linear on W_U packed once
    (what log_probs does now), and log_probs itself; M = 1, 2 (the app: unsteered + steered),
    14, 64 (a log-prob chunk), 70 (the steer stage: 10 prompts x 7 coefficients in one
    batch), 512; with the largest difference between MKL and oneDNN and whether argmax agrees;
  * one greedy step's transformer body (key-value cache, no unembedding) and a 20-token
    greedy continuation of 2 rows, on TransformerLens's key-value cache and on decode.Decoder;
  * steer.generation.steer_generation as the app calls it (1 prompt x 2 coefficients,
    20 tokens) and as the steer stage does (10 prompts x 7 coefficients, 20 tokens),
    with the SAE the pipeline trained at steer.hook (data/saes; run dvc repro first).
Best of --reps after a warm-up call (the sweep: one run, after the app case warmed up). Writes bench/results/generation_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from machine import cpu_model  # bench/machine.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from sae_workbench.config import load_params  # noqa: E402
from sae_workbench.kinds.causal_lm import log_probs  # noqa: E402
from sae_workbench.models import linear, load_model  # noqa: E402
from sae_workbench.sae.io import load_sae  # noqa: E402
from sae_workbench.steer.generation import greedy_continuation, steer_generation  # noqa: E402


def best_ms(f, reps: int) -> float:
    """Best of reps calls after one warm-up call (first-call costs: weight layouts kept, buffers)."""
    f()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return round(1000 * min(out), 1)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="bench/results/generation_step.json")
    a = ap.parse_args()
    os.chdir(ROOT)
    params = load_params("params.yaml")
    handle = load_model(params.model)
    model = handle.model
    w_u, b_u = model.W_U.detach(), model.unembed.b_U.detach()
    rows = w_u.T.contiguous()
    unembed = []
    for m in (1, 2, 14, 64, 70, 512):
        x = torch.randn(m, w_u.shape[0], generator=torch.Generator().manual_seed(m))
        x2 = x.expand(2, -1).contiguous() if m == 1 else x  # as models.linear multiplies one row
        packed_w = model.W_U.T  # a view of the parameter load_model packs (models.pack_weights)
        mkl, onednn = torch.addmm(b_u, x, w_u), linear(x, packed_w, b_u)
        unembed.append({"rows": m,
                        "f_linear_copy_ms": best_ms(lambda: torch.nn.functional.linear(x, rows, b_u), a.reps),
                        "matmul_w_u_ms": best_ms(lambda: x @ w_u, a.reps),
                        "mkl_addmm_w_u_ms": best_ms(lambda: torch.addmm(b_u, x, w_u), a.reps),
                        "onednn_reordered_each_call_ms": best_ms(lambda: torch.ops.mkldnn._linear_pointwise(x2, rows, b_u, "none", [], ""), a.reps),
                        "onednn_packed_ms": best_ms(lambda: linear(x, packed_w, b_u), a.reps),
                        "log_probs_ms": best_ms(lambda: log_probs(model, x), a.reps),
                        "max_abs_difference_mkl_onednn": float((mkl - onednn).abs().max()),
                        "argmax_agrees": bool(torch.equal(mkl.argmax(-1), onednn.argmax(-1)))})
        print(unembed[-1], flush=True)
    del rows
    ids = torch.tensor([handle.tokenize("The weather today is", 64).ids] * 2)
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    def body():
        cache = TransformerLensKeyValueCache.init_cache(model.cfg, ids.device, 2)
        model.run_with_hooks(ids, attention_mask=torch.ones_like(ids), past_kv_cache=cache, stop_at_layer=handle.n_layers)
        step = ids[:, -1:]
        t0 = time.perf_counter()
        for _ in range(10):
            model.run_with_hooks(step, attention_mask=torch.ones_like(step), past_kv_cache=cache, stop_at_layer=handle.n_layers)
        return (time.perf_counter() - t0) / 10

    step_body_ms = round(1000 * min(body() for _ in range(a.reps)), 1)
    greedy_tl_ms = best_ms(lambda: greedy_continuation(handle, ids, 20, lean=False), a.reps)
    greedy_ms = best_ms(lambda: greedy_continuation(handle, ids, 20), a.reps)
    hook = params.steer.hook
    sae, _ = load_sae(params.model, hook, "data/saes")
    one = torch.tensor([handle.tokenize(params.steer.prompts[0], 64).ids])
    app_ms = best_ms(lambda: steer_generation(handle, sae, 0, hook, 10.0, [0.0, 2.0], [one], 20, "add"), a.reps)
    prompts = [torch.tensor([handle.tokenize(p, 64).ids]) for p in params.steer.prompts]
    t0 = time.perf_counter()
    steer_generation(handle, sae, 0, hook, 10.0, list(params.steer.coefficients), prompts, params.steer.max_new_tokens, "add")
    sweep_s = round(time.perf_counter() - t0, 2)
    result = {
        "what": "unembedding kernels, one greedy step, and steer_generation as the app and the steer stage call it (Gemma 3 270M, pinned numerics)",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu_model(), "threads": torch.get_num_threads()},
        "reps": a.reps,
        "unembedding": unembed,
        "greedy_step_body_ms_2_rows": step_body_ms,
        "greedy_20_tokens_2_rows_ms": greedy_ms,
        "greedy_20_tokens_2_rows_transformer_lens_cache_ms": greedy_tl_ms,
        "greedy_what": "greedy_continuation's steps on decode.Decoder (the default) and on TransformerLens's own key-value cache (lean=False): the same bytes",
        "steer_generation_app_ms": app_ms,
        "steer_generation_app_shape": "1 prompt x 2 coefficients (unsteered, steered), 20 tokens",
        "steer_generation_sweep_s": sweep_s,
        "steer_generation_sweep_shape": f"{len(prompts)} prompts x {len(params.steer.coefficients)} coefficients, "
                                        f"{params.steer.max_new_tokens} tokens, one left-padded batch",
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "unembedding"}, indent=2))


if __name__ == "__main__":
    main()
