"""browser/pages.py and browser/site.py on a hand-built feature table (planted
category features, known values): what each page shows, and that the site
reads back through the types that wrote it."""

import json

import numpy as np
import pytest

from sae_workbench.activations import TokenTable
from sae_workbench.browser.pages import (
    AFTER, BEFORE, N_BANDS, N_TOP, PER_BAND, Context, FeaturePage, cofiring_neighbours, decoder_neighbours,
    feature_pages, seed_matches, selectivity,
)
from sae_workbench.browser.site import SHARD, read_index, read_page, write_site
from sae_workbench.config import CATEGORIES
from sae_workbench.features import FeatureTable



def planted_site_inputs(seed=0, n_texts_per_cat=6, tokens=40):
    """A planted table with longer texts (so a feature has more than 20 + 50 firing tokens):
    feature 10+k fires on category k's tokens with values rising along the text; feature 0
    everywhere at 0.5; feature 5 never; features 20..39 at random."""
    rng = np.random.default_rng(seed)
    texts, rows, feats, vals, ti, pos = [], [], [], [], [], []
    r = 0
    for k, c in enumerate(CATEGORIES):
        for j in range(n_texts_per_cat):
            words = [f"{c[:3]}{j}w{p}" for p in range(tokens)]
            if k == 0 and j == 0:
                words[3] = "</script><b>x</b>"  # a text that must not break the page
            text = " ".join(words)
            offs, a = [], 0
            for w in words:
                offs.append([a, a + len(w)])
                a += len(w) + 1
            texts.append({"id": f"{c}-{j}", "category": c, "split": "heldout" if j % 3 == 2 else "train", "text": text,
                          "tokens": words, "offsets": offs, "special": [0] * tokens})
            for p in range(tokens):
                own = 5.0 if (k, j, p) == (0, 0, 3) else 1.0 + p / tokens + j / 100  # the hostile token: feature 10's top
                for f, v in [(0, 0.5), (10 + k, own)] + [(int(rng.integers(20, 40)), float(rng.random()) + 0.01)]:
                    rows.append(r), feats.append(f), vals.append(v)
                ti.append(len(texts) - 1), pos.append(p)
                r += 1
    ft = FeatureTable(np.array(rows, np.int32), np.array(feats, np.int32), np.array(vals, np.float32), r, 40)
    table = TokenTable(texts, np.array(ti, np.int32), np.array(pos, np.int32))
    W_dec = rng.normal(size=(40, 16)).astype(np.float32)
    W_dec[11] = W_dec[12] + 0.01 * rng.normal(size=16)  # 11's nearest decoder is 12
    return ft, table, W_dec


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    ft, table, W_dec = planted_site_inputs()
    pages, index = feature_pages(ft, table, W_dec, np.random.default_rng(0), specialists={"python": 10, "math": 12},
                                 explanations={12: {"text": "math words", "scores": {"detection": 0.9}}},
                                 neuronpedia_url=lambda f: f"https://www.neuronpedia.org/x/y/{f}")
    out = write_site(tmp_path_factory.mktemp("browser"), "blocks.0.hook_resid_post", pages, index, table.texts,
                     {"model": "planted", "sae_source": "custom", "d_sae": ft.d_sae, "n_tokens": ft.n_rows, "n_texts": len(table.texts)})
    return ft, table, W_dec, pages, index, out


def test_a_page_for_every_alive_feature_and_none_for_a_dead_one(site):
    ft, table, _, pages, index, out = site
    alive = sorted(set(ft.feature.tolist()))
    assert [p.feature for p in pages] == alive == [r.feature for r in index]
    assert 5 not in alive and read_page(out, 5) is None
    meta, rows = read_index(out)
    assert meta["d_sae"] == 40 and [r.feature for r in rows] == alive


def test_contexts_are_the_strongest_then_bands_and_carry_the_features_values(site):
    ft, table, _, pages, _, _ = site
    p = next(x for x in pages if x.feature == 13)
    v = ft.feature_values(13)
    assert p.n_active == int((v > 0).sum()) and p.density == pytest.approx(p.n_active / ft.n_rows, abs=1e-7)
    assert p.max_act == pytest.approx(v.max(), abs=1e-3) and sum(p.histogram["counts"]) == p.n_active
    tops = [c.values[c.focus] for c in p.top]
    assert len(p.top) == N_TOP and tops == sorted(tops, reverse=True)
    assert tops[0] == pytest.approx(v.max(), abs=0.01)
    assert len(p.bands) == N_BANDS
    for b in p.bands:
        assert len(b["contexts"]) == min(PER_BAND, b["n"])
        for c in b["contexts"]:
            assert b["low"] - 0.01 <= c.values[c.focus] <= b["high"] + 0.01
    assert sum(b["n"] for b in p.bands) == p.n_active
    for c in p.top + [c for b in p.bands for c in b["contexts"]]:
        t = table.texts[c.text]
        assert t["category"] == CATEGORIES[3] and len(c.pieces) == len(c.values) <= BEFORE + AFTER + 1
        assert "".join(c.pieces).replace(" ", "") in t["text"].replace(" ", "")
        first = int(np.flatnonzero(table.text_index == c.text)[0])
        start = first + t["text"][: t["text"].index(c.pieces[0])].count(" ")
        assert c.values == pytest.approx([round(float(x), 2) for x in v[start:start + len(c.values)]], abs=1e-6)


