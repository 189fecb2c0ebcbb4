"""Analyses on hand-built feature tables with known answers."""

import dataclasses
import json

import numpy as np
import pytest

from sae_workbench.activations import TokenTable
from sae_workbench.analysis.cards import feature_card, logit_effects
from sae_workbench.analysis.hook import analyze_hook, coactivation, concept_search, coverage, feature_stats, top_features
from sae_workbench.analysis.results import HookAnalysis, HookComparison, Specialist, SpecialistCount
from sae_workbench.analysis.stats import auroc, find_specialists, specialist_scores, specialist_statistics
from sae_workbench.config import CATEGORIES, AnalysisConfig
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
    ti = np.array(text_index, np.int32)
    for i, t in enumerate(texts):  # token records as the activation set stores them
        n = int((ti == i).sum())
        t["text"] = " ".join(f"w{i}_{p}" for p in range(n))
        t["offsets"], a = [], 0
        for p in range(n):
            w = f"w{i}_{p}"
            t["offsets"].append([a, a + len(w)])
            a += len(w) + 1
    position = np.concatenate([np.arange((ti == i).sum()) for i in range(len(texts))]).astype(np.int32)
    return ft, ti, texts, position


def test_planted_specialists_are_found_and_hold_out():
    ft, ti, texts, _ = _planted_table()
    strength = ft.per_text_max(ti, len(texts))
    spec = find_specialists(strength, [t["category"] for t in texts], [t["split"] for t in texts])
    for k, c in enumerate(CATEGORIES):
        assert spec[c].feature == 10 + k
        assert spec[c].heldout_score > 3.5


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


def test_compare_hooks_and_component_pairing():
    from sae_workbench.analysis.compare import compare_hooks, specialist_strengths, written_into

    hooks = ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.1.hook_mlp_out"]
    assert written_into("blocks.1.hook_mlp_out", hooks) == "blocks.2.hook_resid_pre"
    assert written_into("blocks.1.hook_attn_out", ["blocks.1.hook_resid_post"]) == "blocks.1.hook_resid_post"
    assert written_into("blocks.1.hook_resid_pre", hooks) is None
    cfg = AnalysisConfig(top_k=5, n_bootstrap=100, n_permutations=100)
    ft, ti, texts, pos = _planted_table()
    raw = np.zeros((ft.n_rows, 4))
    good = analyze_hook(ft, raw, TokenTable(texts, ti, pos), cfg, np.random.default_rng(0))
    good = good.metrics_json(), good
    # a hook where nothing is category-specific: only the random features 20..39 and feature 0
    m = (ft.feature < 10) | (ft.feature >= 20)
    noise = FeatureTable(ft.row[m], ft.feature[m], ft.value[m], ft.n_rows, ft.d_sae)
    bad = analyze_hook(noise, raw, TokenTable(texts, ti, pos), cfg, np.random.default_rng(0))
    bad = bad.metrics_json(), bad
    metrics = {hooks[0]: good[0], hooks[1]: bad[0], hooks[2]: good[0]}
    details = {hooks[0]: good[1], hooks[1]: bad[1], hooks[2]: good[1]}
    held = np.array([t["split"] == "heldout" for t in texts])
    strength = {h: specialist_strengths(f, ti, len(texts), metrics[h]["specialists"])[held] for h, f in zip(hooks, (ft, noise, ft))}
    heldout = {"labels": [t["category"] for t, k in zip(texts, held) if k], "strength": strength}
    result = compare_hooks(hooks, metrics, details, heldout, np.random.default_rng(0), 200)
    cm, data = result.metrics_json(), result.to_json()
    assert cm["significant_by_hook"][hooks[0]] == 7 and cm["significant_by_hook"][hooks[1]] < 7
    comp = cm["components_vs_resid"]["blocks.1.hook_mlp_out"]
    assert comp["resid_hook"] == hooks[1] and comp["verdict"] == "stronger" and comp["categories_higher_auroc"] >= 1
    assert comp["test"]["ci_low"] > 0 and comp["test"]["p_value"] < 0.05 and comp["test"]["auroc_diff"] == pytest.approx(comp["mean_auroc"] - comp["resid_mean_auroc"], abs=1e-6)
    assert cm["best_hook"] == hooks[0] and cm["best_hook_vs_runner_up"]["runner_up"] == hooks[2]
    assert cm["best_hook_vs_runner_up"]["verdict"] == "no_difference" and cm["best_hook_vs_runner_up"]["auroc_diff"] == 0  # the same SAE twice
    assert set(data["specialist_table"]) == set(CATEGORIES) and len(data["top5_strongest"][hooks[0]]) == 5
    assert data["heldout_score_matrix"][hooks[1]] == details[hooks[1]].score_matrix
    # what the compare stage writes reads back: data/compare.json with metrics/compare.json
    back = HookComparison.from_json(json.loads(json.dumps(data)), json.loads(json.dumps(cm)))
    assert back == result and json.dumps(back.metrics_json()) == json.dumps(cm) and json.dumps(back.to_json()) == json.dumps(data)


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


