"""steer/ablation.py: ablation on the real MiniLM removes exactly the feature's
contribution; the frequency-matched control feature."""

import numpy as np
import pytest
import torch

from sae_workbench.edits import feature_edit
from sae_workbench.kinds.encoder import pooled_embeddings
from sae_workbench.steer.ablation import ablation_study, ablation_subsets, matched_control
from sae_workbench.steer.embedding import category_centroids, separation

from helpers import MINILM_HOOK as HOOK, _capture, _tied_sae

pytestmark = pytest.mark.usefixtures("one_thread")  # two busy CPU cores: one intra-op thread (conftest.py)


def test_ablation_removes_exactly_the_features_contribution(minilm, mini_toks):
    toks = [mini_toks["python-01"], mini_toks["formal-03"], mini_toks["math-02"]]  # different lengths: padding
    x, keep = _capture(minilm, toks, HOOK)
    sae = _tied_sae(x[keep.bool()], 64, HOOK)
    d0 = sae.W_dec[0].detach()
    f0 = torch.relu(x @ d0)
    assert float(f0[keep.bool()].min()) > 1.0  # the planted feature fires on every kept token
    out, _ = _capture(minilm, toks, HOOK, feature_edit(sae, 0, "clamp", 0.0))
    k = keep.bool()
    torch.testing.assert_close(out[k], (x - f0[..., None] * d0)[k], atol=1e-4, rtol=1e-5)
    assert torch.equal(out[~k], x[~k])  # [CLS], [SEP] and padding untouched
    with torch.no_grad():
        before, after = sae.encode(x[k]), sae.encode(out[k])
        assert after[:, 0].abs().max() < 1e-3  # re-encoded: the feature is gone
        torch.testing.assert_close(after[:, 1:], before[:, 1:], atol=1e-4, rtol=1e-4)  # the others are kept
        err = lambda v: v - sae.decode(sae.encode(v))
        torch.testing.assert_close(err(out[k]), err(x[k]), atol=1e-4, rtol=1e-4)  # and the SAE error term
    clamped, _ = _capture(minilm, toks, HOOK, feature_edit(sae, 0, "clamp", 3.0))
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(clamped[k])[:, 0], torch.full((int(k.sum()),), 3.0), atol=1e-3, rtol=0)

    # the study: ablating a feature that never fires changes nothing; the planted one does
    with torch.no_grad():
        sae.b_enc[5] = -1e4
    cents = category_centroids(minilm, {c: [mini_toks[f"{c}-0{i}"] for i in (1, 2)] for c in ("python", "formal")})
    texts = [mini_toks[i] for i in ("python-03", "python-07", "formal-05", "formal-09")]
    labels = ["python", "python", "formal", "formal"]
    pick = lambda xs, idx: xs if idx is None else [xs[i] for i in idx]
    scores = lambda hook=None, edit=None, idx=None: separation(pooled_embeddings(minilm, pick(texts, idx), hook, edit), cents, pick(labels, idx))
    res = ablation_study(scores, sae, HOOK, {"python": {"planted": 0, "dead": 5}}, labels, accuracy=True)
    dead, planted = res["python"]["dead"], res["python"]["planted"]
    assert dead["drop"] == 0 and dead["off_target_drop"] == 0 and dead["accuracy_clean"] == dead["accuracy_ablated"]
    assert abs(planted["drop"]) > 1e-3
    assert (planted["n_texts"], planted["n_off_target"]) == (2, 2)
    # scored on a subset (ablation_subsets: 1 own text, 1 of each other category), the same per-text drops
    subsets = ablation_subsets(labels, 1)
    assert subsets == {"python": [0, 2], "formal": [0, 2]}
    sub = ablation_study(scores, sae, HOOK, {"python": {"planted": 0}}, labels, subsets=subsets)["python"]["planted"]
    assert (sub["n_texts"], sub["n_off_target"]) == (1, 1)
    expect = scores(idx=[0]) - scores(HOOK, feature_edit(sae, 0, "clamp", 0.0), [0])
    assert sub["drop"] == pytest.approx(float(expect[0]), abs=1e-5) and sub["drop"] != 0


def test_matched_control():
    freq = np.array([0.0, 0.10, 0.11, 0.09, 0.5, 0.12, 0.0, 0.105, 0.3])
    rng = np.random.default_rng(0)
    picks = {matched_control(freq, 1, {1, 4}, rng, n_candidates=3) for _ in range(50)}
    assert picks == {2, 3, 7}  # the three closest alive non-specialists, never 0/6 (dead) or 1/4 (specialists)
    assert matched_control(freq, 1, {1, 7}, np.random.default_rng(0), 1) in (2, 3)
    a = [matched_control(freq, 4, {1}, np.random.default_rng(5), 4) for _ in range(3)]
    assert a == [matched_control(freq, 4, {1}, np.random.default_rng(5), 4) for _ in range(3)]  # seeded
    with pytest.raises(ValueError, match="control"):
        matched_control(np.zeros(4), 0, set(), rng)
