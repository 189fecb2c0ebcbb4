"""analysis/baselines.py on synthetic pooled activations with known answers: a planted
direction DiffMean and the probe must find, a planted SAE latent the sparse probe must
pick, a null they must not, no leakage from the held-out texts, leave-one-register-out,
the specialist-vs-DiffMean verdicts, JSON round trip and hostile inputs."""

import json

import numpy as np
import pytest

from sae_workbench.activations import TokenTable
from sae_workbench.analysis.baselines import (
    C_GRID,
    Baselines,
    fit_probe,
    fit_scores,
    hook_baselines,
    pool_text_max,
    supervised_baselines,
)
from sae_workbench.analysis.results import Specialist
from sae_workbench.analysis.stats import auroc, find_specialists
from sae_workbench.config import CATEGORIES, AnalysisConfig

from helpers import _planted_table

CATS = ("python", "math", "urls")
METHODS = ("diffmean", "probe", "sparse_probe_k1", "sparse_probe_k2", "sparse_probe_k5")


def _texts(seed=0, n_per=24, d=24, d_sae=40, raw_shift=3.0, sae_shift=5.0, cats=CATS):
    """n_per texts per category (every third held out, registers A/B alternating):
    pooled raw activations [n, d] with category k shifted by raw_shift along its own random
    unit direction, SAE strengths [n, d_sae] (sparse exponential noise) with latent 10+k
    raised by sae_shift on category k."""
    rng = np.random.default_rng(seed)
    labels = [c for c in cats for _ in range(n_per)]
    splits = ["heldout" if j % 3 == 2 else "train" for _ in cats for j in range(n_per)]
    registers = ["AB"[j % 2] for _ in cats for j in range(n_per)]
    lab = np.array(labels)
    raw = rng.normal(size=(len(lab), d))
    strength = rng.exponential(1.0, size=(len(lab), d_sae)) * (rng.random((len(lab), d_sae)) < 0.3)
    for k, c in enumerate(cats):
        u = rng.normal(size=d)
        raw[lab == c] += raw_shift * u / np.linalg.norm(u)
        strength[lab == c, 10 + k] += sae_shift
    return raw, strength, labels, splits, registers


def _baselines(raw, strength, labels, splits, registers=None, specialists=None, seed=0, cats=CATS, **kw):
    if specialists is None:
        specialists = find_specialists(strength, labels, splits, cats)
    return supervised_baselines(raw, strength, labels, splits, specialists, np.random.default_rng(seed),
                                n_boot=200, registers=registers, categories=cats, **kw)


def test_a_planted_direction_is_found_by_every_baseline_and_the_planted_latent_by_the_sparse_probe():
    raw, strength, labels, splits, _ = _texts()
    b = _baselines(raw, strength, labels, splits)
    for k, c in enumerate(CATS):
        assert set(b.scores[c]) == set(METHODS)
        for m in METHODS:
            assert b.scores[c][m].heldout_auroc >= 0.95, (c, m)
        assert b.scores[c]["sparse_probe_k1"].features == [10 + k]  # the planted latent, selected on train
        assert 10 + k in b.scores[c]["sparse_probe_k2"].features and len(b.scores[c]["sparse_probe_k5"].features) == 5
        assert b.scores[c]["probe"].C == 1.0 and b.scores[c]["diffmean"].C is None
        assert b.vs_diffmean[c]["verdict"] == "no_difference"  # both separate the held-out texts
    assert b.verdicts() == {"stronger": 0, "no_difference": 3, "weaker": 0}


def test_the_specialist_against_diffmean_verdict_has_the_right_sign():
    raw, strength, labels, splits, _ = _texts(raw_shift=3.0, sae_shift=0.0)  # only the raw activations know the categories
    b = _baselines(raw, strength, labels, splits)
    assert b.verdicts() == {"stronger": 0, "no_difference": 0, "weaker": 3}
    assert b.overall_vs_diffmean["verdict"] == "weaker" and b.overall_vs_diffmean["auroc_diff"] < -0.3
    raw, strength, labels, splits, _ = _texts(raw_shift=0.0, sae_shift=3.0)  # only the SAE latents do
    b = _baselines(raw, strength, labels, splits)
    assert b.verdicts() == {"stronger": 3, "no_difference": 0, "weaker": 0}
    lab, ho = np.array(labels), np.array(splits) == "heldout"
    for k, c in enumerate(CATS):
        t = b.vs_diffmean[c]
        spec = auroc(strength[ho & (lab == c), 10 + k], strength[ho & (lab != c), 10 + k])
        assert t["ci_low"] > 0 and t["auroc_diff"] == pytest.approx(spec - b.scores[c]["diffmean"].heldout_auroc)


