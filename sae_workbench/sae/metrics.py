"""SAE quality metrics, with the definitions we use written down.

On held-out corpus tokens, special tokens excluded, raw activation scale:
    l0                  mean number of non-zero latents per token
    explained_variance  1 - FVU, FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2,
                        mean(x) over all evaluated tokens (one vector, not per
                        batch; libraries differ on this, so we state ours)
    mse                 mean over tokens and dimensions of (x - x_hat)^2
    dense_frac          latents firing on > 10% of the evaluated tokens
    never_fired_frac    latents firing on none of the evaluated tokens
    dead_frac           (from training) latents silent over the last
                        dead_window_tokens training tokens

Downstream fidelity (the reconstruction spliced into the model's forward
pass) depends on the model's kind, so it lives beside that kind's code:
`kinds.causal_lm.ce_loss_recovered` (CE loss recovered, KL) and
`kinds.encoder.embedding_fidelity`; `measure.measure_sae` reports both kinds of
number for a trained SAE. This module imports nothing of the project.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def reconstruction_metrics(sae, acts: torch.Tensor, batch: int = 8192) -> dict[str, float]:
    """L0, explained variance, MSE and dense fraction of any SAE with
    encode/decode (ours or SAELens's) on raw activations [n, d_in]."""
    n, d = acts.shape
    if n == 0:
        raise ValueError("no tokens to evaluate the SAE on")
    mean = acts.mean(0)
    sse = tot = l0 = 0.0
    fire_counts = torch.zeros(int(sae.W_dec.shape[0]))
    for b in range(0, n, batch):
        x = acts[b : b + batch]
        f = sae.encode(x)
        x_hat = sae.decode(f)
        sse += (x - x_hat).pow(2).sum().item()
        tot += (x - mean).pow(2).sum().item()
        active = f > 0
        l0 += active.sum().item()
        fire_counts += active.sum(0).float()
    return {
        "l0": l0 / n,
        "explained_variance": 1.0 - sse / tot,
        "mse": sse / (n * d),
        "dense_frac": float((fire_counts / n > 0.10).float().mean()),
        "never_fired_frac": float((fire_counts == 0).float().mean()),
        "n_tokens": n,
    }


