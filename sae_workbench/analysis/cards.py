"""Feature cards: a feature's top activating tokens in their context and the
histogram of its activations; for models with an LM head, the tokens its decoder
direction boosts and suppresses through the unembedding."""

from __future__ import annotations

import numpy as np

from ..features import FeatureTable


def feature_card(
    ft: FeatureTable,
    texts: list[dict],
    text_index: np.ndarray,
    position: np.ndarray,
    feature: int,
    top_n: int = 10,
    bins: int = 20,
    context_chars: int = 40,
) -> dict:
    """Top activating tokens with their context and a histogram of the feature's
    non-zero activations (bin edges from 0 to its max)."""
    m = ft.feature == feature
    rows, vals = ft.row[m], ft.value[m]
    order = np.lexsort((rows, -vals))[:top_n]
    top = []
    for o in order:
        r = int(rows[o])
        t = texts[int(text_index[r])]
        a, b = t["offsets"][int(position[r])]
        top.append(
            {
                "text": t["id"],
                "category": t["category"],
                "token": t["text"][a:b],
                "left": t["text"][max(0, a - context_chars) : a],
                "right": t["text"][b : b + context_chars],
                "value": float(vals[o]),
            }
        )
    hi = float(vals.max()) if len(vals) else 1.0
    counts, edges = np.histogram(vals, bins=bins, range=(0.0, hi))
    return {
        "feature": int(feature),
        "n_active": int(len(vals)),
        "top_tokens": top,
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def logit_effects(direction: np.ndarray, W_U: np.ndarray, vocab: list[str], top_n: int = 10) -> dict:
    """Tokens a decoder direction boosts and suppresses most through the
    unembedding: direction @ W_U, highest and lowest (models with an LM head only)."""
    eff = direction @ W_U
    up, down = np.argsort(-eff, kind="stable")[:top_n], np.argsort(eff, kind="stable")[:top_n]
    return {
        "boosted": [{"token": vocab[i], "logit": float(eff[i])} for i in up],
        "suppressed": [{"token": vocab[i], "logit": float(eff[i])} for i in down],
    }
