"""The measures that keep findings honest: greedy generation and log-probs made
our way equal TransformerLens's own, batched steering equals one coefficient at a
time, the random-model control, seed stability, the paired test behind every
verdict, and the independent text classifier."""

import numpy as np
import pytest
import torch

from sae_workbench.analysis.stats import best_match, mean_and_spread, pair_stability, paired_auroc_test, unit_decoder
from sae_workbench.config import CATEGORIES
from sae_workbench.edits import edit_hook, feature_edit
from sae_workbench.kinds.causal_lm import log_probs
from sae_workbench.steer.generation import greedy_continuation, steer_generation

from test_gpt2_path import HOOKS, _bos_text, _random_sae


def test_log_probs_and_greedy_generation_match_transformer_lens(tiny_gpt2):
    model = tiny_gpt2.model
    ids = torch.tensor([_bos_text([5, 6, 7, 8]).ids])
    with torch.no_grad():
        ref = torch.log_softmax(model(ids)[0].float(), -1)
        resid = model(ids, stop_at_layer=model.cfg.n_layers)[0]
    assert torch.equal(log_probs(model, resid), ref)  # the cached unembedding is the very matrix TransformerLens multiplies by
    sae = _random_sae()
    hook = (HOOKS[1], edit_hook(feature_edit(sae, 3, "add", 5.0), skip_bos=True))
    for hooks in ([], [hook]):
        ours = greedy_continuation(tiny_gpt2, ids, 6, hooks)
        with model.hooks(fwd_hooks=hooks), torch.no_grad():
            theirs = model.generate(ids, max_new_tokens=6, do_sample=False, stop_at_eos=False, verbose=False, use_past_kv_cache=False)
        assert torch.equal(ours, theirs)


def test_batched_steering_rows_equal_one_coefficient_at_a_time(tiny_gpt2):
    sae = _random_sae()
    prompts = [torch.tensor([_bos_text([11, 12, 13]).ids]), torch.tensor([_bos_text([40, 41]).ids])]
    coefs = [-2.0, 0.0, 3.0]
    batched = steer_generation(tiny_gpt2, sae, 5, HOOKS[1], 1.5, coefs, prompts, 5, "add")
    assert [(r["coefficient"], r["prompt"]) for r in batched] == [(c, p) for c in coefs for p in range(2)]
    for c in coefs:
        alone = steer_generation(tiny_gpt2, sae, 5, HOOKS[1], 1.5, [c], prompts, 5, "add")
        for a, b in zip(alone, [r for r in batched if r["coefficient"] == c]):
            assert a["continuation_ids"] == b["continuation_ids"]
            for k in ("feature_activation", "concept_score", "boosted_mass", "nll"):
                assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), k


def test_randomized_model_is_seeded_and_keeps_shapes_and_scales():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from sae_workbench.config import ProfileConfig
    from sae_workbench.control import randomize_weights
    from sae_workbench.models import ModelHandle

    def fresh():
        torch.manual_seed(1)
        cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_ctx=16, d_head=8, n_heads=4, d_mlp=64, d_vocab=100,
                                      act_fn="gelu_new", normalization_type="LN", seed=1)
        profile = ProfileConfig(loader="hooked_transformer", name="t", n_layers=2, kind="causal_lm")
        return ModelHandle(model=HookedTransformer(cfg), tokenizer=None, profile=profile, prepend_bos=True)

    trained = fresh()
    before = {k: v.detach().clone() for k, v in trained.model.named_parameters()}
    a = dict(randomize_weights(fresh(), seed=3).model.named_parameters())
    b = dict(randomize_weights(fresh(), seed=3).model.named_parameters())
    c = dict(randomize_weights(fresh(), seed=4).model.named_parameters())
    for k, w in before.items():
        assert torch.equal(a[k], b[k])  # same seed, same control model
        if w.dim() >= 2 and float(w.std()) == 0:
            assert torch.equal(a[k], w)  # a constant matrix (zero biases of shape [heads, d_head]) stays constant
        elif w.dim() >= 2:
            assert not torch.equal(a[k], w) and not torch.equal(a[k], c[k])
            assert float(a[k].detach().std()) == pytest.approx(float(w.std()), rel=0.25)
        else:
            assert torch.equal(a[k], w)  # norm scales and biases kept


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


def test_text_classifier_is_an_independent_judge():
    from conftest import ROOT
    from sae_workbench.data import read_texts
    from sae_workbench.steer.judge import fit_classifier

    texts = read_texts(ROOT / "data/texts/labelled.jsonl")
    clf = fit_classifier(texts)
    assert clf.fitted_on == "heldout" and clf.n_fit == sum(t.split == "heldout" for t in texts)
    assert clf.accuracy >= 0.8  # on the train split it never saw
    assert sorted(clf.categories) == sorted(CATEGORIES)
    code = "import os\n\ndef walk(root):\n    for name in os.listdir(root):\n        yield os.path.join(root, name)\n"
    probs = {c: float(clf.proba([code], c)[0]) for c in clf.categories}
    assert max(probs, key=probs.get) == "python" and abs(sum(probs.values()) - 1) < 1e-6
    with pytest.raises(ValueError, match=">= 2 categories"):
        fit_classifier([t for t in texts if t.category == "python"])


def test_pretrained_stage_offline_says_why_in_one_sentence(tmp_path):
    """Gemma Scope 2 needs the hub: the stage still succeeds, and every hook says why it has no pre-trained numbers."""
    import json
    import subprocess
    import sys
    import time

    from conftest import ROOT

    out = tmp_path / "pretrained.json"
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "stages/pretrained.py"), "--metrics", str(out)], cwd=ROOT, capture_output=True, text=True)
    took = time.perf_counter() - t
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads(out.read_text())
    assert m["available"] is False and m["release"]["resid_post"] == "gemma-scope-2-270m-pt-res"
    for h, v in m["hooks"].items():
        assert v["available"] is False and "pretrained" not in v  # no invented numbers
        if h.endswith("attn_out"):
            assert "no pre-trained SAE release for attn_out" in v["reason"]
        else:
            assert "unreachable here" in v["reason"] and v["release"] in v["reason"] and "\n" not in v["reason"]
            assert v["custom"]["explained_variance"] == json.loads((ROOT / f"metrics/sae/{h}.json").read_text())["explained_variance"]
    assert took < 60  # one failed hub probe per release (3 s timeout), not minutes of retries
