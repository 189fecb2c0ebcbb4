"""What every model kind answers (`ModelKind`); one subclass per kind beside
that kind's code (`causal_lm`, `encoder`)."""

from __future__ import annotations

from ..models import ModelHandle, TokenizedText


class ModelKind:
    """Base: what every kind answers. Subclasses hold the kind-specific code."""

    name: str = ""
    has_lm_head: bool = False
    """Whether logits mean anything (next-token losses, generation)."""
    logit_lens: bool = False
    """Whether feature cards get boosted/suppressed vocabulary tokens (W_dec[f] @ W_U)."""
    fidelity_metric: str = ""
    """Name of the downstream-fidelity measure in metrics/sae/<hook>.json['fidelity']."""
    fidelity_keys: tuple[str, ...] = ()
    fidelity_definition: str = ""
    """One sentence for reports."""
    steering: str = ""
    """How this kind is steered: the key of `steer.study.STEERING` ('generation': continuations
    of prompts; 'embedding_drift': held-out texts' embeddings)."""

    def fidelity(self, handle: ModelHandle, sae, hook: str, toks: list[TokenizedText]) -> dict[str, float]:
        """Downstream fidelity of `sae` spliced in at `hook` on `toks`; `fidelity` is the headline."""
        raise NotImplementedError
