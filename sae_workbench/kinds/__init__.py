"""One interface per model kind, chosen by the profile (`kind: causal_lm | encoder`):
what a model can measure, and the kind-specific code behind it.

    kind = model_kind(params.model)
    kind.fidelity(handle, sae, hook, toks)       # CE loss recovered + KL, or embedding-cosine fidelity
    kind.steering                                # "generation" or "embedding_drift" (steer.study.STEERING)

Stages, the report and tests ask the kind; nothing else branches on it.

| kind      | module                 | fidelity                       | steering (`steer/`)                        |
|-----------|------------------------|--------------------------------|--------------------------------------------|
| causal_lm | `kinds/causal_lm.py`   | CE loss recovered, KL          | greedy generation on prompts (`generation`) |
| encoder   | `kinds/encoder.py`     | pooled-embedding cosine        | embedding drift to centroids (`embedding`) |
"""

from __future__ import annotations

from ..config import ProfileConfig
from .base import ModelKind
from .causal_lm import CausalLM
from .encoder import Encoder

KINDS: dict[str, ModelKind] = {k.name: k for k in (CausalLM(), Encoder())}
"""Every model kind, by name: the one list of their names (the check stage validates params.yaml against it)."""


def model_kind(profile: ProfileConfig | str) -> ModelKind:
    """The kind of a profile (or kind name)."""
    key = profile if isinstance(profile, str) else profile.kind
    if key not in KINDS:
        raise ValueError(f"profiles.*.kind must be one of {', '.join(KINDS)}, got {key!r}")
    return KINDS[key]
