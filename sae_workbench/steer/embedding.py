"""Steering a sentence encoder (kind 'encoder'): embedding drift towards a
category. Held-out texts of other categories are steered (edits as in
`edits`; m the feature's maximum observed activation, coefficients c
multiples of m) and their pooled sentence embeddings compared with the
category centroids (the normalised mean embedding of each category's
unsteered train texts):
    similarity[cat]      mean cos(steered embedding, centroid of cat)
    nearest_target_frac  fraction of steered texts whose nearest centroid is the target
    drift                mean 1 - cos(steered, unsteered embedding): the fluency analogue
    feature_activation   mean over kept tokens of f_i(x'), the SAE re-reading the edit
    best coefficient     the highest target similarity among coefficients with
                         drift <= max_drift (ties: the smaller |c|)

Ablation score per text: separation = cos(emb, own centroid) - max over other
categories of cos(emb, centroid) (> 0 exactly when the nearest centroid is the
text's own category). Attribution metric: cos(pooled embedding, own-category centroid).
Fidelity: `kinds.encoder.embedding_fidelity`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import CATEGORIES
from ..edits import encode_feature, feature_edit, hook_activations, masked_mean
from ..kinds.encoder import mean_pool, pooled_embeddings
from ..models import ModelHandle, TokenizedText
from .sweep import Steering, SteeringContext, best_coefficient, per_coef, pick, slope, tokenizer


@torch.no_grad()
def category_centroids(handle: ModelHandle, toks: dict[str, list[TokenizedText]]) -> dict[str, torch.Tensor]:
    """{category: normalised mean of its texts' (unsteered) pooled embeddings}."""
    return {c: torch.nn.functional.normalize(pooled_embeddings(handle, t).mean(0), dim=0) for c, t in toks.items()}


@dataclass
class SteerResult:
    mode: str
    coefficients: list[float]
    similarity: dict[str, list[float]]
    """category -> mean cosine similarity of the steered texts to that category's centroid, per coefficient."""
    nearest_target_frac: list[float]
    """Per coefficient: fraction of steered texts whose nearest centroid is the target category."""
    drift: list[float]
    """Per coefficient: mean 1 - cos(steered, unsteered) embedding (how far the meaning moved)."""
    feature_activation: list[float]
    """Per coefficient: mean over kept tokens of the feature's activation re-encoded after the edit."""
    unsteered: dict = field(default_factory=dict)
    """The same measures without any edit (in clamp mode coefficient 0 is the ablation, not this)."""
    best_coefficient: float | None = None
    best_rule: str = ""


@torch.no_grad()
def steer_sentence_embeddings(
    handle: ModelHandle,
    sae,
    feature: int,
    hook: str,
    max_act: float,
    coefficients: list[float],
    centroids: dict[str, torch.Tensor],
    steered_toks: list[TokenizedText],
    target: str,
    mode: str = "add",
    max_drift: float = 0.5,
) -> SteerResult:
    """Encoder steering study (module docstring): similarity to each centroid,
    nearest-target fraction, drift and re-encoded activation per coefficient."""
    cats = list(centroids)
    C = torch.stack([centroids[c] for c in cats])
    base = pooled_embeddings(handle, steered_toks)
    x, keep = hook_activations(handle, steered_toks, hook)
    sim = {c: [] for c in cats}
    nearest, drift, acts = [], [], []

    def measure(emb):
        s = emb @ C.T  # [n, n_cats]
        return s.mean(0).tolist(), float((s.argmax(1) == cats.index(target)).float().mean())

    for coef in coefficients:
        edit = feature_edit(sae, feature, mode, coef * max_act)
        emb = base if (mode == "add" and coef == 0) else pooled_embeddings(handle, steered_toks, hook, edit)
        s, near = measure(emb)
        for c, v in zip(cats, s):
            sim[c].append(v)
        nearest.append(near)
        drift.append(float(1 - (emb * base).sum(-1).mean()))
        acts.append(masked_mean(encode_feature(sae, edit(x, keep), feature), keep))
    s, near = measure(base)
    unsteered = {"similarity": dict(zip(cats, s)), "nearest_target_frac": near,
                 "feature_activation": masked_mean(encode_feature(sae, x, feature), keep)}
    rule = f"highest target similarity among coefficients with drift <= {max_drift} (ties: smaller |coefficient|)"
    best = best_coefficient(list(coefficients), sim[target], drift, max_drift)
    return SteerResult(mode, list(coefficients), sim, nearest, drift, acts, unsteered, best, rule)


def separation(emb: torch.Tensor, centroids: dict[str, torch.Tensor], labels: list[str]) -> torch.Tensor:
    """[n] cos(emb, own centroid) - max over the other categories of cos(emb, centroid)."""
    cats = list(centroids)
    s = emb @ torch.stack([centroids[c] for c in cats]).T
    own = torch.tensor([cats.index(lab) for lab in labels])
    mine = s.gather(1, own[:, None])[:, 0]
    other = s.scatter(1, own[:, None], float("-inf")).max(1).values
    return mine - other


def embedding_metric(centroid: torch.Tensor):
    """cos(pooled sentence embedding, centroid), differentiable: the attribution metric."""

    def metric(handle, ids, mask, hooks):
        cap = {}

        def grab(x, hook=None):
            cap["h"] = x
            return x

        handle.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[*hooks, (handle.final_hook, grab)])
        return (mean_pool(cap["h"].float(), mask)[0] * centroid).sum()

    return metric


