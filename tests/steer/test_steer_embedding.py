"""steer/embedding.py on the real MiniLM: steering raises the feature's own
re-encoded activation, and the study reports what the model saw."""

from itertools import pairwise

import numpy as np
import pytest
import torch

from sae_workbench.edits import feature_edit
from sae_workbench.steer.embedding import category_centroids, steer_sentence_embeddings

from helpers import MINILM_HOOK as HOOK, _capture, _texts

pytestmark = pytest.mark.usefixtures("one_thread")  # two busy CPU cores: one intra-op thread (conftest.py)


@torch.no_grad()
def _mean_act(sae, x, keep, feature):
    f = sae.encode(x.reshape(-1, x.shape[-1]))[:, feature].reshape(keep.shape)
    return float((f * keep).sum() / keep.sum())


def test_steering_raises_the_features_own_reencoded_activation(minilm, mini_toks, trained_sae):
    _, sae, acts = trained_sae
    with torch.no_grad():
        f = sae.encode(acts)
    feature = int(f.mean(0).argmax())
    max_act = float(f[:, feature].max())
    assert max_act > 0
    held = [mini_toks[t.id] for t in _texts() if t.split == "heldout" and len(mini_toks[t.id].ids) <= 40][::10]
    coefs = [-1.0, 0.0, 0.5, 1.0, 2.0, 4.0]
    cents = category_centroids(minilm, {c: [mini_toks[f"{c}-0{i}"] for i in (1, 2)] for c in ("python", "math", "formal")})
    for mode in ("add", "clamp"):
        seen = []
        for c in coefs:
            x, keep = _capture(minilm, held, HOOK, feature_edit(sae, feature, mode, c * max_act))
            seen.append(_mean_act(sae, x, keep, feature))
        assert all(b >= a - 1e-4 for a, b in pairwise(seen)), (mode, seen)
        assert all(b > a for a, b in pairwise(seen[2:])), (mode, seen)  # strictly, once positive
        r = steer_sentence_embeddings(minilm, sae, feature, HOOK, max_act, coefs, cents, held, "python", mode, max_drift=0.3)
        np.testing.assert_allclose(r.feature_activation, seen, rtol=1e-3, atol=1e-3)  # the study reports what the model saw
        assert all(0 <= v <= 1 for v in r.nearest_target_frac) and all(d >= -1e-6 for d in r.drift)
        assert r.best_coefficient in coefs and r.drift[coefs.index(r.best_coefficient)] <= 0.3
        if mode == "add":  # coefficient 0 is the unsteered model
            assert r.drift[1] == 0 and r.similarity["python"][1] == pytest.approx(r.unsteered["similarity"]["python"], abs=1e-6)
        else:  # clamp at 0 is the ablation: it moves texts where the feature fires
            assert r.drift[1] > 0