def test_a_null_scores_near_chance_and_is_not_called_a_difference():
    aucs, calls, tests = [], 0, 0
    for seed in range(4):
        raw, strength, labels, splits, _ = _texts(seed, n_per=36, raw_shift=0.0, sae_shift=0.0)
        b = _baselines(raw, strength, labels, splits, seed=seed)
        aucs += [s.heldout_auroc for ms in b.scores.values() for s in ms.values()]
        calls += sum(t["verdict"] != "no_difference" for t in b.vs_diffmean.values())
        tests += len(b.vs_diffmean)
    aucs = np.array(aucs)
    assert abs(aucs.mean() - 0.5) < 0.05 and np.abs(aucs - 0.5).max() < 0.3
    # alpha = 0.05 per comparison (the percentile bootstrap measured 9 calls in 120 on seeds 0-39 of this null)
    assert calls <= 2, f"{calls} of {tests} null comparisons called a difference"


def test_shuffled_train_labels_leave_the_probe_at_chance():
    raw, strength, labels, splits, _ = _texts(n_per=36)
    true, tr = np.array(labels), np.array(splits) == "train"
    ho = ~tr
    rng = np.random.default_rng(5)
    aucs = {m: [] for m in ("diffmean", "probe", "sparse_probe_k5")}
    for _ in range(8):
        lab = true.copy()  # held-out labels untouched
        for c in CATS:  # train labels shuffled so that each gets as many texts of every category: they say nothing
            rows = rng.permutation(np.flatnonzero(tr & (true == c)))
            lab[rows] = np.resize(rng.permutation(CATS), len(rows))
        for m in aucs:
            for c in CATS:
                s, _ = fit_scores(m, raw, strength, lab, tr, c)
                aucs[m].append(auroc(s[ho & (true == c)], s[ho & (true != c)]))
    for m, v in aucs.items():
        # one shuffle's direction is random and the held-out categories lie far apart, so one AUROC
        # strays far from 1/2; over 24 fits the mean does not (with the true labels: >= 0.95)
        assert abs(np.mean(v) - 0.5) < 0.08, (m, np.round(v, 2))


@pytest.mark.parametrize("method", ["diffmean", "probe", "sparse_probe_k2"])
def test_the_held_out_rows_do_not_touch_the_fit(method):
    raw, strength, labels, splits, _ = _texts()
    lab, sp = np.array(labels), np.array(splits)
    tr, ho = sp == "train", sp == "heldout"
    before, fitted = fit_scores(method, raw, strength, lab, tr, "math")
    raw2, strength2 = raw.copy(), strength.copy()
    raw2[ho] = 1000.0 * raw2[ho] + 50.0  # held-out rows alone perturbed: mean and spread change
    strength2[ho] = 1000.0 * strength2[ho] + 50.0
    after, fitted2 = fit_scores(method, raw2, strength2, lab, tr, "math")
    np.testing.assert_array_equal(after[tr], before[tr])  # the same fitted model
    assert fitted2.keys() == fitted.keys()
    for k in fitted:
        np.testing.assert_array_equal(np.asarray(fitted2[k]), np.asarray(fitted[k]))
    leaky, _ = fit_scores(method, raw, strength, lab, tr | ho, "math")  # the check has teeth: a fit that sees them differs
    leaky2, _ = fit_scores(method, raw2, strength2, lab, tr | ho, "math")
    assert not np.allclose(leaky[tr], leaky2[tr])


