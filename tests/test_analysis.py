"""Analyses on hand-built feature tables with known answers."""

import numpy as np
import pytest

from sae_workbench.analysis import analyze_hook, feature_stats, find_specialists, specialist_scores, top_features
from sae_workbench.config import CATEGORIES
from sae_workbench.features import FeatureTable


def test_specialist_score_known_answer():
    # 4 texts x 3 features; texts 0,1 are 'python'
    strength = np.array([[5.0, 1.0, 0.0], [3.0, 1.0, 2.0], [1.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    labels = ["python", "python", "math", "math"]
    s = specialist_scores(strength, labels, "python")
    np.testing.assert_allclose(s, [(5 + 3) / 2 - (1 + 0) / 2, 0.0, 1.0 - 2.0])
    np.testing.assert_allclose(specialist_scores(strength, labels, "math"), -s)
    with pytest.raises(ValueError):
        specialist_scores(strength, ["python"] * 4, "python")


def _planted_table(seed=0):
    """7 categories x 6 texts x 5 tokens, 40 features. Feature 10+k fires on every
    token of category k's texts; feature 0 fires everywhere weakly; others at random."""
    rng = np.random.default_rng(seed)
    texts, rows, feats, vals, text_index = [], [], [], [], []
    r = 0
    for k, c in enumerate(CATEGORIES):
        for j in range(6):
            texts.append({"id": f"{c}-{j}", "category": c, "split": "heldout" if j % 3 == 2 else "train"})
            for _ in range(5):
                for f, v in [(0, 0.5), (10 + k, 4.0 + rng.random())] + [(int(rng.integers(20, 40)), float(rng.random()))]:
                    rows.append(r), feats.append(f), vals.append(v)
                text_index.append(len(texts) - 1)
                r += 1
    ft = FeatureTable(np.array(rows, np.int32), np.array(feats, np.int32), np.array(vals, np.float32), r, 40)
    return ft, np.array(text_index, np.int32), texts


def test_planted_specialists_are_found_and_hold_out():
    ft, ti, texts = _planted_table()
    strength = ft.per_text_max(ti, len(texts))
    spec = find_specialists(strength, [t["category"] for t in texts], [t["split"] for t in texts])
    for k, c in enumerate(CATEGORIES):
        assert spec[c]["feature"] == 10 + k
        assert spec[c]["heldout_score"] > 3.5


def test_rankings_and_composite_identity():
    ft, ti, texts = _planted_table()
    st = feature_stats(ft)
    assert top_features(st["frequency"], 1) == [0]  # fires on every token
    np.testing.assert_allclose(st["composite"], st["mean_all"], rtol=1e-9)
    assert st["frequency"][0] == 1.0 and st["max_act"][0] == pytest.approx(0.5)
    raw = np.random.default_rng(0).normal(size=(ft.n_rows, 8))
    metrics, details = analyze_hook(ft, raw, ti, texts, top_k=5, min_active_tokens=3)
    assert metrics["specialists_heldout_positive"] == 7
    assert metrics["l0_per_token"] == pytest.approx(3.0, abs=0.2)  # duplicates merge rarely
    assert details["rankings"]["strongest"][0]["feature"] in range(10, 17)
    assert 0 not in [r["feature"] for r in details["rankings"]["most_selective"]]  # weak and everywhere
    m = details["specialist_score_matrix"]
    for k, c in enumerate(CATEGORIES):
        assert int(np.argmax(m[c])) == k  # each category's best column is its own specialist


def test_top_features_deterministic_ties():
    assert top_features(np.array([1.0, 3.0, 3.0, 0.0, -np.inf]), 3) == [1, 2, 0]
