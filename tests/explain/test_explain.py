"""sae_workbench/explain: contexts around where a feature fires, quantile-band sampling,
the answer cache, the scorers on inputs built to fool them (planted nulls and degenerate
explanations must score at chance, a planted match well above it), the study's controls
and its typed result, with the real all-MiniLM-L6-v2 and the real Gemma 3 270M judge."""

import json

import numpy as np
import pytest

from sae_workbench.activations import TokenTable, kept_index
from sae_workbench.config import ExplainConfig
from sae_workbench.explain import scoring
from sae_workbench.explain.contexts import Context, explainer_examples, quantile_sample, shown_tokens, text_contexts, top_tokens
from sae_workbench.explain.llm import Cached, EndpointLM, LocalLM, first_line, first_line_done
from sae_workbench.explain.study import CONDITIONS, SCORERS, ExplainStudy, choose_features, derangement, explain_study
from sae_workbench.features import FeatureTable

from helpers import _texts

WORDS = "the a of to in and is was for on with as by at from this that it be are".split()


def _table(n_texts=40, seed=0):
    """Texts of 8-30 word tokens, half train half held-out; feature 0 fires on the word 'cat'
    (strength 1 + its position / 10), feature 1 on every 'dog', feature 2 never."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n_texts):
        n = int(rng.integers(8, 30))
        toks = ["<bos>"] + [" " + str(rng.choice(WORDS + (["cat"] if i % 2 else []) + (["dog"] if i % 3 == 0 else []))) for _ in range(n)]
        ends = np.cumsum([len(t) for t in toks[1:]]).tolist()
        texts.append({"id": f"t{i}", "category": "python" if i % 2 else "math", "split": "train" if i % 4 < 2 else "heldout",
                      "text": "".join(toks[1:]), "tokens": toks, "special": [1] + [0] * n,
                      "offsets": [[0, 0]] + [[e - len(t), e] for t, e in zip(toks[1:], ends)]})
    ti, pos = kept_index(texts)
    table = TokenTable(texts=texts, text_index=ti, position=pos)
    rows, feats, vals = [], [], []
    for r, (t, p) in enumerate(zip(ti, pos)):
        tok = texts[t]["tokens"][p].strip()
        if tok == "cat":
            rows.append(r), feats.append(0), vals.append(1.0 + p / 10)
        if tok == "dog":
            rows.append(r), feats.append(1), vals.append(2.0)
    ft = FeatureTable(np.array(rows, dtype=np.int64), np.array(feats, dtype=np.int64), np.array(vals, dtype=np.float32), len(ti), 3)
    return table, ft


def test_contexts_are_windows_around_the_strongest_token_of_each_text():
    table, ft = _table()
    ctx = text_contexts(ft.feature_values(0), table, window=6)
    assert [c.text for c in ctx] == list(range(len(table.texts)))
    for c in ctx:
        toks = table.texts[c.text]["tokens"][1:]
        assert len(c.tokens) == min(6, len(toks)) and "".join(c.tokens) in "".join(toks)
        if c.text % 2:  # texts that may hold 'cat'
            vals = [1.0 + p / 10 for p, t in enumerate(table.texts[c.text]["tokens"]) if t.strip() == "cat"]
            assert c.max_act == pytest.approx(max(vals, default=0.0))
            if vals:
                assert c.tokens[int(np.argmax(c.acts))].strip() == "cat" and "<<cat>>" in c.marked()
        else:
            assert c.max_act == 0 and "<<" not in c.marked()
    assert top_tokens(ctx) == ["cat"]
    assert all(c.max_act == 0 for c in text_contexts(ft.feature_values(2), table, 6))


def test_quantile_sampling_spreads_over_the_range_and_the_explainer_sees_the_top():
    rng = np.random.default_rng(0)
    ctx = [Context(text=i, split="train", category="x", tokens=["a"], acts=[float(i)]) for i in range(1, 101)]
    pick = quantile_sample(ctx, 10, rng)
    acts = sorted(c.max_act for c in pick)
    assert len(pick) == 10 and len({c.text for c in pick}) == 10
    assert acts[0] <= 20 and acts[-1] >= 81  # every band of 20 has its two
    assert all(sum(lo < a <= lo + 20 for a in acts) == 2 for lo in range(0, 100, 20))
    ex = explainer_examples(ctx, 12, rng)
    assert [c.max_act for c in ex[:6]] == [100, 99, 98, 97, 96, 95] and len(ex) == 12 and len({c.text for c in ex}) == 12
    assert quantile_sample(ctx[:3], 10, rng) == sorted(ctx[:3], key=lambda c: -c.max_act)


def test_the_cache_answers_repeated_calls_and_survives_a_cut_line(tmp_path):
    class Counting:
        ident = "counting"

        def __init__(self):
            self.n = 0

        def complete_many(self, prompts, max_tokens):
            self.n += len(prompts)
            return [f"answer to {p}" for p in prompts]

        def yes_no_grid(self, head, texts, tails):
            self.n += len(texts) * len(tails)
            return [[float(len(head + t + e)) for e in tails] for t in texts]

    inner = Counting()
    c = Cached(inner, tmp_path / "cache.jsonl")
    assert c.complete("x", 5) == "answer to x" and c.yes_no_grid("h", ["a", "ab"], ["?"]) == [[3.0], [4.0]]
    assert c.complete_many(["y", "x"], 5) == ["answer to y", "answer to x"] and inner.n == 1 + 2 + 1
    # only the cells not stored are asked: the new text against both tails, the new tail against the old text
    assert c.yes_no_grid("h", ["ab", "abc"], ["?", "??"]) == [[4.0, 5.0], [5.0, 6.0]] and inner.n == 1 + 2 + 1 + 4
    assert c.complete("x", 5) == "answer to x" and inner.n == 8 and c.hits == 1 + 1 + 1 and c.calls == 1 + 2 + 2 + 4 + 1
    with open(tmp_path / "cache.jsonl", "a") as f:
        f.write('{"k": "cut')  # an interrupted run's last line
    again = Cached(Counting(), tmp_path / "cache.jsonl")
    assert again.complete("x", 5) == "answer to x" and again.yes_no_grid("h", ["abc", "a"], ["??", "?"]) == [[6.0, 5.0], [4.0, 3.0]]
    assert again.llm.n == 1 and again.hits == 1 + 3  # ("a", "??") was never asked
    fresh = Cached(Counting(), tmp_path / "cache.jsonl")
    assert fresh.yes_no_grid("h", ["a"], ["??"]) == [[4.0]] and fresh.llm.n == 0  # stored on its own line after the cut one
    assert Cached(Counting(), tmp_path / "other.jsonl").complete("x", 6) and first_line("\n\n  one \ntwo") == "one"


def test_an_endpoint_that_does_not_answer_is_one_line():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    llm = EndpointLM(f"http://127.0.0.1:{port}/v1", "m", timeout=5)
    with pytest.raises(RuntimeError, match=r"did not answer .*explain.endpoint: ''") as e:
        llm.complete("hi", 3)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR"):
        EndpointLM("http://127.0.0.1:1/v1", "m", "NO_SUCH_KEY_VAR")
    for bad, key in ((dict(endpoint="ftp://x"), "explain.endpoint"), (dict(endpoint="http://x/v1"), "explain.endpoint_model"),
                     (dict(api_key_env="MY KEY"), "explain.api_key_env"), (dict(n_score=1), "explain.n_score")):
        with pytest.raises(ValueError, match=key):
            ExplainConfig(**bad)


def _category_contexts(category, n, split="heldout"):
    out = []
    for t in [t for t in _texts() if t.category == category and t.split == split][:n]:
        words = t.text.split()[:30]
        out.append(Context(text=0, split=split, category=category, tokens=[" " + w for w in words], acts=[1.0] + [0.0] * (len(words) - 1)))
    return out


@pytest.fixture(scope="module")
def minilm():
    from sae_workbench.config import load_params
    from sae_workbench.models import load_model

    from helpers import ROOT

    return load_model(load_params(ROOT / "params.yaml").profiles["minilm"])


@pytest.fixture(scope="module")
def embed(minilm):
    from sae_workbench.kinds.encoder import pooled_embeddings

    h = minilm
    return scoring.memo_embed(lambda texts: pooled_embeddings(h, [h.tokenize(t, 128) for t in texts]).numpy())


def test_contexts_read_wordpiece_tokens_with_their_spaces(minilm):
    """MiniLM's WordPiece offsets leave out the spaces between words: a context must still read
    as the text (words apart, pieces of a word together), and its marks fall on whole tokens."""
    texts = ["The cat sat on the mat, didn't it?", "  Voilà   l'été à Paris\n\tdef f(x): return x**2  ", "x"]
    records = []
    for i, text in enumerate(texts):
        tk = minilm.tokenize(text, 64)
        records.append({"id": f"t{i}", "category": "math", "split": "heldout", "text": text, "tokens": tk.tokens,
                        "offsets": [list(o) for o in tk.offsets], "special": [int(s) for s in tk.special]})
    ti, pos = kept_index(records)
    table = TokenTable(texts=records, text_index=ti, position=pos)
    vals = np.zeros(len(ti), dtype=np.float32)
    vals[1] = 2.0  # the second kept token of the first text: "cat"
    ctx = text_contexts(vals, table, window=64)
    for c, text in zip(ctx, texts):
        assert " ".join(c.plain().split()) == " ".join(text.split())  # the words as written (case kept), spaces between them
    assert ctx[0].marked() == "The <<cat>> sat on the mat, didn't it?"
    assert any(t.startswith(" ") for t in shown_tokens(records[1])) and shown_tokens(records[2]) == records[2]["tokens"]


def test_the_embedding_scorer_finds_a_match_and_not_a_planted_null(embed):
    py, fr = _category_contexts("python", 10), _category_contexts("non_english", 10)
    assert scoring.embedding(embed, "Python source code: functions, imports and variables", py, fr)["auroc"] >= 0.9
    # planted null: activating and non-activating contexts drawn from one pool, split at random
    pool = _category_contexts("formal", 10) + _category_contexts("conversational", 10)
    rng = np.random.default_rng(0)
    aucs = []
    for _ in range(20):
        p = rng.permutation(len(pool))
        aucs.append(scoring.embedding(embed, "formal official announcements", [pool[i] for i in p[:10]], [pool[i] for i in p[10:]])["auroc"])
    assert abs(np.mean(aucs) - 0.5) < 0.08
    # a degenerate explanation does not separate the matched contexts either
    assert abs(scoring.embedding(embed, "the the the the", py, fr)["auroc"] - 0.5) < 0.35


@pytest.mark.slow  # the real Gemma 3 270M as judge
def test_the_gemma_judge_reads_each_cell_as_its_whole_prompt_and_a_planted_null_at_chance(gemma):
    """The embedded judge's mechanics and its null. Whether it finds planted explanations is
    not asserted: on 14 category pairs (10 held-out texts each), Gemma 3 270M's AUROC
    averages 0.46 with the explanation before the text and 0.52 with it after
    (bench/judge_layouts.py), so the stage measures it (study.judge_check) and the
    chapter says what it means."""
    import torch

    from sae_workbench.kinds.causal_lm import log_probs

    llm = LocalLM(gemma)
    py, fr = _category_contexts("python", 10), _category_contexts("non_english", 10)
    match, degenerate = scoring.detection(llm, ["Python source code", "the the the the"], py, fr)
    assert match["n_pos"] == degenerate["n_pos"] == 10 and match["n_neg"] == 10 and 0 <= match["auroc"] <= 1
    # the grid (head once, texts once in padded batches, tails after them, two W_U columns) gives
    # each cell's answer as the whole prompt run alone, without a cache, through the full vocabulary
    tok = gemma.tokenizer
    texts = [scoring.TEXT.format(text=scoring._one_line(c.plain())) for c in (py[0], fr[0], py[1])]
    tails = [scoring.TAIL.format(explanation=e) for e in ("Python source code", "French text")]
    grid = np.array(llm.yes_no_grid(scoring.DETECTION_HEAD, texts, tails))
    for i, t in enumerate(texts):
        for j, e in enumerate(tails):
            ids = [tok.bos_token_id] + [x for part in (scoring.DETECTION_HEAD, t, e) for x in tok.encode(part, add_special_tokens=False)]
            with torch.no_grad():
                lp = log_probs(gemma.model, gemma.model(torch.tensor([ids]), stop_at_layer=gemma.n_layers)[0, -1])
            assert abs(grid[i, j] - float(lp[llm.yes] - lp[llm.no])) < 2e-3, (i, j, grid[i, j])
    pool = py[:5] + fr[:5] + _category_contexts("math", 5) + _category_contexts("social", 5)
    rng = np.random.default_rng(0)
    aucs = []
    for _ in range(6):
        p = rng.permutation(len(pool))
        aucs.append(scoring.detection(llm, ["Python source code"], [pool[i] for i in p[:10]], [pool[i] for i in p[10:]])[0]["auroc"])
    assert abs(np.mean(aucs) - 0.5) < 0.15, aucs
    fz = scoring.fuzzing(llm, ["the word 'def'"], py, np.random.default_rng(0))[0]
    assert fz["n_pos"] == fz["n_neg"] == 10 and 0 <= fz["auroc"] <= 1
    text = scoring.explain(llm, py[:6], 16)
    assert text and "\n" not in text and len(text) <= 200
    # explanations stop as soon as every row's first line is done: the same lines as all 24 tokens
    from sae_workbench.steer.generation import greedy_continuation, left_pad

    examples = [py[:4], fr[:4], _category_contexts("math", 4), _category_contexts("social", 4)]
    prompts = [scoring.EXPLAIN_PROMPT.format(examples="\n".join(scoring._one_line(c.marked()) for c in ex)) for ex in examples]
    early = llm.complete_many(prompts, 24)
    ids, mask = left_pad([torch.tensor([llm._ids(p)]) for p in prompts], gemma.pad_id)
    full = greedy_continuation(gemma, ids, 24, mask=mask)[:, ids.shape[1]:]
    assert early == [first_line(tok.decode(g.tolist(), skip_special_tokens=True)) for g in full]
    steps = []
    greedy_continuation(gemma, ids, 24, mask=mask, stop=lambda new: steps.append(new.shape[1]) or new.shape[1] == 3)
    assert steps == [1, 2, 3]  # stop sees the new tokens so far and ends the generation


def test_a_first_line_is_done_once_a_line_break_follows_it():
    for text, done in [("", False), ("  \n\n ", False), ("numbers", False), ("numbers\n", True), ("\n\n  numbers", False),
                       ("\n numbers \nmore", True), ("a\r", True), ("a\u2028b", True), (" \t", False)]:
        assert first_line_done(text) == done, text
        if done:  # nothing appended changes the first line
            assert first_line(text + "zz\nyy") == first_line(text)


def test_the_study_explains_scores_and_controls_and_reads_back(embed):
    """A study on the synthetic table with a judge that reads: Yes when the explanation's first
    word is in the text. The 'cat' feature's explanation starts with cat; its shuffled control
    is the 'dog' feature's. The scores must say the explanation beats its shuffled control."""
    table, ft = _table(80)
    from sae_workbench.analysis.results import Specialist

    class Reader:
        ident = "reader"

        def complete_many(self, prompts, max_tokens):
            blocks = [p.rsplit("Texts:\n", 1)[1] for p in prompts]
            return ["cat words" if "<<cat>>" in b else "dog words" if "<<dog>>" in b else "nothing" for b in blocks]

        def yes_no_grid(self, head, texts, tails):
            out = []
            for text in texts:
                row = []
                for tail in tails:
                    expl = tail.split("Explanation: ", 1)[1].split("\n", 1)[0]
                    first = expl.split('"')[1] if '"' in expl else expl.split()[0]  # a quoted token, else the first word
                    hit = f"<<{first}>>" in text if "<<" in text else first in text.split()
                    row.append(3.0 if hit else -3.0)
                out.append(row)
            return out

    spec = {"python": Specialist(feature=0, train_score=1, train_auroc=1, heldout_score=1, mean_in_heldout=1)}
    cfg = ExplainConfig(hook="blocks.1.hook_resid_post", n_random=5, n_examples=6, n_score=6, window=8)
    study = explain_study(ft, table, spec, Reader(), embed, cfg, np.random.default_rng(0), cfg.hook, n_boot=200)
    by = study.by_feature()
    assert set(by) == {0, 1} and by[0].role == "specialist" and by[0].categories == ["python"] and by[1].role == "sample"
    assert by[0].explanation == "cat words" and by[1].explanation == "dog words" and by[0].top_tokens == ["cat"]
    assert by[0].shuffled_from == 1 and by[1].shuffled_from == 0
    for f in (0, 1):
        assert by[f].auroc("detection") == 1.0 and by[f].auroc("detection", "shuffled") < 0.75
        assert by[f].auroc("fuzzing") == 1.0 and by[f].auroc("detection", "top_tokens") == 1.0
    assert set(study.summary) == set(SCORERS) and set(study.summary["detection"]["mean"]) == set(CONDITIONS)
    # another model's features, explained alike and kept inside the study (no judge check of its own)
    other = explain_study(ft, table, spec, Reader(), embed, cfg, np.random.default_rng(1), "blocks.0.hook_resid_post", n_boot=200, check=False)
    assert other.judge_check == {} and other.summary["detection"]["mean"]["explanation"]["mean"] == 1.0
    study.models["other"] = other
    text = json.dumps(study.to_json())
    back = ExplainStudy.from_json(json.loads(text))
    assert json.dumps(back.to_json()) == text and back.metrics_json() == study.metrics_json()
    assert study.metrics_json()["detection"]["explanation"] == 1.0
    m = study.metrics_json()["models"]["other"]
    assert m["hook"] == "blocks.0.hook_resid_post" and "judge_check" not in m and m["detection"]["explanation"] == 1.0
    assert set(study.judge_check["per_category"]) == {"python", "math"} and study.metrics_json()["judge_check"]["verdict"] in ("above_chance", "at_chance")


