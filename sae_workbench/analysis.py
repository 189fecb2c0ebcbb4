"""Per-hook feature statistics over the labelled evaluation texts.

Definitions (n = kept tokens, i.e. special tokens excluded):
    frequency(f)      fraction of tokens on which f > 0
    max_act(f)        strongest activation of f on any token
    mean_active(f)    mean activation over the tokens where f fires
    composite(f)      frequency * mean_active  (= mean activation over all tokens)
    selectivity(f)    max_act / mean activation over all tokens, for features
                      firing on >= min_active_tokens tokens: high when a feature
                      fires rarely but strongly
    text strength     s(t, f) = max activation of f over the tokens of text t
    specialist score  score(f, c) = mean_{t in c} s(t, f) - mean_{t not in c} s(t, f)
                      (the seed's "strong inside the category minus outside").
                      The specialist of c is argmax_f over the *train* texts;
                      its score is then re-measured on the held-out texts.
"""

from __future__ import annotations

import numpy as np

from .config import CATEGORIES
from .features import FeatureTable


def feature_stats(ft: FeatureTable) -> dict[str, np.ndarray]:
    n = max(ft.n_rows, 1)
    count = np.bincount(ft.feature, minlength=ft.d_sae).astype(np.float64)
    total = np.bincount(ft.feature, weights=ft.value, minlength=ft.d_sae)
    max_act = np.zeros(ft.d_sae, dtype=np.float64)
    np.maximum.at(max_act, ft.feature, ft.value)
    mean_active = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    mean_all = total / n
    return {
        "count": count,
        "frequency": count / n,
        "max_act": max_act,
        "mean_active": mean_active,
        "composite": (count / n) * mean_active,
        "mean_all": mean_all,
    }


def selectivity(stats: dict[str, np.ndarray], min_active_tokens: int) -> np.ndarray:
    ok = stats["count"] >= min_active_tokens
    out = np.full_like(stats["max_act"], -np.inf)
    out[ok] = stats["max_act"][ok] / stats["mean_all"][ok]
    return out


def top_features(score: np.ndarray, k: int) -> list[int]:
    """Indices of the k highest finite scores, ties broken by lower index (deterministic)."""
    valid = np.flatnonzero(np.isfinite(score) & (score > 0))
    order = valid[np.lexsort((valid, -score[valid]))]
    return [int(i) for i in order[:k]]


def specialist_scores(strength: np.ndarray, labels: list[str], category: str) -> np.ndarray:
    """score(f, c) for every feature: [d_sae]. `strength` is [n_texts, d_sae]."""
    inside = np.asarray([lab == category for lab in labels])
    if inside.all() or not inside.any():
        raise ValueError(f"category {category!r} needs texts both inside and outside it")
    return strength[inside].mean(0) - strength[~inside].mean(0)


def find_specialists(
    strength: np.ndarray, labels: list[str], splits: list[str], categories=CATEGORIES
) -> dict[str, dict]:
    """Per category: the feature with the best train-split specialist score,
    and that feature's score on the held-out split."""
    splits_arr = np.asarray(splits)
    tr, ho = splits_arr == "train", splits_arr == "heldout"
    lab = np.asarray(labels)
    out = {}
    for c in categories:
        s_tr = specialist_scores(strength[tr], list(lab[tr]), c)
        f = int(np.argmax(s_tr))
        s_ho = specialist_scores(strength[ho][:, [f]], list(lab[ho]), c)[0] if ho.any() else float("nan")
        out[c] = {
            "feature": f,
            "train_score": float(s_tr[f]),
            "heldout_score": float(s_ho),
            "mean_in_heldout": float(strength[ho & (lab == c), f].mean()) if (ho & (lab == c)).any() else float("nan"),
        }
    return out


def analyze_hook(
    ft: FeatureTable,
    raw_acts: np.ndarray,
    text_index: np.ndarray,
    texts: list[dict],
    top_k: int,
    min_active_tokens: int,
) -> tuple[dict, dict]:
    """All per-hook analyses. Returns (metrics: flat-ish numbers for DVC,
    details: rankings and specialists for figures and the report)."""
    n_texts = len(texts)
    stats = feature_stats(ft)
    sel = selectivity(stats, min_active_tokens)
    strength = ft.per_text_max(text_index, n_texts)
    labels = [t["category"] for t in texts]
    splits = [t["split"] for t in texts]
    specialists = find_specialists(strength, labels, splits)
    for v in specialists.values():
        v["max_act"] = float(stats["max_act"][v["feature"]])

    l0_tok = np.bincount(ft.row, minlength=ft.n_rows)
    l0_text = (strength > 0).sum(1)
    rank = {
        "strongest": top_features(stats["max_act"], top_k),
        "most_frequent": top_features(stats["frequency"], top_k),
        "most_selective": top_features(sel, top_k),
        "composite": top_features(stats["composite"], top_k),
    }

    def describe(f: int) -> dict:
        m = ft.feature == f
        best = int(np.argmax(np.where(m, ft.value, -1)))
        r = int(ft.row[best])
        return {
            "feature": f,
            "max_act": float(stats["max_act"][f]),
            "frequency": float(stats["frequency"][f]),
            "mean_active": float(stats["mean_active"][f]),
            "composite": float(stats["composite"][f]),
            "selectivity": float(sel[f]) if np.isfinite(sel[f]) else None,
            "top_row": r,
            "top_text": texts[int(text_index[r])]["id"],
        }

    # score_matrix[c][j]: train-split score for category c of category j's specialist
    tr = np.asarray(splits) == "train"
    tr_labels = [lab for lab, s in zip(labels, splits) if s == "train"]
    spec_feats = [specialists[c]["feature"] for c in CATEGORIES]
    score_matrix = {c: specialist_scores(strength[tr][:, spec_feats], tr_labels, c).tolist() for c in CATEGORIES}
    details = {
        "rankings": {k: [describe(f) for f in v] for k, v in rank.items()},
        "specialists": specialists,
        "specialist_score_matrix": score_matrix,
        "neuronpedia": ft.neuronpedia,
    }
    n_pos = sum(v["heldout_score"] > 0 for v in specialists.values())
    metrics = {
        "n_tokens": int(ft.n_rows),
        "n_texts": n_texts,
        "d_sae": int(ft.d_sae),
        "frac_nonzero_raw": float((np.abs(raw_acts) > 1e-6).mean()),
        "frac_nonzero_sae": float(len(ft.value) / max(1, ft.n_rows * ft.d_sae)),
        "l0_per_token": float(l0_tok.mean()),
        "l0_per_text": float(l0_text.mean()),
        "alive_features": int((stats["count"] > 0).sum()),
        "top_strongest_act": float(stats["max_act"].max()),
        "specialists_heldout_positive": int(n_pos),
        "specialists": {
            c: {"feature": v["feature"], "train_score": round(v["train_score"], 6), "heldout_score": round(v["heldout_score"], 6)}
            for c, v in specialists.items()
        },
    }
    return metrics, details
