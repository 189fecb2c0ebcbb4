"""analysis/compare.py on hand-built feature tables: the cross-hook comparison and component pairing."""

import json

import numpy as np
import pytest

from sae_workbench.activations import TokenTable
from sae_workbench.analysis.hook import analyze_hook
from sae_workbench.analysis.results import HookComparison
from sae_workbench.config import CATEGORIES, AnalysisConfig
from sae_workbench.features import FeatureTable

from helpers import _planted_table


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
    strength = {h: specialist_strengths(f, ti, len(texts), details[h].specialists)[held] for h, f in zip(hooks, (ft, noise, ft))}
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