def test_the_judge_check_tells_a_judge_that_reads_from_a_blind_one():
    """study.judge_check on the synthetic table (python texts hold 'cat', math texts never):
    a judge that answers from the text finds each category's planted description, a judge
    that answers the same whatever the text is at chance; the report's sentence says which."""
    from types import SimpleNamespace

    from sae_workbench import claims
    from sae_workbench.explain.study import PLANTED, judge_check

    table, _ = _table(80)

    class Judge:
        def __init__(self, reads):
            self.reads = reads

        def yes_no_grid(self, head, texts, tails):
            assert head == scoring.DETECTION_HEAD
            if not self.reads:
                return [[1.0 for _ in tails] for _ in texts]
            return [[3.0 if ("cat" in t.split()) == (PLANTED["python"] in e) else -3.0 for e in tails] for t in texts]

    rng = np.random.default_rng(0)
    good, blind = judge_check(Judge(True), table, 32, rng, 200, 0.05), judge_check(Judge(False), table, 32, rng, 200, 0.05)
    assert set(good["per_category"]) == {"python", "math"} == set(good["planted"]) and good["per_category"]["python"]["n_pos"] == 6
    assert good["mean"]["mean"] >= 0.7 and good["verdict"] == "above_chance", good  # a python window may miss its "cat"
    assert blind["mean"]["mean"] == 0.5 and blind["verdict"] == "at_chance"
    assert "above chance, so its scores below can rank" in claims.judge_check_claim(SimpleNamespace(judge_check=good))
    assert "cannot tell a right explanation from a wrong one" in claims.judge_check_claim(SimpleNamespace(judge_check=blind))
    assert claims.judge_check_claim(SimpleNamespace(judge_check={})) is None
    assert claims.judge_caveat(SimpleNamespace(judge_check=good)) == claims.judge_caveat(None) == ""
    assert "only at chance (mean AUROC 0.500)" in claims.judge_caveat(SimpleNamespace(judge_check=blind))


