"""Per-hook feature statistics over the labelled evaluation texts (analyze_hook).

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
                      its score is then re-measured on the held-out texts,
                      with a bootstrap interval and a permutation p-value
                      (stats.py).
    co-activation     Jaccard / PMI of the token sets two features fire on
    coverage(k)       fraction of tokens on which one of the k most frequent features fires
"""

from __future__ import annotations

import numpy as np

from ..cli import rounded
from ..config import CATEGORIES
from ..features import FeatureTable
from .cards import feature_card, logit_effects
from .results import HookAnalysis
from .stats import specialist_scores, specialist_statistics


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


def analyze_hook(
    ft: FeatureTable,
    raw_acts: np.ndarray,
    table,
    cfg,
    rng: np.random.Generator,
    unembed: tuple[np.ndarray, np.ndarray, list[str]] | None = None,
) -> HookAnalysis:
    """All per-hook analyses of the labelled texts.

    table: the activation set's TokenTable (texts, text_index, position);
    cfg: AnalysisConfig; unembed: (W_dec [d_sae, d], W_U [d, vocab], vocab) for
    models with an LM head, else None."""
    texts, text_index = table.texts, table.text_index
    n_texts = len(texts)
    stats = feature_stats(ft)
    sel = selectivity(stats, cfg.min_active_tokens)
    strength = ft.per_text_max(text_index, n_texts)
    labels = [t["category"] for t in texts]
    splits = [t["split"] for t in texts]
    registers = [t.get("register", "") for t in texts]
    specialists, count = specialist_statistics(
        strength, labels, splits, rng, cfg.n_bootstrap, cfg.n_permutations, cfg.alpha,
        registers=registers if any(registers) else None,
    )
    for v in specialists.values():
        v.max_act = float(stats["max_act"][v.feature])

    l0_tok = np.bincount(ft.row, minlength=ft.n_rows)
    l0_text = (strength > 0).sum(1)
    rank = {
        "strongest": top_features(stats["max_act"], cfg.top_k),
        "most_frequent": top_features(stats["frequency"], cfg.top_k),
        "most_selective": top_features(sel, cfg.top_k),
        "composite": top_features(stats["composite"], cfg.top_k),
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

    # score_matrix[c][j]: held-out score for category c of category j's specialist
    ho = np.asarray(splits) == "heldout"
    ho_labels = [lab for lab, s in zip(labels, splits) if s == "heldout"]
    spec_feats = [specialists[c].feature for c in CATEGORIES]
    score_matrix = {c: specialist_scores(strength[ho][:, spec_feats], ho_labels, c).tolist() for c in CATEGORIES}

    card_feats = list(dict.fromkeys(spec_feats + rank["strongest"][: cfg.card_strongest]))
    cards = {}
    for f in card_feats:
        card = feature_card(ft, texts, text_index, table.position, f, cfg.card_top_tokens, cfg.card_bins)
        if unembed is not None:
            W_dec, W_U, vocab = unembed
            card["logit_effects"] = logit_effects(W_dec[f], W_U, vocab, cfg.card_top_tokens)
        cards[str(f)] = card
    pairs = coactivation(ft, cfg.coact_min_tokens, cfg.top_k)
    summary = {
        "n_tokens": int(ft.n_rows),
        "n_texts": n_texts,
        "d_sae": int(ft.d_sae),
        "frac_nonzero_raw": rounded((np.abs(raw_acts) > 1e-6).mean()),
        "frac_nonzero_sae": rounded(len(ft.value) / max(1, ft.n_rows * ft.d_sae)),
        "l0_per_token": rounded(l0_tok.mean()),
        "l0_per_text": rounded(l0_text.mean()),
        "alive_features": int((stats["count"] > 0).sum()),
        "top_strongest_act": rounded(stats["max_act"].max()),
        "top_frequency": rounded(stats["frequency"].max()),
        "top_coactivation_jaccard": rounded(pairs[0]["jaccard"]) if pairs else 0.0,
        "coverage_top_frequent": {k: rounded(v) for k, v in coverage(stats, ft).items()},
    }
    return HookAnalysis(
        rankings={k: [describe(f) for f in v] for k, v in rank.items()},
        specialists=specialists,
        count=count,
        score_matrix=score_matrix,
        coactivation=pairs,
        cards=cards,
        neuronpedia=ft.neuronpedia,
        summary=summary,
    )


# ---------------------------------------------------------------- co-activation


def coactivation(ft: FeatureTable, min_count: int, top_n: int) -> list[dict]:
    """Top feature pairs by Jaccard similarity of the token sets they fire on.

    jaccard(i, j) = |T_i ∩ T_j| / |T_i ∪ T_j|,  pmi(i, j) = log(n |T_i ∩ T_j| / (|T_i| |T_j|)),
    over the n kept tokens; pairs co-firing on fewer than min_count tokens are ignored."""
    from scipy import sparse

    B = sparse.csr_matrix(
        (np.ones(len(ft.feature), dtype=np.float32), (ft.row, ft.feature)), shape=(ft.n_rows, ft.d_sae)
    )
    B.data[:] = 1.0  # duplicate (row, feature) entries count once
    count = np.asarray(B.sum(0)).ravel()
    C = sparse.triu(B.T @ B, k=1).tocoo()
    keep = C.data >= min_count
    i, j, c = C.row[keep], C.col[keep], C.data[keep].astype(np.float64)
    jac = c / (count[i] + count[j] - c)
    order = np.lexsort((j, i, -jac))[:top_n]
    n = max(ft.n_rows, 1)
    return [
        {
            "a": int(i[o]),
            "b": int(j[o]),
            "jaccard": float(jac[o]),
            "pmi": float(np.log(n * c[o] / (count[i[o]] * count[j[o]]))),
            "co_tokens": int(c[o]),
        }
        for o in order
    ]


# ---------------------------------------------------------------- coverage


def coverage(stats: dict[str, np.ndarray], ft: FeatureTable, ks=(1, 5, 10, 20)) -> dict[str, float]:
    """Fraction of kept tokens on which at least one of the k most frequent features fires."""
    order = top_features(stats["frequency"], max(ks))
    out = {}
    for k in ks:
        hit = np.zeros(ft.n_rows, dtype=bool)
        hit[ft.row[np.isin(ft.feature, order[:k])]] = True
        out[str(k)] = float(hit.mean()) if ft.n_rows else 0.0
    return out


# ---------------------------------------------------------------- concept search


def concept_search(strength_examples: np.ndarray, strength_rest: np.ndarray, top_n: int = 10) -> list[dict]:
    """Rank features for example texts against reference texts, strength-weighted.

    score(f) = mean over examples of s(t, f) - mean over the rest of s(t, f), where
    s(t, f) is f's strongest activation in text t (the specialist score with the
    examples as the category); also the fraction of examples where f fires."""
    if len(strength_examples) == 0 or len(strength_rest) == 0:
        raise ValueError("concept search needs at least one example text and one reference text")
    score = strength_examples.mean(0) - strength_rest.mean(0)
    return [
        {
            "feature": f,
            "score": float(score[f]),
            "mean_in_examples": float(strength_examples[:, f].mean()),
            "mean_in_rest": float(strength_rest[:, f].mean()),
            "fires_in_examples": float((strength_examples[:, f] > 0).mean()),
        }
        for f in top_features(score, top_n)
    ]
