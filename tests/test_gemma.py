"""The default profile on the real Gemma 3 270M (converted once, cached between
sessions): loading offline, hooks, BOS and padding masked, the early-stopping
forward pass, CE-loss recovered and KL, the pre-trained SAE offline error, steered
generation. (The conversion cache's own test, on a fake GGUF package, is
tests/test_model_cache.py; the model kinds' is tests/kinds/test_kinds.py.)"""

import time

import pytest
import torch

from sae_workbench.extraction import token_activations
from sae_workbench.models import pad_batch
from sae_workbench.kinds.causal_lm import LOGIT_CHUNK, ce_loss_recovered, final_residual, log_probs, token_logprobs
from sae_workbench.kinds import model_kind

from helpers import Constant, Perfect, fired_hooks

pytestmark = pytest.mark.slow  # the real Gemma 3 270M

TEXTS = [
    "def add(a, b):\n    return a + b",
    "Short one.",
    "Der schnelle braune Fuchs springt über den faulen Hund, und dann noch ein bisschen weiter.",
    "lol that was sooo good 😂 #friday",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Two busy shared CPU cores: one intra-op thread avoids spin-waiting (measured
    10x faster for a Gemma forward pass at load 6); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_loads_offline_with_the_expected_shape(gemma, params):
    cfg = gemma.model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.d_vocab) == (18, 640, 262144)
    assert gemma.tokenizer.bos_token_id == 2 and gemma.prepend_bos and gemma.pad_id == 0
    gemma.check_hooks(params.hooks)
    tk = gemma.tokenize(TEXTS[0], 64)
    assert tk.ids[0] == 2 and tk.special == [True] + [False] * (len(tk.ids) - 1)
    assert "".join(tk.tokens[1:]) == TEXTS[0]  # offsets cover the text exactly
    assert len(gemma.tokenize("word " * 500, 32).ids) == 32


def test_hook_shapes(gemma, params):
    toks = [gemma.tokenize(t, 64) for t in TEXTS[:2]]
    ids, mask = pad_batch([t.ids for t in toks], gemma.pad_id)
    out = gemma.run_hooks(ids, mask, params.hooks)
    assert set(out) == set(params.hooks)
    for h in params.hooks:
        assert out[h].shape == (2, ids.shape[1], 640) and out[h].dtype == torch.float32


def test_bos_masked_and_padded_batch_matches_each_text_alone(gemma, params):
    toks = [gemma.tokenize(t, 128) for t in TEXTS]
    assert len({len(t.ids) for t in toks}) > 1
    hooks = ["blocks.5.hook_resid_post", "blocks.9.hook_attn_out"]
    batched = token_activations(gemma, toks, hooks, batch_size=len(toks))
    for i, tk in enumerate(toks):
        alone = token_activations(gemma, [tk], hooks, batch_size=1)
        for h in hooks:
            assert batched[h][i].shape == (len(tk.ids) - 1, 640)  # BOS masked out
            torch.testing.assert_close(batched[h][i], alone[h][0], atol=2e-3, rtol=1e-3)


def test_forward_pass_stops_right_after_the_deepest_hook(gemma):
    ids = torch.tensor([gemma.tokenize(TEXTS[1], 16).ids])
    _, fired = fired_hooks(gemma, ["blocks.5.hook_resid_post", "blocks.9.hook_attn_out"], ids)
    assert "blocks.9.hook_attn_out" in fired and not any(n.startswith(("blocks.9.mlp", "blocks.9.hook_mlp", "blocks.10.", "ln_final")) for n in fired)
    _, fired = fired_hooks(gemma, ["blocks.12.hook_resid_pre"], ids)
    assert [n for n in fired if n.startswith("blocks.12.")] == ["blocks.12.hook_resid_pre"]


def test_log_probs_match_the_full_forward_pass(gemma):
    """The chunked log-prob helper gives the model's own next-token log-probabilities."""
    tk = gemma.tokenize(TEXTS[2], 64)
    ids = torch.tensor([tk.ids])
    with torch.no_grad():
        logits = gemma.model(ids)
        full = torch.log_softmax(logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None])[:, 0]
        ours = token_logprobs(gemma, ids, torch.ones_like(ids), chunk=7)[0]
        torch.testing.assert_close(ours, full, atol=1e-4, rtol=1e-4)
        resid = final_residual(gemma, ids)
        torch.testing.assert_close(log_probs(gemma.model, resid[0, :3]), torch.log_softmax(logits[0, :3].float(), -1), atol=1e-4, rtol=1e-4)
    assert LOGIT_CHUNK * 262144 * 4 < 100e6  # one chunk of logits stays under 100 MB
    assert float(-full.mean()) < 8  # far below a uniform guess (ln 262144 = 12.5)


