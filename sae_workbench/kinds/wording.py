"""What the report says of each model kind, so its chapters never branch on a
kind's name. Each class here is its kind (`causal_lm.CausalLM`,
`encoder.Encoder`) with the report's wording added; `report_kit.setup` hands
a chapter one of these as `kind`.

A module of its own, which only the report imports: a change of wording
re-runs the chapters, not the stages that train and measure SAEs.
"""

from __future__ import annotations

from . import causal_lm, encoder, model_kind
from .base import ModelKind


class CausalLM(causal_lm.CausalLM):
    description = ("It is a causal language model: SAE fidelity is measured on its next-token predictions, feature cards show the "
                   "logit lens, steering edits its generated text.")
    fidelity_label = "CE loss recovered"
    fidelity_columns = (("ce_clean", "CE clean"), ("ce_sae", "CE with SAE"), ("ce_zero", "CE zero-ablated"),
                        ("ce_loss_recovered", "CE loss recovered"), ("kl_sae", "KL(clean ‖ SAE)"), ("kl_zero", "KL(clean ‖ zero)"),
                        ("n_positions", "positions"))
    fidelity_explanation = (
        "**Next-token fidelity.** With the SAE's reconstruction spliced in at the hook (the SAE error dropped), the model's next-token "
        "cross-entropy CE_sae is compared with the clean run's CE_clean and with the hook zero-ablated (CE_zero): CE loss recovered = "
        "(CE_zero − CE_sae) / (CE_zero − CE_clean), as SAELens and SAEBench define it; KL(clean ‖ SAE) is the mean over positions of the KL "
        "divergence of the spliced model's next-token distribution from the clean one (nats). BOS and padding positions are left out.")
    limitation = ("**Greedy continuations of neutral prompts.** Steering of `{model}` is measured on {n_prompts} neutral prompts with greedy "
                  "decoding, so the interval over prompts is the only spread; the concept judge is a character n-gram classifier fitted on the "
                  "labelled texts and gated against degenerate text (an independent but shallow judge of surface form, not a reader of meaning), "
                  "and fluency is perplexity and token diversity under the unsteered model.")

    def fidelity_summary(self, fidelities: list[dict]) -> str:
        """The abstract's fidelity clause: ΔCE (where measured), CE loss recovered and KL, ranges over hooks."""
        if not fidelities or not all("ce_loss_recovered" in f for f in fidelities):
            return ""
        span = lambda v, nd: f"{min(v):.{nd}f}–{max(v):.{nd}f}"
        rec = [f["ce_loss_recovered"] for f in fidelities]
        kl = [f["kl_sae"] for f in fidelities]
        out = f"CE loss recovered {span(rec, 3)}, KL to the clean model {span(kl, 3)} nats"
        if all("ce_sae" in f and "ce_clean" in f for f in fidelities):
            out = f"ΔCE {span([f['ce_sae'] - f['ce_clean'] for f in fidelities], 2)} nats per token, " + out
        return "; " + out


class Encoder(encoder.Encoder):
    description = ("It is a sentence encoder without an LM head: logits are meaningless, so steering and fidelity are measured on "
                   "pooled sentence embeddings.")
    fidelity_label = "embedding-cosine fidelity"
    fidelity_columns = (("cos_recon", "cos with SAE"), ("cos_zero", "cos zero-ablated"), ("fidelity", "fidelity"))
    fidelity_explanation = (
        "**Embedding fidelity.** With the SAE's reconstruction spliced in at the hook, the cosine of the pooled sentence embedding to "
        "the clean one (cos with SAE), against the hook zero-ablated (cos zero-ablated); fidelity = (cos_recon − cos_zero) / (1 − cos_zero).")
    limitation = ("**No LM head.** `{model}` is a sentence encoder, so steering and ablation are measured on pooled sentence embeddings "
                  "(centroid similarity, drift), not on generated text.")

    def fidelity_summary(self, fidelities: list[dict]) -> str:
        return ""


WORDED = {k.name: k for k in (CausalLM(), Encoder())}
"""Each kind with its wording, by the kind's own name."""


def worded(kind: ModelKind | str) -> CausalLM | Encoder:
    """The kind (a ModelKind, a profile or a name) with the report's wording."""
    name = kind.name if isinstance(kind, ModelKind) else model_kind(kind).name
    return WORDED[name]