def test_a_signal_in_one_register_does_not_carry_to_it_when_left_out():
    raw, strength, labels, splits, registers = _texts(n_per=48, d=100, raw_shift=0.0, sae_shift=0.0)
    lab, sp, reg = np.array(labels), np.array(splits), np.array(registers)
    rng = np.random.default_rng(3)
    u = rng.normal(size=raw.shape[1])
    only_a = (lab == "python") & (reg == "A")
    raw[only_a] += 5.0 * u / np.linalg.norm(u)  # python is separable in register A only
    strength[only_a, 7] += 3.0
    b = _baselines(raw, strength, labels, splits, registers)
    neg = (sp == "heldout") & (lab != "python")
    for m in METHODS:
        s, _ = fit_scores(m, raw, strength, lab, sp == "train", "python")
        in_register = ((sp == "heldout") & only_a)
        seen = np.mean(s[in_register][:, None] > s[neg][None, :])  # register A's held-out texts, A in the fit
        loro = b.scores["python"][m].register_holdout
        assert set(loro["by_register"]) == {"A", "B"} and loro["by_register"]["A"]["n"] == int(only_a.sum())
        # fitted without register A the method has never seen its signal: chance, give or take a random
        # direction's overlap with it (the margin holds for seeds 0-5 of the data)
        assert seen > 0.85 and loro["by_register"]["A"]["auroc"] < seen - 0.2, m
        assert loro["min_auroc"] <= loro["by_register"]["A"]["auroc"]
    assert 7 not in b.scores["python"]["sparse_probe_k1"].register_holdout["by_register"]["A"]["features"]
    assert b.scores["python"]["sparse_probe_k1"].features == [7]


def test_results_round_trip_through_json_and_repeat_exactly():
    raw, strength, labels, splits, registers = _texts()
    b = _baselines(raw, strength, labels, splits, registers)
    text = json.dumps(b.to_json())
    back = Baselines.from_json(json.loads(text))
    assert back == b and json.dumps(back.to_json()) == text
    assert json.dumps(_baselines(raw, strength, labels, splits, registers).to_json()) == text  # seeded: the same bytes
    m = b.metrics_json()
    assert m["specialist_vs_diffmean"] == b.verdicts() and set(m["heldout_auroc"]["math"]["probe"]) == {
        "heldout_auroc", "register_holdout_min_auroc"}


def test_probe_with_cross_validated_c():
    raw, strength, labels, splits, _ = _texts()
    lab, sp = np.array(labels), np.array(splits)
    ho = sp == "heldout"
    s, fitted = fit_scores("probe", raw, strength, lab, sp == "train", "math", C=None, seed=3)
    assert fitted["C"] in C_GRID and auroc(s[ho & (lab == "math")], s[ho & (lab != "math")]) >= 0.95
    again, fitted_again = fit_scores("probe", raw, strength, lab, sp == "train", "math", C=None, seed=3)
    np.testing.assert_array_equal(again, s)  # seeded folds: the same C and fit
    assert fitted_again == fitted
    y = np.array([True] + [False] * 9)
    with pytest.raises(ValueError, match="at least 2"):
        fit_probe(raw[:10], y, C=None)


