"""steer/attribution.py: the attribution is a correct first-order estimate
(finite differences) on the real MiniLM and a random GPT-2-shaped model."""

import pytest
import torch

from sae_workbench.kinds.encoder import pooled_embeddings
from sae_workbench.steer.attribution import feature_attribution
from sae_workbench.steer.embedding import category_centroids, embedding_metric
from sae_workbench.steer.generation import logprob_metric

from helpers import GPT_HOOK, MINILM_HOOK as HOOK, _capture, _gpt_setup, _tied_sae

pytestmark = pytest.mark.usefixtures("one_thread")  # two busy CPU cores: one intra-op thread (conftest.py)


def test_attribution_matches_finite_differences_on_minilm(minilm, mini_toks):
    tok = mini_toks["python-03"]
    x, keep = _capture(minilm, [tok], HOOK)
    sae = _tied_sae(x[keep.bool()], 64, HOOK, seed=1)
    cent = category_centroids(minilm, {"python": [mini_toks["python-01"], mini_toks["python-02"]]})["python"]
    att = feature_attribution(minilm, sae, HOOK, tok, embedding_metric(cent), top=10)
    clean = float((pooled_embeddings(minilm, [tok])[0] * cent).sum())
    assert att["metric"] == pytest.approx(clean, abs=1e-5)
    mags = [abs(a["attribution"]) for a in att["features"]]
    assert mags == sorted(mags, reverse=True) and [a["rank"] for a in att["features"]] == list(range(1, 11))
    assert len(att["per_token"]) == 3 and all(len(p["values"]) == len(tok.ids) for p in att["per_token"])
    assert all(p["values"][i] == 0 for p in att["per_token"] for i, s in enumerate(tok.special) if s)
    eps = 0.02
    for a in att["features"][:2]:
        i, d = a["feature"], sae.W_dec[a["feature"]].detach()

        def scaled(s, d=d):
            def edit(x, keep):
                return x + s * keep.unsqueeze(-1) * torch.relu(x @ d)[..., None] * d
            return float((pooled_embeddings(minilm, [tok], HOOK, edit)[0] * cent).sum())

        fd = (scaled(eps) - scaled(-eps)) / (2 * eps)  # d/ds M(x + s f_i d_i) at 0 ~ M(clean) - M(ablated)
        assert fd == pytest.approx(a["attribution"], rel=0.05, abs=1e-4), (i, fd, a)


def test_attribution_matches_finite_differences_on_gpt2(tiny_gpt2):
    toks, sae = _gpt_setup(tiny_gpt2, seed=3)
    tok = toks[0]
    att = feature_attribution(tiny_gpt2, sae, GPT_HOOK, tok, logprob_metric, top=32)
    mags = [abs(a["attribution"]) for a in att["features"]]
    assert mags == sorted(mags, reverse=True) and len(mags) == 32
    ids = torch.tensor([tok.ids])

    def metric(hooks):
        with torch.no_grad():
            logits = tiny_gpt2.model.run_with_hooks(ids, fwd_hooks=hooks)
        return float(torch.log_softmax(logits[0, :-1].double(), -1).gather(-1, ids[0, 1:, None]).mean())

    assert att["metric"] == pytest.approx(metric([]), abs=1e-5)
    eps = 0.05
    for a in att["features"][:3]:
        d = sae.W_dec[a["feature"]].detach()

        def scaled(s, d=d):
            def hook(x, hook):
                m = torch.ones(x.shape[:2])
                m[:, 0] = 0  # BOS is not a kept token
                return x + s * (m * torch.relu(x @ d))[..., None] * d
            return metric([(GPT_HOOK, hook)])

        fd = (scaled(eps) - scaled(-eps)) / (2 * eps)
        assert fd == pytest.approx(a["attribution"], rel=0.05, abs=1e-5), (a, fd)
