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
    limitation = ("**Greedy continuations of a few prompts.** Steering of `{model}` is measured on {n_prompts} neutral prompts with greedy "
                  "decoding; the concept score is the steered feature's own activation, read by the unsteered model, checked by a character "
                  "n-gram classifier fitted on the labelled texts (an independent but shallow judge of surface form), and perplexity under "
                  "the unsteered model stands for fluency.")

    def fidelity_summary(self, fidelities: list[dict]) -> str:
        if not fidelities or not all("ce_loss_recovered" in f for f in fidelities):
            return ""
        rec = [f["ce_loss_recovered"] for f in fidelities]
        kl = [f["kl_sae"] for f in fidelities]
        return f"; CE loss recovered {min(rec):.3f}–{max(rec):.3f}, KL to the clean model {min(kl):.3f}–{max(kl):.3f} nats"

    def steering_summary(self, study, model_name: str) -> str:
        """The abstract's sentence on steering; study: the run's SteerStudy (steer.study)."""
        top = max(map(str, study.coefficients), key=float)
        m = study.headline_metrics
        cs, ppl = m["concept_score"], m["perplexity"]
        return (f"Adding the `{study.category}` specialist (feature {study.feature} at `{study.hook}`) while `{model_name}` continues "
                f"neutral prompts moves the feature's activation on the generated tokens, read by the unsteered model, from "
                f"{cs.get('0.0', float('nan')):.2f} unsteered to {cs[top]:.2f} at coefficient {float(top):g} (× its max activation), at perplexity "
                f"{ppl[top]:.1f} against {m['unsteered_perplexity']:.1f} unsteered.")


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

    def steering_summary(self, study, model_name: str) -> str:
        """The abstract's sentence on steering; study: the run's SteerStudy (steer.study)."""
        top = max(map(str, study.coefficients), key=float)
        near = study.headline_metrics["nearest_target_frac"]
        return (f"Adding the `{study.category}` specialist (feature {study.feature} at `{study.hook}`) makes `{study.category}` "
                f"the nearest category for {100 * near[top]:.0f}% of held-out texts of other categories at coefficient {float(top):g} "
                f"(× its max activation), against {100 * near.get('0.0', float('nan')):.0f}% unsteered.")


WORDED = {k.name: k for k in (CausalLM(), Encoder())}
"""Each kind with its wording, by the kind's own name."""


def worded(kind: ModelKind | str) -> CausalLM | Encoder:
    """The kind (a ModelKind, a profile or a name) with the report's wording."""
    name = kind.name if isinstance(kind, ModelKind) else model_kind(kind).name
    return WORDED[name]
