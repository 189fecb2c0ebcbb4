"""Measure an SAE: reconstruction on held-out activations (`sae.metrics`) and,
on held-out texts, the model kind's downstream fidelity (`kinds`: CE loss
recovered and KL for a causal LM, embedding cosine for an encoder).

    m = measure_sae(sae, split.x_eval, hook, handle, kind, split.held_texts(n), max_tokens)
    m.reconstruction["explained_variance"], m.fidelity.get("fidelity")
    m.metrics("custom", dead_frac, architecture=..., train_tokens=..., steps=...)
                                     # SAEMetrics: metrics/sae/<hook>.json, rounded as stored
    SAEMetrics.read("metrics/sae/<hook>.json").explained_variance   # read back, typed

Used by every stage that measures an SAE (train_sae, pretrained, ...), so
each measures it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .cli import JsonRecord, rounded
from .kinds.base import ModelKind
from .models import ModelHandle
from .sae.metrics import reconstruction_metrics

ROUND = {"l0": 4, "explained_variance": 6, "mse": 8, "dead_frac": 6, "dense_frac": 6, "fidelity": 6}
"""Decimals kept in the metrics files, per number."""


def rounded_as(key: str, value: float) -> float:
    """`value` rounded as the metrics files store the number `key` (ROUND)."""
    return rounded(value, ROUND[key])


@dataclass
class SAEMetrics(JsonRecord):
    """metrics/sae/<hook>.json: what train_sae measured of the hook's SAE (written
    with `to_json`, read back with `from_json` / `read`)."""

    source: str
    """custom (trained here) or pretrained (a SAELens release)."""
    d_in: int
    d_sae: int
    l0: float
    explained_variance: float
    mse: float
    dead_frac: float
    dense_frac: float
    eval_tokens: int
    fidelity: dict[str, float]
    """The kind's fidelity measure ({} without fidelity texts); "fidelity" is its headline number."""
    architecture: str | None = None
    """Custom SAEs only: how it was trained (sae.architecture), on how many tokens, in how many steps."""
    train_tokens: int | None = None
    steps: int | None = None

    TRAINING = ("architecture", "train_tokens", "steps")

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in self.TRAINING}
        training = {k: getattr(self, k) for k in self.TRAINING if getattr(self, k) is not None}
        return {"source": d.pop("source"), **training, **d}


@dataclass
class SAEMeasure:
    reconstruction: dict[str, float]
    """sae.metrics.reconstruction_metrics on the held-out activations."""
    fidelity: dict[str, float] = field(default_factory=dict)
    """The kind's fidelity measure on the held-out texts ({} when none were given)."""
    d_in: int = 0
    d_sae: int = 0

    def metrics(self, source: str, dead_frac: float | None = None, **training) -> SAEMetrics:
        """The SAE's metrics file (SAEMetrics); training: architecture, train_tokens, steps of a custom SAE."""
        return SAEMetrics(source=source, **self.metrics_json(dead_frac), **training)

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


@dataclass
class PretrainedComparison(JsonRecord):
    """metrics/pretrained.json: per hook, the custom SAE's numbers beside the
    profile's pre-trained SAE's on the same tokens (stages/pretrained.py), or
    why the pre-trained one has none (`available: false` and a reason)."""

    release: str | dict | None
    sae_id: str | None
    hooks: dict[str, dict]
    """Per hook: release, sae_id, custom {...}, available, and pretrained {...} or reason."""
    available: bool
    reason: str | None = None
    """Why no hook has a pre-trained SAE, when the profile names no release."""

    def to_json(self) -> dict:
        if self.reason is not None:
            return {"release": self.release, "sae_id": self.sae_id, "available": self.available, "reason": self.reason, "hooks": self.hooks}
        return {"release": self.release, "sae_id": self.sae_id, "hooks": self.hooks, "available": self.available}