def test_kept_mlp_weight_layouts_give_transformer_lens_own_bytes(gemma):
    """models.keep_gated_mlp_weight_layouts: the residual stream, greedy tokens and the
    gradient an attribution takes are byte-identical to TransformerLens's own GatedMLP
    forward, and a weight changed in place is seen at once (the control's random weights)."""
    from transformer_lens.components.mlps.gated_mlp import GatedMLP

    from sae_workbench.steer.generation import greedy_continuation

    model = gemma.model
    mlps = [m for m in model.modules() if type(m) is GatedMLP]
    assert mlps and all("forward" in m.__dict__ for m in mlps), "load_model did not keep the layouts"
    ids = torch.tensor([gemma.tokenize(TEXTS[0], 32).ids, gemma.tokenize(TEXTS[2], 32).ids[: len(gemma.tokenize(TEXTS[0], 32).ids)]])

    def run():
        with torch.no_grad():
            resid = final_residual(gemma, ids)
            gen = greedy_continuation(gemma, ids, 4)
        grads = []
        for frozen in (False, True):  # weights taking gradients (TransformerLens's forward) or not (the kept layouts)
            mlp = model.blocks[0].mlp
            for w in (mlp.W_gate, mlp.W_in, mlp.W_out):
                w.requires_grad_(not frozen)
            x = model.embed(ids).detach().requires_grad_(True)
            try:
                mlp(x).sum().backward()
            finally:
                for w in (mlp.W_gate, mlp.W_in, mlp.W_out):
                    w.requires_grad_(True)
                    w.grad = None
            grads.append(x.grad)
        return resid, gen, *grads

    kept = run()
    saved = {m: m.__dict__.pop("forward") for m in mlps}
    try:
        own = run()
    finally:
        for m, f in saved.items():
            m.forward = f
    for a, b in zip(kept, own):
        assert torch.equal(a, b)
    w = mlps[3].W_out
    with torch.no_grad():
        before = final_residual(gemma, ids)
        w.mul_(2.0)
        try:
            changed = final_residual(gemma, ids)
        finally:
            w.mul_(0.5)
        after = final_residual(gemma, ids)
    assert not torch.equal(before, changed) and torch.equal(before, after)


def test_kept_attention_weight_layouts_give_transformer_lens_own_bytes(gemma):
    """models.keep_attention_weight_layouts: W_Q and W_O (4 heads; W_K and W_V have one
    head, whose rearrangement is a view already, and are left alone) are stored so that
    TransformerLens's rearrangement is a view; the residual stream, greedy tokens and the
    gradient an attribution takes are byte-identical to the weights stored as
    TransformerLens stores them, every parameter reads the same values, and a weight
    changed in place keeps its layout and is seen at once."""
    import einops

    from sae_workbench.steer.generation import greedy_continuation

    model = gemma.model
    attn = model.blocks[0].attn
    w = einops.rearrange(attn.W_Q, "head_index d_model d_head -> (head_index d_head) d_model")
    assert w.data_ptr() == attn.W_Q.data_ptr() and w.is_contiguous(), "load_model did not keep the layouts"
    assert attn._W_K.shape[0] == 1 and attn._W_K.is_contiguous()
    ids = torch.tensor([gemma.tokenize(TEXTS[0], 32).ids, gemma.tokenize(TEXTS[2], 32).ids[: len(gemma.tokenize(TEXTS[0], 32).ids)]])
    kept_params = {n: p for n, p in model.named_parameters() if n.endswith(("W_Q", "W_O")) and not p.is_contiguous()}
    assert len(kept_params) == 2 * model.cfg.n_layers

    def run():
        with torch.no_grad():
            resid = final_residual(gemma, ids)
            gen = greedy_continuation(gemma, ids, 4)
        x = model.embed(ids).detach().requires_grad_(True)
        model.blocks[1].attn(x, x, x).sum().backward()
        values = {n: p.detach().clone() for n, p in kept_params.items()}
        return resid, gen, x.grad, values

    kept = run()
    layouts = {n: p.data for n, p in kept_params.items()}
    try:
        for p in kept_params.values():
            p.data = p.data.contiguous()  # as TransformerLens stores them
        own = run()
    finally:
        for n, p in kept_params.items():
            p.data = layouts[n]
    for a, b in zip(kept[:3], own[:3]):
        assert torch.equal(a, b)
    assert all(torch.equal(kept[3][n], own[3][n]) for n in kept_params)
    w_o = model.blocks[3].attn.W_O
    with torch.no_grad():
        before = final_residual(gemma, ids)
        w_o.mul_(2.0)
        try:
            assert not w_o.is_contiguous()
            changed = final_residual(gemma, ids)
        finally:
            w_o.mul_(0.5)
        after = final_residual(gemma, ids)
    assert not torch.equal(before, changed) and torch.equal(before, after)
    for p in model.parameters():
        p.grad = None


