"""Measure an SAE: reconstruction on held-out activations (`sae.metrics`) and,
on held-out texts, the model kind's downstream fidelity (`kinds`: CE loss
recovered and KL for a causal LM, embedding cosine for an encoder).

    m = measure_sae(sae, split.x_eval, hook, handle, kind, split.held_texts(n), max_tokens)
    m.reconstruction["explained_variance"], m.fidelity.get("fidelity")
    m.metrics_json(dead_frac)        # the numbers of metrics/sae/<hook>.json, rounded as stored

Used by every stage that measures an SAE (train_sae, pretrained, ...), so
each measures it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .cli import rounded
from .kinds.base import ModelKind
from .models import ModelHandle
from .sae.metrics import reconstruction_metrics

ROUND = {"l0": 4, "explained_variance": 6, "mse": 8, "dead_frac": 6, "dense_frac": 6, "fidelity": 6}
"""Decimals kept in the metrics files, per number."""


def rounded_as(key: str, value: float) -> float:
    """`value` rounded as the metrics files store the number `key` (ROUND)."""
    return rounded(value, ROUND[key])


@dataclass
class SAEMeasure:
    reconstruction: dict[str, float]
    """sae.metrics.reconstruction_metrics on the held-out activations."""
    fidelity: dict[str, float] = field(default_factory=dict)
    """The kind's fidelity measure on the held-out texts ({} when none were given)."""
    d_in: int = 0
    d_sae: int = 0

    def metrics_json(self, dead_frac: float | None = None) -> dict:
        """The numbers of metrics/sae/<hook>.json; dead_frac None: latents that never fired on the held-out tokens."""
        r = self.reconstruction
        dead = r["never_fired_frac"] if dead_frac is None else dead_frac
        return {
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "l0": rounded_as("l0", r["l0"]),
            "explained_variance": rounded_as("explained_variance", r["explained_variance"]),
            "mse": rounded_as("mse", r["mse"]),
            "dead_frac": rounded_as("dead_frac", dead),
            "dense_frac": rounded_as("dense_frac", r["dense_frac"]),
            "eval_tokens": int(r["n_tokens"]),
            "fidelity": {k: rounded_as("fidelity", v) for k, v in self.fidelity.items()},
        }


def measure_sae(sae, x_eval: torch.Tensor, hook: str, handle: ModelHandle | None = None, kind: ModelKind | None = None,
                texts: list[str] = (), max_tokens: int = 0) -> SAEMeasure:
    """Reconstruction metrics of `sae` on x_eval [n, d_in]; with a model handle, its kind and
    held-out `texts`, also the kind's fidelity with the SAE spliced in at `hook`."""
    fidelity = {}
    if texts:
        if handle is None or kind is None:
            raise ValueError("measuring fidelity needs the model (handle) and its kind")
        toks = [handle.tokenize(t, max_tokens) for t in texts]
        fidelity = kind.fidelity(handle, sae, hook, toks)
    return SAEMeasure(reconstruction_metrics(sae, x_eval), fidelity, int(sae.cfg.d_in), int(sae.cfg.d_sae))