def test_feature_choice_and_derangement():
    from sae_workbench.analysis.results import Specialist

    rng = np.random.default_rng(0)
    n_train, n_held = np.array([5, 5, 1, 5, 5, 5]), np.array([3, 3, 3, 0, 3, 3])
    spec = {c: Specialist(feature=f, train_score=1, train_auroc=1, heldout_score=1, mean_in_heldout=1)
            for c, f in (("python", 0), ("math", 0), ("urls", 2))}
    chosen = choose_features(spec, n_train, n_held, 2, rng)
    assert chosen[0] == (0, "specialist", ["python", "math"]) and len(chosen) == 3
    assert {f for f, r, _ in chosen[1:]} <= {1, 4, 5} and all(r == "sample" for _, r, _ in chosen[1:])
    for n in (2, 3, 10):
        p = derangement(n, rng)
        assert sorted(p) == list(range(n)) and not (p == np.arange(n)).any()


def test_a_score_without_contexts_on_one_side_is_none_and_the_study_still_writes_json():
    ctx = _category_contexts("python", 3)
    d = scoring._auroc_and_accuracy([1.0, 2.0], [])
    assert d["auroc"] is None and d["balanced_accuracy"] is None and json.dumps(d)
    from sae_workbench.explain.study import FeatureExplanation

    fe = FeatureExplanation(feature=1, role="sample", categories=[], explanation="x", top_tokens=[], examples=[], n_train_active=3,
                            n_heldout_active=len(ctx), shuffled_from=2, scores={"detection": {"explanation": d}})
    assert np.isnan(fe.auroc("detection"))
