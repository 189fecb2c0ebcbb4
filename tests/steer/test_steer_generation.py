"""steer/generation.py on a random GPT-2-shaped model: greedy generation and
log-probs made our way equal TransformerLens's own, batched steering equals one
coefficient at a time, and the generation study is well formed."""

import dataclasses

import numpy as np
import pytest
import torch

from sae_workbench.edits import edit_hook, feature_edit
from sae_workbench.kinds.causal_lm import log_probs
from sae_workbench.steer.generation import generation_study, greedy_continuation, left_pad, steer_generation
from sae_workbench.steer.sweep import best_coefficient

from helpers import GPT2_HOOKS as HOOKS, GPT_HOOK, _bos_text, _gpt_setup, _random_sae

# one intra-op thread (conftest.py), unlike in test_controls.py where the first two tests were: after the steer
# modules before this one have set and restored the thread count, the default threads make them some 30x slower
pytestmark = pytest.mark.usefixtures("one_thread")


def test_log_probs_and_greedy_generation_match_transformer_lens(tiny_gpt2):
    model = tiny_gpt2.model
    ids = torch.tensor([_bos_text([5, 6, 7, 8]).ids])
    with torch.no_grad():
        ref = torch.log_softmax(model(ids)[0].float(), -1)
        resid = model(ids, stop_at_layer=model.cfg.n_layers)[0]
    # x @ W_U where TransformerLens runs F.linear on a transposed copy: the same log-probs to float32 rounding
    torch.testing.assert_close(log_probs(model, resid), ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(log_probs(model, resid).argmax(-1), ref.argmax(-1))
    sae = _random_sae()
    hook = (HOOKS[1], edit_hook(feature_edit(sae, 3, "add", 5.0), skip_bos=True))
    for hooks in ([], [hook]):
        ours = greedy_continuation(tiny_gpt2, ids, 6, hooks, kv_cache=False)
        with model.hooks(fwd_hooks=hooks), torch.no_grad():
            theirs = model.generate(ids, max_new_tokens=6, do_sample=False, stop_at_eos=False, verbose=False, use_past_kv_cache=False)
        assert torch.equal(ours, theirs)
        # with the key-value cache each step runs one new position, edited as a full pass edits it: the same tokens
        # (TransformerLens's own cached generate gives other tokens on this tokenizer-less model, so the full pass is the reference)
        assert torch.equal(greedy_continuation(tiny_gpt2, ids, 6, hooks, kv_cache=True), ours)


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


def test_prompts_of_other_lengths_left_padded_into_one_batch_equal_each_prompt_alone(tiny_gpt2):
    """steer_generation runs every prompt in one left-padded batch: each prompt's rows
    (continuations, read-back activations, NLL, boosted mass) are those it gets alone,
    with and without the key-value cache, in both modes and with a prefix."""
    sae = _random_sae()
    prompts = [torch.tensor([_bos_text(list(range(30, 30 + n))).ids]) for n in (1, 5, 3)]
    coefs = [-2.0, 0.0, 3.0]
    for mode, prefix in (("add", None), ("clamp", None), ("add", torch.tensor([[7, 8]]))):
        together = steer_generation(tiny_gpt2, sae, 5, HOOKS[1], 1.5, coefs, prompts, 5, mode, prefix=prefix)
        for i, ids in enumerate(prompts):
            alone = steer_generation(tiny_gpt2, sae, 5, HOOKS[1], 1.5, coefs, [ids], 5, mode, prefix=prefix)
            for a, b in zip(alone, [r for r in together if r["prompt"] == i]):
                assert a["coefficient"] == b["coefficient"] and a["continuation_ids"] == b["continuation_ids"], (mode, i)
                for k in ("feature_activation", "concept_score", "boosted_mass", "nll"):
                    assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (mode, i, k)
    # the padded batch through greedy_continuation: each row's tokens are its own, cached or not
    ids, mask = left_pad(prompts)
    assert mask.sum(1).tolist() == [p.shape[1] for p in prompts] and (ids[mask == 0] == 0).all()
    hook = [(HOOKS[1], edit_hook(feature_edit(sae, 3, "add", 5.0), prompt_keep=mask * (torch.arange(ids.shape[1]) != (ids.shape[1] - mask.sum(1))[:, None])))]
    for kv in (True, False):
        out = greedy_continuation(tiny_gpt2, ids, 6, hook, kv_cache=kv, mask=mask)
        for i, p in enumerate(prompts):
            alone = greedy_continuation(tiny_gpt2, p, 6, [(HOOKS[1], edit_hook(feature_edit(sae, 3, "add", 5.0), skip_bos=True))], kv_cache=kv)
            assert out[i, ids.shape[1]:].tolist() == alone[0, p.shape[1]:].tolist(), (kv, i)


def test_boosted_mass_is_the_steered_distributions_mass_at_each_generated_token(tiny_gpt2):
    """boosted_mass, taken from the generation steps' own distributions, equals the mass a
    full steered pass over prompt + continuation puts on the boosted tokens, averaged over
    the positions that predicted each generated token."""
    from sae_workbench.kinds.causal_lm import final_residual
    from sae_workbench.steer.generation import boosted_tokens

    sae = _random_sae()
    ids = torch.tensor([_bos_text([21, 22, 23]).ids])
    rows = steer_generation(tiny_gpt2, sae, 5, HOOKS[1], 1.5, [0.0, 4.0], [ids], 5, "add", top_tokens=7)
    boosted = boosted_tokens(tiny_gpt2, sae, 5, 7)
    for r in rows:
        full = torch.cat([ids, torch.tensor([r["continuation_ids"]])], 1)
        edit = feature_edit(sae, 5, "add", torch.tensor([r["coefficient"] * 1.5]))
        with torch.no_grad():
            resid = final_residual(tiny_gpt2, full, None, [(HOOKS[1], edit_hook(edit, skip_bos=True))])
            lp = log_probs(tiny_gpt2.model, resid[0, ids.shape[1] - 1 : -1])
        assert r["boosted_mass"] == pytest.approx(float(lp[:, boosted].exp().sum(-1).mean()), rel=1e-4, abs=1e-6)


def test_generation_study_scores_and_tests_against_unsteered(tiny_gpt2):
    """With a judge, each continuation's combined score is the harmonic mean of the judge's
    concept score and its fluency; the best coefficient is the highest mean combined score,
    and it 'works' only when its paired interval against unsteered lies above 0."""
    _, sae = _gpt_setup(tiny_gpt2)
    prompts = [torch.tensor([_bos_text([11 + i, 12, 13 + 2 * i]).ids]) for i in range(6)]
    coefs = [-1.0, 0.0, 1.0, 4.0]

    class IdWords:  # the tiny model's vocabulary is ids: each id a word, so the judge has text to read
        def decode(self, ids):
            return " ".join(f"w{int(i)}" for i in ids)

    handle = dataclasses.replace(tiny_gpt2, tokenizer=IdWords())
    judge = lambda texts: np.full(len(texts), 0.5)
    g = generation_study(handle, sae, 1, GPT_HOOK, 2.0, coefs, prompts, 5, "add", max_ppl_ratio=1e9, top_tokens=10, judge=judge,
                         n_boot=200, seed=0)
    for r in g.rows:
        f = r["fluency"]
        assert r["combined"] == pytest.approx(0 if f == 0 else 2 * 0.5 * f / (0.5 + f))
    assert g.combined == pytest.approx([np.mean([r["combined"] for r in g.rows if r["coefficient"] == c]) for c in coefs])
    steered = [-1.0, 1.0, 4.0]
    assert g.best_coefficient == max(steered, key=lambda c: (g.combined[coefs.index(c)], -abs(c)))
    test = g.versus_unsteered[str(g.best_coefficient)]
    assert test["alpha"] == pytest.approx(0.05 / 3) and test["n"] == 6
    assert g.works == (test["ci_low"] > 0)
    ci = g.combined_ci[coefs.index(0.0)]
    assert ci["ci_low"] <= ci["mean"] <= ci["ci_high"] and ci["n"] == 6


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
        # no judge: no concept score, so every combined score is 0 and nothing "works"
        assert all(0 <= r["fluency"] <= 1 and r["combined"] == 0 for r in g.rows) and not g.works
        steered = [c for c in coefs if c != 0 or mode == "clamp"]
        assert set(g.versus_unsteered) == {str(c) for c in steered} and g.best_coefficient in steered
        for r in g.rows:  # fluency 0 above the perplexity cap
            if r["perplexity"] > 1.5 * g.unsteered["perplexity"] * 1.0001:
                assert r["fluency"] == 0
    assert best_coefficient([0.0, 1.0, 2.0], [0.1, 0.5, 0.9], [1.0, 1.5, 3.0], 2.0) == 1.0
    assert best_coefficient([-1.0, 0.0, 1.0], [0.5, 0.2, 0.5], [1.0, 1.0, 1.0], 2.0) == -1.0  # tie: first smallest |c|
    assert best_coefficient([1.0], [0.5], [3.0], 2.0) is None
