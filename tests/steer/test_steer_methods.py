"""steer/methods.py and the two new ways steer/generation.py steers, on a random
GPT-2-shaped model: a direction equal to a feature's decoder row steers exactly as
the feature does; a prompt prefix generates as plain greedy decoding from the prefixed
prompt and is scored as a continuation of the bare one; and the comparison of methods
finds the baseline that steers towards what the judge reads, not the one that does not."""

import dataclasses

import numpy as np
import pytest
import torch

from sae_workbench.analysis.results import Specialist
from sae_workbench.config import SteerConfig
from sae_workbench.steer.generation import generation_study, steer_generation
from sae_workbench.steer.methods import compare_methods, method_tally

from helpers import GPT2_HOOKS as HOOKS, GPT_HOOK, _bos_text, _gpt_setup, _random_sae

pytestmark = pytest.mark.usefixtures("one_thread")  # two busy CPU cores: one intra-op thread (conftest.py)


class IdWords:  # the tiny model's vocabulary is ids: each id a word, so a judge has text to read
    def decode(self, ids):
        return " ".join(f"w{int(i)}" for i in ids)


def _prompts(n):
    return [torch.tensor([_bos_text([11 + i, 12 + 3 * i, 13 + 2 * i]).ids]) for i in range(n)]


def test_a_direction_equal_to_the_decoder_row_steers_as_the_feature_does(tiny_gpt2):
    sae = _random_sae()
    prompts, coefs = _prompts(2), [-2.0, 0.0, 3.0]
    feat = steer_generation(tiny_gpt2, sae, 5, HOOKS[1], 1.5, coefs, prompts, 5, "add")
    vec = steer_generation(tiny_gpt2, sae, 5, HOOKS[1], 1.5, coefs, prompts, 5, "clamp", direction=sae.W_dec[5].detach())
    for a, b in zip(feat, vec):  # mode is ignored with a direction: always added
        assert a["continuation_ids"] == b["continuation_ids"]
        for k in ("feature_activation", "concept_score", "boosted_mass", "nll"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
    other = steer_generation(tiny_gpt2, sae, 5, HOOKS[1], 1.5, [3.0], prompts, 5, "add", direction=sae.W_dec[6].detach())
    assert [r["continuation_ids"] for r in other] != [r["continuation_ids"] for r in feat if r["coefficient"] == 3.0]


def test_a_prompt_prefix_generates_from_the_prefixed_prompt_and_is_scored_on_the_bare_one(tiny_gpt2):
    sae = _random_sae()
    model = tiny_gpt2.model
    prompt, prefix = _prompts(1)[0], torch.tensor([[300, 301, 302, 303]])
    row = steer_generation(tiny_gpt2, sae, 5, HOOKS[1], 1.5, [0.0], [prompt], 6, "add", prefix=prefix)[0]
    start = torch.cat([prompt[:, :1], prefix, prompt[:, 1:]], 1)
    with torch.no_grad():
        plain = model.generate(start, max_new_tokens=6, do_sample=False, stop_at_eos=False, verbose=False, use_past_kv_cache=False)
        assert row["continuation_ids"] == plain[0, start.shape[1]:].tolist()
        bare = torch.cat([prompt, torch.tensor([row["continuation_ids"]])], 1)
        p = prompt.shape[1]
        lp = torch.log_softmax(model(bare)[0, p - 1 : -1], -1).gather(-1, bare[0, p:, None])
    assert row["nll"] == pytest.approx(float(-lp.mean()), rel=1e-4)
    unprompted = steer_generation(tiny_gpt2, sae, 5, HOOKS[1], 1.5, [0.0], [prompt], 6, "add")[0]
    assert unprompted["continuation_ids"] != row["continuation_ids"]  # the prefix changed what was generated


def test_the_comparison_finds_the_method_that_moves_what_the_judge_reads(tiny_gpt2):
    """The judge reads the share of one token (w77) in a continuation. DiffMean's 'direction'
    is that token's unembedding column (it raises w77's logit); the specialist is a feature of
    a random SAE; the prompt prefix is w77 repeated. DiffMean must work and beat the specialist;
    the three methods sit side by side with paired tests over the same prompts."""
    _, sae = _gpt_setup(tiny_gpt2)
    handle = dataclasses.replace(tiny_gpt2, tokenizer=IdWords())
    target = "w77"
    judge = lambda texts: np.array([t.split().count(target) / max(1, len(t.split())) for t in texts])  # noqa: E731
    prompts, coefs = _prompts(8), [-1.0, 0.0, 1.0, 4.0]

    def one(feature, max_act, category, direction=None, prefix=None, coefficients=None):
        return generation_study(handle, sae, feature, GPT_HOOK, max_act, coefs if coefficients is None else coefficients, prompts, 6,
                                "add", max_ppl_ratio=1e9, top_tokens=10, judge=judge, n_boot=300, seed=0,
                                direction=direction, prefix=prefix)

    spec = Specialist(feature=3, train_score=1.0, train_auroc=1.0, heldout_score=1.0, mean_in_heldout=1.0, max_act=2.0)
    w_u = tiny_gpt2.model.W_U[:, 77].detach().numpy()
    cfg = SteerConfig(hook=GPT_HOOK, prompt_prefixes={"python": "w77 w77 w77", **{c: "x" for c in SteerConfig().prompt_prefixes if c != "python"}})
    out = compare_methods(one, sae, {"python": spec}, {"python": w_u * 50}, {}, cfg, np.random.default_rng(0), 300, 0.05,
                          lambda c: torch.tensor([[77, 77, 77]]))
    r = out["python"]
    assert set(r) >= {"sae", "diffmean", "prompt", "diffmean_vs_sae", "prompt_vs_sae"}
    assert r["decoder_norm"] == pytest.approx(float(sae.W_dec[3].detach().norm()), rel=1e-5) and r["prefix"] == "w77 w77 w77"
    assert r["prompt"]["best_coefficient"] == 0.0 and r["diffmean_vs_sae"]["n"] == len(prompts)
    assert r["diffmean"]["works"] and r["diffmean"]["best_coefficient"] > 0
    assert r["diffmean_vs_sae"]["verdict"] == "higher" and r["diffmean_vs_sae"]["ci_low"] > 0
    assert r["diffmean"]["best_classifier_prob"] > r["sae"]["best_classifier_prob"]
    tally = method_tally(out)
    assert tally["categories"] == 1 and tally["diffmean"] == 1 and sum(tally["prompt_vs_sae"].values()) == 1
    # the direction is rescaled: DiffMean given at any length steers the same
    again = compare_methods(one, sae, {"python": spec}, {"python": w_u * 0.01}, {}, cfg, np.random.default_rng(0), 300, 0.05,
                            lambda c: torch.tensor([[77, 77, 77]]))
    assert again["python"]["diffmean"]["combined"] == pytest.approx(r["diffmean"]["combined"], abs=1e-6)
