"""Do the features survive another training seed? Decoder-direction matching
between SAEs trained on the same activations with different seeds.

For SAEs A and B with unit decoder rows a_i, b_j, feature i of A has the
best-match cosine  max_j cos(a_i, b_j).  Following the feature-universality
literature (e.g. Paulo & Belrose 2025, "SAEs trained on the same data learn
different features"), a feature is *stable* when its best match is >= 0.7;
published runs report median best-match cosines near 0.5. Only features alive
in A (firing at least once on the held-out corpus tokens) are counted: a dead
latent's direction is its initialisation.
"""

from __future__ import annotations

import numpy as np
import torch

STABLE_COSINE = 0.7


def unit_decoder(sae) -> torch.Tensor:
    """[d_sae, d_in] decoder rows scaled to unit norm (float32)."""
    w = sae.W_dec.detach().float()
    return w / w.norm(dim=1, keepdim=True).clamp(min=1e-12)


def best_match(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each unit row of a: (max cosine with the rows of b, index of that row)."""
    vals, idx = [], []
    for s in range(0, a.shape[0], chunk):
        v, i = (a[s : s + chunk] @ b.T).max(1)
        vals.append(v)
        idx.append(i)
    return torch.cat(vals).numpy(), torch.cat(idx).numpy()


def pair_stability(a: torch.Tensor, b: torch.Tensor, alive_a: np.ndarray, threshold: float = STABLE_COSINE) -> dict:
    """Best-match statistics of A's alive features in B."""
    cos, _ = best_match(a, b)
    cos = cos[alive_a]
    if not len(cos):
        return {"n_features": 0, "frac_stable": float("nan"), "median_best_cosine": float("nan")}
    return {"n_features": int(len(cos)), "frac_stable": float((cos >= threshold).mean()),
            "median_best_cosine": float(np.median(cos)), "mean_best_cosine": float(cos.mean())}


def mean_and_spread(values: list[float]) -> dict:
    """{mean, std (ddof 1), min, max, values} of one metric over seeds."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "values": [float(x) for x in v]}
