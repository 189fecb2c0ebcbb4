"""One interface per model kind, chosen by the profile (`kind: causal_lm | encoder`):
what a model can measure, and the kind-specific code behind it.

    kind = model_kind(params.model)
    kind.fidelity(handle, sae, hook, toks)       # CE loss recovered + KL, or embedding-cosine fidelity
    kind.steering                                # "generation" or "embedding_drift"
    kind.sweep(handle, sae, feature, ...)        # the steering study of one feature

Stages, the report and tests ask the kind; nothing else branches on it.

| kind      | fidelity                                   | steering                                  | ablation score / attribution metric |
|-----------|--------------------------------------------|-------------------------------------------|-------------------------------------|
| causal_lm | CE loss recovered, KL (sae.metrics)         | greedy generation on prompts (causal_lm)  | mean next-token log-prob            |
| encoder   | pooled-embedding cosine (sae.metrics)       | embedding drift towards centroids (encoder) | separation to category centroids |
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import CATEGORIES, ProfileConfig, SteerConfig
from .models import ModelHandle, TokenizedText


@dataclass
class SteeringContext:
    """What a kind's steering, ablation and attribution share across features."""

    tokenize: object
    """text -> TokenizedText."""
    held: list = field(default_factory=list)
    """The held-out evaluation texts (data.Text)."""
    prompts: list[torch.Tensor] = field(default_factory=list)
    """causal_lm: the prompts as [1, pos] id tensors starting with BOS."""
    centroids: dict[str, torch.Tensor] | None = None
    """encoder: category centroids of the unsteered train texts."""
    classifier: object = None
    """causal_lm: text_classifier.CategoryClassifier, the independent judge of continuations."""


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
    """'generation' (continuations of prompts) or 'embedding_drift' (held-out texts' embeddings)."""
    ablation_score: str = ""
    ablation_accuracy: bool = False
    """Whether a score > 0 means 'classified as its own category' (ablation accuracy reported)."""
    attribution_metric_name: str = ""

    def fidelity(self, handle: ModelHandle, sae, hook: str, toks: list[TokenizedText]) -> dict[str, float]:
        raise NotImplementedError

    def steering_context(self, handle: ModelHandle, texts: list, cfg: SteerConfig, max_tokens: int) -> SteeringContext:
        raise NotImplementedError

    def sweep(self, handle, sae, feature: int, hook: str, max_act: float, coefs: list[float], ctx: SteeringContext,
              category: str, mode: str, cfg: SteerConfig):
        """The steering study of one feature towards `category` (a result dataclass)."""
        raise NotImplementedError

    def curve(self, result, category: str) -> list[float]:
        """Per coefficient: the score whose slope says whether steering moved towards `category`."""
        raise NotImplementedError

    def headline(self, result, coefs: list[float], ctx: SteeringContext, category: str, cfg: SteerConfig) -> tuple[dict, dict]:
        """(fields for data/steer/results.json, fields for metrics/steer.json) of the headline sweep."""
        raise NotImplementedError

    def ablation_scores(self, handle: ModelHandle, toks: list[TokenizedText], labels: list[str], ctx: SteeringContext):
        """scores(hook=None, edit=None, idx=None) -> [len(idx)] (idx None: every text), for steering.ablation_study."""
        raise NotImplementedError

    def attribution_metric(self, ctx: SteeringContext, category: str):
        """(metric for steering.feature_attribution, its name)."""
        raise NotImplementedError


def _per_coef(coefs, values):
    return {str(c): v for c, v in zip(coefs, values)}


class CausalLM(ModelKind):
    name = "causal_lm"
    has_lm_head = True
    logit_lens = True
    fidelity_metric = "ce_loss_recovered"
    fidelity_keys = ("ce_clean", "ce_sae", "ce_zero", "ce_loss_recovered", "kl_sae", "kl_zero", "fidelity", "n_positions")
    fidelity_definition = ("CE loss recovered (CE_zero − CE_sae) / (CE_zero − CE_clean): 1 as good as clean, 0 as bad as "
                           "zero-ablating the hook; KL(p_clean ‖ p_sae) of the next-token distributions, mean over positions")
    steering = "generation"
    ablation_score = "mean log-probability of the actual next tokens"
    attribution_metric_name = "mean next-token log-prob"

    def fidelity(self, handle, sae, hook, toks):
        from .sae.metrics import ce_loss_recovered

        return ce_loss_recovered(handle, sae, hook, toks)

    def steering_context(self, handle, texts, cfg, max_tokens):
        tok = _tokenizer(handle, max_tokens)
        from .text_classifier import fit_classifier

        prompts = [torch.tensor([handle.tokenize(p, max_tokens).ids]) for p in cfg.prompts]
        return SteeringContext(tokenize=tok, held=[t for t in texts if t.split == "heldout"], prompts=prompts,
                               classifier=fit_classifier(texts))

    def sweep(self, handle, sae, feature, hook, max_act, coefs, ctx, category, mode, cfg):
        from .causal_lm import generation_study

        judge = None
        if ctx.classifier is not None and category in ctx.classifier.categories:
            judge = lambda texts: ctx.classifier.proba(texts, category)
        return generation_study(handle, sae, feature, hook, max_act, coefs, ctx.prompts, cfg.max_new_tokens, mode,
                                cfg.max_ppl_ratio, cfg.top_tokens, judge)

    def curve(self, result, category):
        return result.concept_score

    def headline(self, result, coefs, ctx, category, cfg):
        from .interventions import slope

        g = result
        res = dict(generations=g.rows, feature_activation=g.feature_activation, concept_score=g.concept_score,
                   classifier_prob=g.classifier_prob, boosted_mass=g.boosted_mass, perplexity=g.perplexity)
        if ctx.classifier is not None:
            res["classifier"] = {"fitted_on": ctx.classifier.fitted_on, "n_fit": ctx.classifier.n_fit,
                                 "accuracy_other_split": ctx.classifier.accuracy,
                                 "model": "TF-IDF char 1-4-grams + logistic regression (sae_workbench/text_classifier.py)"}
        met = dict(
            feature_activation=_per_coef(coefs, g.feature_activation), activation_slope=slope(coefs, g.feature_activation),
            concept_score=_per_coef(coefs, g.concept_score), classifier_prob=_per_coef(coefs, g.classifier_prob),
            boosted_mass=_per_coef(coefs, g.boosted_mass),
            perplexity=_per_coef(coefs, g.perplexity), unsteered_perplexity=g.unsteered["perplexity"],
        )
        return res, met

    def ablation_scores(self, handle, toks, labels, ctx):
        from .causal_lm import next_token_logprobs

        return lambda hook=None, edit=None, idx=None: next_token_logprobs(handle, _pick(toks, idx), hook, edit)

    def attribution_metric(self, ctx, category):
        from .causal_lm import logprob_metric

        return logprob_metric, self.attribution_metric_name