class EmbeddingSteering(Steering):
    """Encoders: held-out texts of the other categories steered, their pooled
    embeddings compared with the category centroids."""

    name = "embedding_drift"
    result_type = SteerResult
    ablation_score = "separation = cos(emb, own centroid) - max cos(emb, other centroids)"
    ablation_accuracy = True
    attribution_metric_name = "cos(pooled embedding, {category} centroid)"

    def steering_context(self, handle, texts, cfg, max_tokens):
        tok = tokenizer(handle, max_tokens)
        train = {c: [tok(t) for t in texts if t.category == c and t.split == "train"] for c in CATEGORIES}
        return SteeringContext(tokenize=tok, held=[t for t in texts if t.split == "heldout"],
                               centroids=category_centroids(handle, train))

    def steered_texts(self, ctx, category, cfg):
        """Held-out texts of the other categories, the first n_texts."""
        return [t for t in ctx.held if t.category != category][: cfg.n_texts]

    def sweep(self, handle, sae, feature, hook, max_act, coefs, ctx, category, mode, cfg):
        toks = [ctx.tokenize(t) for t in self.steered_texts(ctx, category, cfg)]
        return steer_sentence_embeddings(handle, sae, feature, hook, max_act, coefs, ctx.centroids, toks, category, mode, cfg.max_drift)

    def curve(self, result, category):
        return result.similarity[category]

    def headline(self, result, coefs, ctx, category, cfg):
        g = result
        target = g.similarity[category]
        res = dict(similarity=g.similarity, nearest_target_frac=g.nearest_target_frac, drift=g.drift,
                   feature_activation=g.feature_activation, steered_texts=[t.id for t in self.steered_texts(ctx, category, cfg)])
        met = dict(
            target_similarity=per_coef(coefs, target), target_similarity_slope=slope(coefs, target),
            nearest_target_frac=per_coef(coefs, g.nearest_target_frac), drift_at_max_coef=g.drift[-1],
        )
        return res, met

    def ablation_scores(self, handle, toks, labels, ctx):
        return lambda hook=None, edit=None, idx=None: separation(pooled_embeddings(handle, pick(toks, idx), hook, edit),
                                                                 ctx.centroids, pick(labels, idx))

    def attribution_metric(self, ctx, category):
        return embedding_metric(ctx.centroids[category]), self.attribution_metric_name.format(category=category)
