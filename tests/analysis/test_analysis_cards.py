"""analysis/cards.py on a hand-built feature table: feature cards, logit effects (and coverage)."""

import numpy as np
import pytest

from sae_workbench.analysis.cards import feature_card, logit_effects
from sae_workbench.analysis.hook import coverage, feature_stats
from sae_workbench.config import CATEGORIES

from helpers import _planted_table


def test_feature_card_top_tokens_context_and_histogram():
    ft, ti, texts, pos = _planted_table()
    f = 10 + CATEGORIES.index("math")
    card = feature_card(ft, texts, ti, pos, f, top_n=4, bins=5, context_chars=6)
    vals = [t["value"] for t in card["top_tokens"]]
    assert vals == sorted(vals, reverse=True) and vals[0] == pytest.approx(ft.value[ft.feature == f].max())
    assert card["n_active"] == 30 and sum(card["histogram"]["counts"]) == 30
    top = card["top_tokens"][0]
    assert top["category"] == "math" and top["token"].startswith("w")
    t = next(x for x in texts if x["id"] == top["text"])
    assert (top["left"] + top["token"] + top["right"]) in t["text"]


def test_logit_effects_and_coverage():
    rng = np.random.default_rng(0)
    W_U = rng.normal(size=(8, 30))
    vocab = [f"t{i}" for i in range(30)]
    eff = logit_effects(W_U[:, 7] / np.linalg.norm(W_U[:, 7]), W_U, vocab, top_n=3)
    assert eff["boosted"][0]["token"] in {vocab[i] for i in np.argsort(-(W_U[:, 7] @ W_U))[:1]}
    assert [x["logit"] for x in eff["suppressed"]] == sorted(x["logit"] for x in eff["suppressed"])
    ft, *_ = _planted_table()
    cov = coverage(feature_stats(ft), ft, ks=(1, 5))
    assert cov["1"] == 1.0  # feature 0 fires on every token
