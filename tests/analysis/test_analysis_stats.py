"""analysis/stats.py on hand-built data with known answers: specialist scores
and selection, AUROC, bootstrap intervals, the permutation test,
leave-one-register-out, the paired AUROC test, seed-to-seed decoder matching."""

import numpy as np
import pytest
import torch

from sae_workbench.analysis.results import SpecialistCount
from sae_workbench.analysis.stats import (
    auroc,
    best_match,
    find_specialists,
    mean_and_spread,
    pair_stability,
    paired_auroc_test,
    specialist_scores,
    specialist_statistics,
    unit_decoder,
)
from sae_workbench.config import CATEGORIES

from helpers import _planted_table


def test_specialist_score_known_answer():
    # 4 texts x 3 features; texts 0,1 are 'python'
    strength = np.array([[5.0, 1.0, 0.0], [3.0, 1.0, 2.0], [1.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    labels = ["python", "python", "math", "math"]
    s = specialist_scores(strength, labels, "python")
    np.testing.assert_allclose(s, [(5 + 3) / 2 - (1 + 0) / 2, 0.0, 1.0 - 2.0])
    np.testing.assert_allclose(specialist_scores(strength, labels, "math"), -s)
    with pytest.raises(ValueError):
        specialist_scores(strength, ["python"] * 4, "python")


def test_planted_specialists_are_found_and_hold_out():
    ft, ti, texts, _ = _planted_table()
    strength = ft.per_text_max(ti, len(texts))
    spec = find_specialists(strength, [t["category"] for t in texts], [t["split"] for t in texts])
    for k, c in enumerate(CATEGORIES):
        assert spec[c].feature == 10 + k
        assert spec[c].heldout_score > 3.5


def test_planted_specialist_is_significant_with_tight_interval():
    ft, ti, texts, _ = _planted_table()
    strength = ft.per_text_max(ti, len(texts))
    labels, splits = [t["category"] for t in texts], [t["split"] for t in texts]
    spec, count = specialist_statistics(strength, labels, splits, np.random.default_rng(0), n_boot=300, n_perm=300)
    assert count == SpecialistCount(positive=7, significant=7, positive_ci=[7.0, 7.0])
    for k, c in enumerate(CATEGORIES):
        v = spec[c]
        assert v.feature == 10 + k and v.significant
        # 2 held-out texts per category: a shuffle restores a category's pair with probability 1/91
        assert v.p_value < 0.05
        assert v.ci_low <= v.heldout_score <= v.ci_high and v.ci_low > 3.0
        assert v.heldout_auroc == 1.0


def _random_strength(seed, n_per_cat=12, d=200):
    """Features firing at random, independently of the category: every
    'specialist' found is a product of the search (winner's curse)."""
    rng = np.random.default_rng(seed)
    labels = [c for c in CATEGORIES for _ in range(n_per_cat)]
    splits = ["heldout" if j % 3 == 2 else "train" for _ in CATEGORIES for j in range(n_per_cat)]
    strength = rng.exponential(1.0, size=(len(labels), d)) * (rng.random((len(labels), d)) < 0.3)
    return strength, labels, splits


def test_features_firing_at_random_fail_the_permutation_test():
    significant, n, train_scores = 0, 0, []
    for seed in range(20):
        strength, labels, splits = _random_strength(seed)
        spec, _ = specialist_statistics(strength, labels, splits, np.random.default_rng(seed), n_boot=100, n_perm=200)
        for v in spec.values():
            significant += v.significant
            train_scores.append(v.train_score)
            n += 1
    # the search finds large in-sample scores on pure noise...
    assert np.mean(train_scores) > 0.5
    # ...but the permutation test, repeating the search, rejects at about alpha:
    # 140 tests, expected 7 false positives; 21 is > 5 standard deviations away
    assert significant / n < 0.15


def test_auroc_known_values():
    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auroc(np.array([1.0, 3.0]), np.array([2.0])) == 0.5


def _two_category_strength(rng, n_per=30):
    """python and math texts (half train, half held out), registers A/B inside python."""
    labels = ["python"] * n_per + ["math"] * n_per
    splits = ["train" if i % 2 == 0 else "heldout" for i in range(2 * n_per)]
    registers = ["A" if i < n_per // 2 else "B" for i in range(n_per)] + ["x"] * n_per
    return labels, splits, registers, rng.random((2 * n_per, 6)) * 0.1


def test_selection_prefers_the_feature_that_separates_every_text_over_a_loud_one():
    rng = np.random.default_rng(0)
    labels, splits, _, strength = _two_category_strength(rng)
    py = np.array([lab == "python" for lab in labels])
    strength[np.flatnonzero(py)[:4], 1] = 20.0  # loud on 4 python texts: the largest mean difference
    strength[py, 2] += 0.5  # quiet on every python text: separates them all
    spec = find_specialists(strength, labels, splits, categories=("python", "math"))
    assert spec["python"].feature == 2 and spec["python"].train_auroc == 1.0
    assert specialist_scores(strength[np.array(splits) == "train"], list(np.array(labels)[np.array(splits) == "train"]), "python").argmax() == 1


def test_leave_one_register_out_exposes_a_single_register_specialist():
    rng = np.random.default_rng(1)
    labels, splits, registers, strength = _two_category_strength(rng)
    reg, lab = np.array(registers), np.array(labels)
    strength[(lab == "python") & (reg == "A"), 1] += 1.0  # fires on register A only
    strength[(lab == "python") & (reg == "B"), 2] += 1.0  # fires on register B only
    narrow = specialist_statistics(strength, labels, splits, np.random.default_rng(0), n_boot=50, n_perm=50,
                                   categories=("python", "math"), registers=registers)[0]["python"].register_holdout
    assert set(narrow["by_register"]) == {"A", "B"} and narrow["by_register"]["A"]["n"] == 15
    assert narrow["min_auroc"] < 0.75  # the other register's feature does not carry over
    strength[lab == "python", 3] += 2.0  # fires on every python text, more strongly
    broad = specialist_statistics(strength, labels, splits, np.random.default_rng(0), n_boot=50, n_perm=50,
                                  categories=("python", "math"), registers=registers)[0]["python"]
    assert broad.register_holdout["min_auroc"] == 1.0 and broad.feature == 3 and broad.significant


def test_seed_stability_measures():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(200, 16, generator=g)

    class S:
        def __init__(self, w):
            self.W_dec = w

    a = unit_decoder(S(w))
    perm = torch.randperm(200, generator=g)
    same = unit_decoder(S(3.0 * w[perm]))  # same directions, other order and norms
    alive = np.ones(200, dtype=bool)
    st = pair_stability(a, same, alive)
    assert st["frac_stable"] == 1.0 and st["median_best_cosine"] == pytest.approx(1.0, abs=1e-5)
    cos, idx = best_match(a, same)
    assert (idx == torch.argsort(perm).numpy()).all()
    other = unit_decoder(S(torch.randn(200, 16, generator=g)))
    assert pair_stability(a, other, alive)["frac_stable"] < 0.5
    alive[:100] = False
    assert pair_stability(a, same, alive)["n_features"] == 100
    ms = mean_and_spread([1.0, 2.0, 3.0])
    assert (ms["mean"], ms["std"], ms["min"], ms["max"]) == (2.0, 1.0, 1.0, 3.0)


def test_paired_auroc_test_verdicts():
    rng = np.random.default_rng(0)
    labels = np.repeat(CATEGORIES, 12)
    onehot = (labels[:, None] == np.array(CATEGORIES)[None, :]).astype(float)
    strong = onehot * 2 + rng.random(onehot.shape)  # each column separates its category
    weak = rng.random(onehot.shape)  # chance
    up = paired_auroc_test(strong, weak, labels, np.random.default_rng(1), 300)
    down = paired_auroc_test(weak, strong, labels, np.random.default_rng(1), 300)
    assert up["verdict"] == "stronger" and down["verdict"] == "weaker" and up["auroc_diff"] == pytest.approx(-down["auroc_diff"])
    assert up["ci_low"] > 0 and up["p_value"] < 0.05
    same = paired_auroc_test(strong, strong.copy(), labels, np.random.default_rng(1), 300)
    assert same["verdict"] == "no_difference" and same["auroc_diff"] == 0 and same["p_value"] == 1.0
    noisy = paired_auroc_test(weak, rng.random(onehot.shape), labels, np.random.default_rng(1), 300)
    assert noisy["verdict"] == "no_difference" and noisy["ci_low"] < 0 < noisy["ci_high"]
