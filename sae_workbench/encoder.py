"""What a sentence encoder (kind 'encoder', e.g. all-MiniLM-L6-v2) measures:
it has no LM head, so its output is the pooled sentence embedding.

Steering (edits as in `interventions`; m the feature's maximum observed
activation, coefficients c multiples of m): held-out texts of other categories
are steered and their pooled sentence embeddings compared with the category
centroids (the normalised mean embedding of each category's unsteered train texts):
    similarity[cat]      mean cos(steered embedding, centroid of cat)
    nearest_target_frac  fraction of steered texts whose nearest centroid is the target
    drift                mean 1 - cos(steered, unsteered embedding): the fluency analogue
    feature_activation   mean over kept tokens of f_i(x'), the SAE re-reading the edit
    best coefficient     the highest target similarity among coefficients with
                         drift <= max_drift (ties: the smaller |c|)

Ablation score per text: separation = cos(emb, own centroid) - max over other
categories of cos(emb, centroid) (> 0 exactly when the nearest centroid is the
text's own category). Attribution metric: cos(pooled embedding, own-category centroid).
Fidelity: `sae.metrics.embedding_fidelity`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .activations import length_batches, pad_batch
from .interventions import Edit, best_coefficient, edit_hook, encode_feature, feature_edit, hook_activations, keep_mask, masked_mean
from .models import ModelHandle, TokenizedText


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sentence-transformers pooling: mean over attended tokens, then L2-normalised."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(pooled, dim=-1)


@torch.no_grad()
def pooled_embeddings(
    handle: ModelHandle, toks: list[TokenizedText], hook: str | None = None, edit: Edit | None = None, batch_size: int = 32
) -> torch.Tensor:
    """[n_texts, d_model] pooled final-layer embeddings, optionally with `edit`
    applied to the residual stream at `hook` (on kept tokens)."""
    out = torch.zeros(len(toks), handle.d_model)
    for idx in length_batches(toks, batch_size):
        chunk = [toks[i] for i in idx]
        ids, mask = pad_batch([t.ids for t in chunk], handle.pad_id)
        cap: dict[str, torch.Tensor] = {}

        def grab(x, hook=None, cap=cap):
            cap["h"] = x.detach()
            return x

        hooks = [(handle.final_hook, grab)]
        if edit is not None:
            hooks.insert(0, (hook, edit_hook(edit, keep_mask(chunk, ids.shape[1]))))
        handle.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks)
        out[idx] = mean_pool(cap["h"].float().cpu(), mask)
    return out


@torch.no_grad()
def category_centroids(handle: ModelHandle, toks: dict[str, list[TokenizedText]]) -> dict[str, torch.Tensor]:
    """{category: normalised mean of its texts' (unsteered) pooled embeddings}."""
    return {c: torch.nn.functional.normalize(pooled_embeddings(handle, t).mean(0), dim=0) for c, t in toks.items()}


# ---------------------------------------------------------------- steering


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


# ---------------------------------------------------------------- ablation and attribution


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