def _through_json(d):
    """What a stage writes and a reader gets back (NaN kept: json writes it as NaN)."""
    return json.loads(json.dumps(d))


def test_specialist_with_nan_fields_round_trips_through_json():
    ft, ti, texts, _ = _planted_table()
    strength = ft.per_text_max(ti, len(texts))
    spec = find_specialists(strength, [t["category"] for t in texts], [t["split"] for t in texts])["math"]
    assert np.isnan(spec.p_value) and spec.register_holdout is None and spec.max_act is None  # not measured yet
    back = Specialist.from_json(_through_json(spec.to_json()))
    nan = lambda s: {k for k, v in dataclasses.asdict(s).items() if isinstance(v, float) and np.isnan(v)}  # noqa: E731
    rest = lambda s: {k: v for k, v in dataclasses.asdict(s).items() if k not in nan(s)}  # noqa: E731
    assert nan(back) == nan(spec) == {"heldout_auroc", "auroc_ci_low", "auroc_ci_high", "ci_low", "ci_high", "p_value"}
    assert rest(back) == rest(spec) and back.register_holdout is None and back.max_act is None  # NaN != NaN: the rest equal
    assert json.dumps(back.to_json()) == json.dumps(spec.to_json())
    count = SpecialistCount(positive=3, significant=1, positive_ci=[2.0, 5.0])
    assert SpecialistCount.from_json(_through_json(count.to_json())) == count


def test_hook_analysis_round_trips_through_json():
    ft, ti, texts, pos = _planted_table()
    texts = [{**t, "register": "prose" if i % 2 else "list"} for i, t in enumerate(texts)]  # register_holdout filled in
    rng = np.random.default_rng(1)
    unembed = (rng.normal(size=(ft.d_sae, 8)), rng.normal(size=(8, 30)), [f"t{i}" for i in range(30)])  # cards with logit effects
    cfg = AnalysisConfig(top_k=5, n_bootstrap=100, n_permutations=100)
    x = analyze_hook(ft, rng.normal(size=(ft.n_rows, 8)), TokenTable(texts, ti, pos), cfg, np.random.default_rng(0), unembed)
    assert x.specialists["python"].register_holdout and "logit_effects" in x.cards[str(x.specialists["python"].feature)]
    data, metrics = _through_json({**x.to_json(), "hook": "blocks.0.hook_resid_pre"}), _through_json(x.metrics_json())  # as the analyze stage writes them
    back = HookAnalysis.from_json(data, metrics)
    assert back == x
    assert json.dumps(back.to_json()) == json.dumps(x.to_json()) and json.dumps(back.metrics_json()) == json.dumps(x.metrics_json())
    without = HookAnalysis.from_json(data)  # data/analysis/<hook>.json alone: everything but the summary
    assert without == dataclasses.replace(x, summary={}) and without.to_json() == x.to_json()
