"""analysis/hook.py on hand-built feature tables with known answers: feature
statistics and rankings, the per-hook analysis, co-activation, concept search."""

import numpy as np
import pytest

from sae_workbench.activations import TokenTable
from sae_workbench.analysis.hook import analyze_hook, coactivation, concept_search, feature_stats, top_features
from sae_workbench.config import CATEGORIES, AnalysisConfig
from sae_workbench.features import FeatureTable

from helpers import _planted_table


def test_rankings_and_composite_identity():
    ft, ti, texts, pos = _planted_table()
    st = feature_stats(ft)
    assert top_features(st["frequency"], 1) == [0]  # fires on every token
    np.testing.assert_allclose(st["composite"], st["mean_all"], rtol=1e-9)
    assert st["frequency"][0] == 1.0 and st["max_act"][0] == pytest.approx(0.5)
    raw = np.random.default_rng(0).normal(size=(ft.n_rows, 8))
    cfg = AnalysisConfig(top_k=5, n_bootstrap=200, n_permutations=200)
    result = analyze_hook(ft, raw, TokenTable(texts, ti, pos), cfg, np.random.default_rng(0))
    metrics, details = result.metrics_json(), result.to_json()
    assert metrics["specialists_heldout_positive"] == 7 and metrics["specialists_significant"] == 7
    assert metrics["l0_per_token"] == pytest.approx(3.0, abs=0.2)  # duplicates merge rarely
    assert details["rankings"]["strongest"][0]["feature"] in range(10, 17)
    assert 0 not in [r["feature"] for r in details["rankings"]["most_selective"]]  # weak and everywhere
    m = details["specialist_score_matrix"]
    for k, c in enumerate(CATEGORIES):
        assert int(np.argmax(m[c])) == k  # each category's best column is its own specialist


def test_top_features_deterministic_ties():
    assert top_features(np.array([1.0, 3.0, 3.0, 0.0, -np.inf]), 3) == [1, 2, 0]


def test_coactivation_finds_planted_pair():
    ft, ti, texts, _ = _planted_table()
    # features 10 (python) and 0 co-fire on python tokens only; plant 50 = copy of 12 (math)
    m = ft.feature == 12
    ft2 = FeatureTable(
        np.concatenate([ft.row, ft.row[m]]), np.concatenate([ft.feature, np.full(m.sum(), 50, np.int32)]),
        np.concatenate([ft.value, ft.value[m]]), ft.n_rows, 60,
    )
    pairs = coactivation(ft2, min_count=3, top_n=5)
    assert (pairs[0]["a"], pairs[0]["b"]) == (12, 50) and pairs[0]["jaccard"] == 1.0
    assert pairs[0]["co_tokens"] == 30
    assert pairs[0]["pmi"] == pytest.approx(np.log(ft.n_rows / 30))
    assert all(p["jaccard"] <= pairs[0]["jaccard"] for p in pairs)


def test_concept_search_ranks_the_examples_feature_first():
    ft, ti, texts, _ = _planted_table()
    strength = ft.per_text_max(ti, len(texts))
    ex = np.array([t["category"] == "urls" for t in texts])
    ranked = concept_search(strength[ex], strength[~ex], top_n=3)
    assert ranked[0]["feature"] == 10 + CATEGORIES.index("urls") and ranked[0]["fires_in_examples"] == 1.0
    assert ranked[0]["score"] >= ranked[1]["score"] >= ranked[2]["score"]
    with pytest.raises(ValueError):
        concept_search(strength[:0], strength)