def test_selectivity_neighbours_roles_explanations_links(site):
    ft, table, W_dec, pages, index, _ = site
    by = {p.feature: p for p in pages}
    for k, c in enumerate(CATEGORIES):
        assert by[10 + k].selectivity[c] == 1.0
        assert index[[r.feature for r in index].index(10 + k)].best_category == c
    assert by[0].selectivity["python"] == 0.5  # fires equally everywhere
    assert by[11].near_decoder[0]["feature"] == 12
    assert all(n["feature"] != 11 for n in by[11].near_decoder)
    # 10+k fires with 0 on every token of its category's texts: Jaccard 1/7 with 0, 0 with other categories' features
    assert by[11].near_cofiring[0] == {"feature": 0, "jaccard": pytest.approx(1 / 7, abs=1e-3)}
    assert by[10].specialist_for == ["python"] and by[12].specialist_for == ["math"] and by[13].specialist_for == []
    assert by[12].explanation["text"] == "math words" and by[12].neuronpedia.endswith("/12")


def test_neighbours_against_brute_force():
    ft, table, W_dec = planted_site_inputs(seed=1)
    u = W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    idx, val = decoder_neighbours(W_dec, n=3, chunk=7)
    assert np.array_equal(idx[:, 0], sim.argmax(1)) and np.allclose(val[:, 0], sim.max(1), atol=1e-5)
    B = ft.dense() > 0
    both = (B.T.astype(int) @ B.astype(int)).astype(float)
    cnt = B.sum(0)
    union = cnt[:, None] + cnt[None, :] - both
    jac = np.divide(both, union, out=np.zeros_like(both), where=union > 0)
    np.fill_diagonal(jac, -np.inf)
    idx, val = cofiring_neighbours(ft, n=3, chunk=9)
    assert np.allclose(val[:, 0], jac.max(1), atol=1e-6)
    sel = selectivity(ft, table)
    assert sel.shape == (len(CATEGORIES), 40)


def test_the_site_reads_back_through_its_types_and_no_text_closes_a_script(site):
    _, _, _, pages, index, out = site
    for p in pages:
        back = read_page(out, p.feature)
        assert isinstance(back, FeaturePage) and back.to_json() == p.to_json()
        assert all(isinstance(c, Context) for c in back.top)
    _, rows = read_index(out)
    assert [r.to_json() for r in rows] == [json.loads(json.dumps(r.to_json())) for r in index]
    for f in (out / "data").iterdir():
        assert "</script" not in f.read_text(encoding="utf-8").lower()
    assert len(list((out / "data").iterdir())) == len({p.feature // SHARD for p in pages})
    page = (out / "feature.html").read_text(encoding="utf-8")
    assert "blocks.0.hook_resid_post" in page and "__HOOK__" not in page
    assert not any(s in (out / n).read_text(encoding="utf-8") for n in ("index.html", "feature.html", "browser.js", "browser.css")
                   for s in ('src="http', 'href="http', "url(http", "@import", "fonts.googleapis", "cdn."))


def test_seed_match_finds_a_feature_in_a_permuted_seed_and_pages_carry_it():
    ft, table, W_dec = planted_site_inputs(seed=2)
    perm = np.random.default_rng(0).permutation(40)
    other = W_dec[perm] * 3.0  # the same directions, reordered and rescaled
    cos, idx = seed_matches(W_dec, {1: other})[1]
    assert np.array_equal(perm[idx], np.arange(40)) and np.allclose(cos, 1.0, atol=1e-5)
    pages, _ = feature_pages(ft, table, W_dec, np.random.default_rng(0), seeds={1: other, 2: -W_dec})
    p = pages[0]
    assert p.seed_match[0] == {"seed": 1, "feature": int(np.flatnonzero(perm == p.feature)[0]), "cosine": 1.0}
    assert p.seed_match[1]["seed"] == 2 and p.seed_match[1]["cosine"] < 1.0


def test_explanations_reach_the_pages_with_scores_that_could_not_be_computed_as_none(tmp_path):
    from sae_workbench.browser import _explanations
    from sae_workbench.cli import write_json
    from sae_workbench.explain.study import ExplainStudy, FeatureExplanation

    scores = {"detection": {"explanation": {"auroc": 0.8125}}, "fuzzing": {"explanation": {"auroc": None}}}
    f = FeatureExplanation(feature=7, role="sample", categories=[], explanation="commas in lists", top_tokens=[","],
                           examples=[], n_train_active=3, n_heldout_active=2, shuffled_from=None, scores=scores)
    write_json(tmp_path / "r.json", ExplainStudy("blocks.0.hook_resid_post", "test", [f], {}, {}).to_json())
    got = _explanations(tmp_path / "r.json", "blocks.0.hook_resid_post")
    assert got == {7: {"text": "commas in lists", "scores": {"detection": 0.812, "fuzzing": None}}}
    assert _explanations(tmp_path / "r.json", "blocks.1.hook_resid_post") == {}  # another hook's study
    assert _explanations(tmp_path / "missing.json", "blocks.0.hook_resid_post") == {}
