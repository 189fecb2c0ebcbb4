"""Does a feature cause what it detects? Ablation, for every model kind
(the per-text score is the kind's steering's: `Steering.ablation_scores`).

Edits (`edits`): feature i of the SAE at a hook reads f_i(x) and writes
along d_i = W_dec[i]; ablating it is x' = x - f_i(x) d_i on kept tokens.

Ablation (all kept tokens of the scored texts), per text score s (the kind's:
encoder separation to the category centroids, causal-LM mean log-probability
of the actual next tokens):
    drop = mean over the category's held-out texts of s(clean) - s(ablated);
    off_target_drop: the same over the other categories' held-out texts.

"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..edits import feature_edit

Scores = Callable[..., torch.Tensor]
"""scores(hook=None, edit=None, idx=None) -> per-text ablation score of texts idx (None: all), `edit` applied at `hook`."""


def matched_control(freq: np.ndarray, feature: int, exclude: set[int], rng: np.random.Generator, n_candidates: int = 5) -> int:
    """A random feature firing about as often as `feature`: drawn with `rng` among the
    n_candidates alive (freq > 0) features outside `exclude` whose firing frequency is
    closest to freq[feature] (|difference|; ties by feature index)."""
    cand = np.flatnonzero(freq > 0)
    cand = cand[~np.isin(cand, sorted(exclude))]
    if not len(cand):
        raise ValueError("no alive non-specialist feature is left to serve as an ablation control")
    near = cand[np.lexsort((cand, np.abs(freq[cand] - freq[feature])))][:n_candidates]
    return int(rng.choice(near))


def ablation_roles(specialists: dict[str, int], freq: np.ndarray, rng: np.random.Generator, n_candidates: int = 5) -> dict[str, dict[str, int]]:
    """{category: {"specialist": f, "control": g}}: each specialist with its own
    frequency-matched control (matched_control), no feature used twice."""
    exclude, roles = set(specialists.values()), {}
    for c, f in specialists.items():
        roles[c] = {"specialist": f, "control": matched_control(freq, f, exclude, rng, n_candidates)}
        exclude.add(roles[c]["control"])
    return roles


OFF_TARGET_MAX = 2
"""Off-target texts per other category an ablation is scored on, at most."""


def ablation_subsets(labels: list[str], per_category: int) -> dict[str, list[int]]:
    """{category: indices of texts a category's ablations are scored on}: its first
    per_category texts (own) and the first min(OFF_TARGET_MAX, max(1, per_category // 4))
    of each other category (off-target), in list order; per_category 0: every text."""
    first: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        first.setdefault(lab, []).append(i)
    if per_category <= 0:
        return {c: list(range(len(labels))) for c in first}
    off = min(OFF_TARGET_MAX, max(1, per_category // 4))
    return {c: sorted(first[c][:per_category] + [i for o in first if o != c for i in first[o][:off]]) for c in first}


@torch.no_grad()
def ablation_study(
    scores: Scores, sae, hook: str, features: dict[str, dict[str, int]], labels: list[str], accuracy: bool = False,
    subsets: dict[str, list[int]] | None = None,
) -> dict[str, dict[str, dict]]:
    """Zero-ablate each feature (module docstring).

    scores: the kind's per-text score (`ModelKind.ablation_scores`);
    features: {category: {role: feature}} (e.g. specialist and control);
    subsets: {category: text indices} its ablations are scored on (`ablation_subsets`; None: all texts).
    Returns {category: {role: {feature, drop, off_target_drop, n_texts, n_off_target, drops[, accuracy_clean, accuracy_ablated]}}}
    (drops: per own text, in subset order, the same texts for every role: paired);
    accuracy (encoders): fraction of the category's texts whose score is > 0 (nearest centroid their own)."""
    everything = list(range(len(labels)))
    used = sorted({i for c in features for i in (subsets or {}).get(c, everything)})
    clean_all = torch.zeros(len(labels))
    clean_all[used] = scores(idx=used)
    out: dict[str, dict[str, dict]] = {}
    for cat, roles in tqdm(features.items(), desc="ablation", unit="category"):
        idx = (subsets or {}).get(cat, everything)
        own = torch.tensor([labels[i] == cat for i in idx])
        if not own.any():
            raise ValueError(f"no held-out texts of category {cat!r} to ablate on")
        clean = clean_all[idx]
        out[cat] = {}
        for role, f in roles.items():
            s = scores(hook, feature_edit(sae, f, "clamp", 0.0), idx)
            d = clean - s
            r = {"feature": int(f), "drop": float(d[own].mean()), "off_target_drop": float(d[~own].mean()) if (~own).any() else 0.0,
                 "n_texts": int(own.sum()), "n_off_target": int((~own).sum()), "drops": [float(v) for v in d[own]]}
            if accuracy:
                r.update(accuracy_clean=float((clean[own] > 0).float().mean()), accuracy_ablated=float((s[own] > 0).float().mean()))
            out[cat][role] = r
    return out