class Encoder(ModelKind):
    name = "encoder"
    has_lm_head = False
    logit_lens = False
    fidelity_metric = "embedding_cosine"
    fidelity_keys = ("cos_recon", "cos_zero", "fidelity")
    fidelity_definition = ("cosine of the pooled sentence embedding with the reconstruction spliced in at the hook, rescaled "
                           "so that the clean pass scores 1 and the zero-ablated hook 0")
    steering = "embedding_drift"
    ablation_score = "separation = cos(emb, own centroid) - max cos(emb, other centroids)"
    ablation_accuracy = True
    attribution_metric_name = "cos(pooled embedding, {category} centroid)"

    def fidelity(self, handle, sae, hook, toks):
        from .sae.metrics import embedding_fidelity

        return embedding_fidelity(handle, sae, hook, toks)

    def steering_context(self, handle, texts, cfg, max_tokens):
        from .encoder import category_centroids

        tok = _tokenizer(handle, max_tokens)
        train = {c: [tok(t) for t in texts if t.category == c and t.split == "train"] for c in CATEGORIES}
        return SteeringContext(tokenize=tok, held=[t for t in texts if t.split == "heldout"],
                               centroids=category_centroids(handle, train))

    def steered_texts(self, ctx, category, cfg):
        """Held-out texts of the other categories, the first n_texts."""
        return [t for t in ctx.held if t.category != category][: cfg.n_texts]

    def sweep(self, handle, sae, feature, hook, max_act, coefs, ctx, category, mode, cfg):
        from .encoder import steer_sentence_embeddings

        toks = [ctx.tokenize(t) for t in self.steered_texts(ctx, category, cfg)]
        return steer_sentence_embeddings(handle, sae, feature, hook, max_act, coefs, ctx.centroids, toks, category, mode, cfg.max_drift)

    def curve(self, result, category):
        return result.similarity[category]

    def headline(self, result, coefs, ctx, category, cfg):
        from .interventions import slope

        g = result
        target = g.similarity[category]
        res = dict(similarity=g.similarity, nearest_target_frac=g.nearest_target_frac, drift=g.drift,
                   feature_activation=g.feature_activation, steered_texts=[t.id for t in self.steered_texts(ctx, category, cfg)])
        met = dict(
            target_similarity=_per_coef(coefs, target), target_similarity_slope=slope(coefs, target),
            nearest_target_frac=_per_coef(coefs, g.nearest_target_frac), drift_at_max_coef=g.drift[-1],
        )
        return res, met

    def ablation_scores(self, handle, toks, labels, ctx):
        from .encoder import pooled_embeddings, separation

        return lambda hook=None, edit=None, idx=None: separation(pooled_embeddings(handle, _pick(toks, idx), hook, edit),
                                                                 ctx.centroids, _pick(labels, idx))

    def attribution_metric(self, ctx, category):
        from .encoder import embedding_metric

        return embedding_metric(ctx.centroids[category]), self.attribution_metric_name.format(category=category)


def _pick(items: list, idx) -> list:
    return items if idx is None else [items[i] for i in idx]


def _tokenizer(handle: ModelHandle, max_tokens: int):
    cache: dict[str, TokenizedText] = {}

    def tok(t):
        if t.text not in cache:
            cache[t.text] = handle.tokenize(t.text, max_tokens)
        return cache[t.text]

    return tok


KINDS: dict[str, ModelKind] = {"causal_lm": CausalLM(), "encoder": Encoder()}


def model_kind(profile: ProfileConfig | str) -> ModelKind:
    """The kind of a profile (or kind name)."""
    key = profile if isinstance(profile, str) else profile.kind
    if key not in KINDS:
        raise ValueError(f"unknown model kind {key!r}; known: {', '.join(KINDS)}")
    return KINDS[key]