def test_ce_loss_recovered_sanity(gemma):
    toks = [gemma.tokenize(t, 64) for t in TEXTS]
    hook = "blocks.9.hook_resid_post"
    perfect = ce_loss_recovered(gemma, Perfect(), hook, toks)
    assert perfect["ce_loss_recovered"] == pytest.approx(1.0, abs=1e-3) and perfect["kl_sae"] == pytest.approx(0.0, abs=1e-4)
    assert perfect["ce_zero"] > perfect["ce_clean"] + 1 and perfect["kl_zero"] > 1
    assert perfect["n_positions"] == sum(len(t.ids) - 2 for t in toks)  # neither BOS's prediction nor padding
    zero = ce_loss_recovered(gemma, Constant(torch.zeros(640)), hook, toks)
    assert zero["ce_loss_recovered"] == pytest.approx(0.0, abs=1e-3) and zero["kl_sae"] == pytest.approx(zero["kl_zero"], rel=1e-4)
    assert set(model_kind("causal_lm").fidelity_keys) == set(perfect)


def test_pretrained_sae_offline_is_one_line_and_fast(params, tmp_path):
    """Gemma Scope 2 needs the hub: offline, loading it fails at once with one line."""
    import dataclasses

    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    get_pretrained_saes_directory()  # SAELens's import and its 1.5 MB registry parse (cached) are not the failure's time

    from sae_workbench.offline import ModelUnavailable
    from sae_workbench.sae.io import load_sae

    pretrained = dataclasses.replace(params.model, sae_source="pretrained")
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable, match="Hugging Face hub") as e:
        load_sae(pretrained, "blocks.9.hook_resid_post", tmp_path)
    assert time.perf_counter() - t0 < 5
    assert "\n" not in str(e.value) and "gemma-scope-2-270m-pt-res" in str(e.value)
    with pytest.raises(ValueError, match="no pre-trained SAE release for attn_out"):
        load_sae(pretrained, "blocks.9.hook_attn_out", tmp_path)


def _unit_sae(hook: str, seed: int, d_sae: int = 32):
    """An SAE at a Gemma hook whose features are seeded random unit directions (encoder = decoder^T)."""
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=640, d_sae=d_sae, metadata=SAEMetadata(hook_name=hook)))
    with torch.no_grad():
        d = torch.nn.functional.normalize(torch.randn(d_sae, 640, generator=torch.Generator().manual_seed(seed)), dim=-1)
        sae.W_dec.copy_(d)
        sae.W_enc.copy_(d.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_steered_generation_moves_towards_the_feature(gemma):
    """Adding a feature's decoder direction during generation raises the feature's own
    activation on the generated tokens, as the unsteered model reads them too."""
    from sae_workbench.steer.generation import steer_generation

    hook = "blocks.9.hook_resid_post"
    sae = _unit_sae(hook, seed=0)
    prompt = torch.tensor([gemma.tokenize("The weather today is", 16).ids])
    rows = steer_generation(gemma, sae, 3, hook, 100.0, [0.0, 4.0], [prompt], max_new_tokens=4)
    assert [len(r["continuation_ids"]) for r in rows] == [4, 4] and all(isinstance(r["continuation"], str) for r in rows)
    assert rows[0]["perplexity"] < rows[1]["perplexity"] or rows[0]["continuation_ids"] != rows[1]["continuation_ids"]
    assert rows[1]["feature_activation"] > rows[0]["feature_activation"] + 100


def test_steering_prompts_of_other_lengths_in_one_left_padded_batch_equals_each_alone(gemma):
    """The steer stage runs every prompt in one left-padded batch: on Gemma 3 (rotary
    positions, sliding-window layers, key-value cache) each prompt's continuation and
    measures are those it gets alone."""
    from sae_workbench.steer.generation import steer_generation

    hook = "blocks.9.hook_resid_post"
    sae = _unit_sae(hook, seed=1)
    prompts = [torch.tensor([gemma.tokenize(p, 16).ids]) for p in ("After dinner we", "The old house at the end of the street")]
    assert prompts[0].shape[1] != prompts[1].shape[1]
    together = steer_generation(gemma, sae, 3, hook, 100.0, [0.0, 2.0], prompts, max_new_tokens=6)
    for i, ids in enumerate(prompts):
        alone = steer_generation(gemma, sae, 3, hook, 100.0, [0.0, 2.0], [ids], max_new_tokens=6)
        for a, b in zip(alone, [r for r in together if r["prompt"] == i]):
            assert a["continuation_ids"] == b["continuation_ids"], i
            for k in ("feature_activation", "concept_score", "boosted_mass", "nll"):
                assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-4), (i, k)