def test_pooling_mirrors_the_specialists_and_keeps_negative_values():
    ft, ti, texts, _ = _planted_table()
    np.testing.assert_array_equal(pool_text_max(ft.dense(), ti, len(texts)), ft.per_text_max(ti, len(texts)))
    acts = np.array([[-3.0, 1.0], [-2.0, -5.0], [4.0, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(pool_text_max(acts, np.array([0, 0, 2]), 3), [[-2.0, 1.0], [0.0, 0.0], [4.0, 0.5]])
    with pytest.raises(ValueError, match="differ"):
        pool_text_max(acts, np.array([0, 1]), 2)


def test_hook_baselines_from_what_analyze_hook_has():
    ft, ti, texts, position = _planted_table()
    table = TokenTable(texts, ti, position)
    rng = np.random.default_rng(0)
    raw_acts = ft.dense() + 0.1 * rng.normal(size=(ft.n_rows, ft.d_sae)).astype(np.float32)
    strength = ft.per_text_max(ti, len(texts))
    spec = find_specialists(strength, [t["category"] for t in texts], [t["split"] for t in texts])
    b = hook_baselines(ft, raw_acts, table, spec, rng, AnalysisConfig(n_bootstrap=100))
    assert list(b.scores) == list(CATEGORIES)
    for k, c in enumerate(CATEGORIES):
        assert b.scores[c]["sparse_probe_k1"].features == [10 + k] and b.scores[c]["diffmean"].heldout_auroc == 1.0
        assert b.scores[c]["diffmean"].register_holdout is None  # these texts have no registers


def _one_line_error(match, fn):
    with pytest.raises(ValueError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)


def test_hostile_inputs_fail_with_one_line_naming_the_problem():
    raw, strength, labels, splits, _ = _texts()
    run = lambda r=raw, s=strength, lab=labels, sp=splits: _baselines(r, s, lab, sp, specialists={c: Specialist(0, 0, 0, 0, 0) for c in CATS})  # noqa: E731
    _one_line_error("raw activations are the same for every train text", lambda: run(r=np.full_like(raw, 0.25)))
    no_train = ["heldout" if lab == "urls" else s for lab, s in zip(labels, splits)]
    _one_line_error("category 'urls' needs train texts both inside and outside it", lambda: run(sp=no_train))
    with_nan = raw.copy()
    with_nan[5, 3] = np.nan
    _one_line_error(r"raw activations have 1 texts with NaN or infinite values \(first: text 5\)", lambda: run(r=with_nan))
    strength_inf = strength.copy()
    strength_inf[7, 0] = np.inf
    _one_line_error(r"SAE strengths have 1 texts with NaN .*\(first: text 7\)", lambda: run(s=strength_inf))
    _one_line_error("expected one row per text", lambda: run(r=raw[:-1]))
    # a NaN token reaches the pooled text (np.maximum propagates it), so the check sees it
    acts = np.zeros((4, 2), dtype=np.float32)
    acts[2, 1] = np.nan
    assert np.isnan(pool_text_max(acts, np.array([0, 0, 1, 1]), 2)[1, 1])
    _one_line_error("unknown baseline", lambda: fit_scores("pca", raw, strength, np.array(labels), np.array(splits) == "train", "math"))


def test_diffmean_from_tokens_is_the_difference_of_text_means_scored_by_the_strongest_projection(tmp_path):
    """Token-level DiffMean (AxBench): each text's mean over its tokens, category minus rest over
    the train texts, each text counted once; a text's score is its strongest token projection.
    The directions round-trip through save_directions / load_directions."""
    from sae_workbench.analysis.baselines import TokenActivations, load_directions, save_directions

    rng = np.random.default_rng(3)
    raw_rows, strength, labels, splits, _ = _texts(seed=3)
    n = len(labels)
    lens = rng.integers(1, 6, size=n)
    text_index = np.repeat(np.arange(n), lens)
    acts = raw_rows[text_index] + rng.normal(scale=0.5, size=(len(text_index), raw_rows.shape[1]))
    tokens = TokenActivations(acts, text_index, n + 1)  # one text without tokens
    assert np.allclose(tokens.means[:n], np.stack([acts[text_index == t].mean(0) for t in range(n)])) and not tokens.means[n].any()
    lab, tr = np.array(labels), np.array(splits) == "train"
    scores, fitted = fit_scores("diffmean", raw_rows, strength, lab, tr, "math", tokens=TokenActivations(acts, text_index, n))
    w = fitted["direction"]
    means = tokens.means[:n]
    np.testing.assert_allclose(w, means[tr & (lab == "math")].mean(0) - means[tr & (lab != "math")].mean(0))
    np.testing.assert_allclose(scores, [max(acts[text_index == t] @ w) for t in range(n)])
    assert tokens.max_projection(w)[n] == 0.0
    b = supervised_baselines(raw_rows, strength, labels, splits, find_specialists(strength, labels, splits, CATS), rng, n_boot=100,
                             categories=CATS, tokens=TokenActivations(acts, text_index, n))
    assert set(b.directions) == set(CATS) and b.settings["diffmean"] == "token means per text"
    # mean pooling of the same direction: its own method and its own test against the specialist
    ho = np.array(splits) == "heldout"
    mean_scores = TokenActivations(acts, text_index, n).means @ b.directions["math"]
    assert b.scores["math"]["diffmean_mean"].heldout_auroc == pytest.approx(auroc(mean_scores[ho & (lab == "math")], mean_scores[ho & (lab != "math")]))
    assert set(b.vs_diffmean_mean) == set(CATS) and sum(b.verdicts("diffmean_mean").values()) == len(CATS)
    back = type(b).from_json(json.loads(json.dumps(b.to_json())))
    assert back == b and back.metrics_json()["specialist_vs_diffmean_mean"] == b.verdicts("diffmean_mean")
    assert b.scores["math"]["diffmean"].heldout_auroc > 0.9  # the planted shift survives token noise
    path = tmp_path / "b" / "hook.safetensors"
    save_directions(path, b.directions, "hook")
    back = load_directions(path)
    assert set(back) == set(CATS) and all(np.allclose(back[c], b.directions[c], atol=1e-6) for c in CATS)
    assert "directions" not in json.dumps(b.to_json())
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        load_directions(tmp_path / "missing.safetensors")
