"""The cross-model study's parts (sae_workbench/cross_model.py): matching hooks by
relative depth, for every pair of depths; and, on the real MiniLM, one model's run
(extraction, SAE, specialists) paired against itself and against a run that read
other texts. The whole stage runs under dvc repro in tests/pipeline/test_pipeline.py."""

import numpy as np
import pytest

from sae_workbench.config import CATEGORIES, hook_layer, matched_hook
from sae_workbench.model_run import run_model, versus


@pytest.mark.parametrize("kind", ["hook_resid_pre", "hook_resid_post", "hook_mlp_out", "hook_attn_out"])
def test_matched_hook_is_the_nearest_relative_depth_for_every_pair_of_depths(kind):
    for n in range(1, 37):
        for m in range(1, 37):
            for layer in range(n):
                got = matched_hook(f"blocks.{layer}.{kind}", n, m)
                j = hook_layer(got)
                assert got == f"blocks.{j}.{kind}" and 0 <= j < m
                gap = abs((j + 1) / m - (layer + 1) / n)
                assert all(gap <= abs((i + 1) / m - (layer + 1) / n) + 1e-12 for i in range(m)), (n, m, layer, got)
                if m == n:
                    assert j == layer
    assert matched_hook("blocks.9.hook_resid_post", 18, 6) == "blocks.2.hook_resid_post"  # Gemma 3 270M -> all-MiniLM-L6-v2
    assert matched_hook("blocks.2.hook_resid_pre", 6, 18) == "blocks.8.hook_resid_pre"


@pytest.mark.slow
def test_a_run_paired_against_itself_ties_and_other_texts_are_refused(minilm_params, tmp_path):
    """run_model on the real MiniLM with a small SAE: one row of strengths per labelled text,
    a specialist per category; the run against itself differs by exactly 0 (no difference);
    a run that read other texts is refused with one line."""
    from dataclasses import replace

    from sae_workbench.models import load_model

    from helpers import _texts

    labelled_texts = _texts()
    params = minilm_params
    params = replace(params, sae=replace(params.sae, epochs=1, expansion=2, k=8, buffer_tokens=4096, batch_tokens=256),
                     data=replace(params.data, max_tokens=48))
    by = {}
    for t in labelled_texts:
        by.setdefault((t.category, t.split), []).append(t)
    texts = [t for key in sorted(by) for t in by[key][:5]]
    corpus = [t for t in labelled_texts if t.split == "train"][:40]
    handle = load_model(params.model)
    hook = "blocks.3.hook_resid_pre"
    run = run_model(handle, params.model, hook, corpus, texts, params, tmp_path / "saes", "test")
    assert (tmp_path / "saes" / hook / hook / "cfg.json").exists() and not list((tmp_path / "saes").glob(".acts-*"))
    assert run.strength.shape == (len(texts), 2 * handle.d_model) and set(run.specialists) == set(CATEGORIES)
    assert run.reconstruction["l0"] == pytest.approx(8, abs=0.01) and 0 <= run.dead_frac <= 1
    same = versus(run.table, run.features, run.specialists, run, params, "here")
    assert same["auroc_diff"] == 0 and same["verdict"] == "no_difference" and same["n_texts"] == sum(t.split == "heldout" for t in texts)
    fewer = run_model(handle, params.model, hook, corpus, texts[1:], params, tmp_path / "other", "test")
    with pytest.raises(ValueError, match=r"^here holds other texts than the labelled texts: re-run dvc repro$"):
        versus(run.table, run.features, run.specialists, fewer, params, "here")
    assert np.isfinite(run.strength).all()
