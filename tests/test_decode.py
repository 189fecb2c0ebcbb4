"""decode.Decoder: greedy steps of Gemma 3 270M byte for byte as TransformerLens's own
key-value-cached forward pass computes them (steer.generation.greedy_continuation with
lean=False), with steering hooks at every point it handles, left padding, and a prompt
longer than the local attention window; and `supports` sends what it does not mirror
to TransformerLens."""

from __future__ import annotations

import pytest
import torch

from sae_workbench.decode import Decoder, supports
from sae_workbench.edits import direction_edit, edit_hook
from sae_workbench.steer.generation import greedy_continuation, left_pad

pytestmark = pytest.mark.slow

PROMPTS = ["The river behind the mill", "def area(r):\n    return", "Hola, ¿qué tal? 😀", "1 + 1 ="]


def both(handle, ids, mask, hooks, n):
    """(tokens, every step's log-probs) from the Decoder and from TransformerLens's cache."""
    out = []
    for lean in (True, False):
        steps = []
        gen = greedy_continuation(handle, ids, n, hooks, mask=mask, on_step=steps.append, lean=lean)
        out.append((gen, torch.stack(steps)))
    return out


def test_steps_have_transformer_lens_own_bytes_with_hooks_and_left_padding(gemma):
    ids, mask = left_pad([torch.tensor([gemma.tokenize(p, 32).ids]) for p in PROMPTS], gemma.pad_id)
    keep = mask.clone()
    keep[torch.arange(len(PROMPTS)), ids.shape[1] - mask.sum(1)] = 0
    g = torch.Generator().manual_seed(0)
    u = torch.randn(gemma.d_model, generator=g)
    u = u / u.norm()
    steer = edit_hook(direction_edit(u, torch.tensor([0.0, 40.0, -25.0, 60.0])), prompt_keep=keep)
    seen = []

    def scale(x, hook):
        seen.append(hook.name)
        return x * 1.25

    hook_sets = [
        [],
        [("blocks.9.hook_resid_post", steer)],
        [("blocks.0.hook_resid_pre", steer), ("blocks.4.hook_attn_out", scale), ("blocks.4.hook_resid_mid", lambda x, hook: None),
         ("blocks.12.hook_mlp_out", steer), ("blocks.17.hook_resid_post", scale)],
    ]
    for hooks in hook_sets:
        assert supports(gemma.model, hooks)
        (lean, lean_lp), (own, own_lp) = both(gemma, ids, mask, hooks, 12)
        assert torch.equal(lean, own) and torch.equal(lean_lp, own_lp), [h for h, _ in hooks]
    assert {"blocks.4.hook_attn_out", "blocks.17.hook_resid_post"} <= set(seen)
    # the hooks act: steering changes what is generated
    plain, steered = both(gemma, ids, mask, [], 12)[0], both(gemma, ids, mask, hook_sets[1], 12)[0]
    assert torch.equal(plain[0][0], steered[0][0]) and not torch.equal(plain[0][1:], steered[0][1:])


def test_a_prompt_longer_than_the_local_window_gives_the_same_bytes(gemma):
    window = gemma.model.cfg.window_size
    text = " ".join(f"item {i} is {i * 7 % 13}." for i in range(400))
    ids = torch.tensor([gemma.tokenize(text, window + 40).ids])
    assert ids.shape[1] > window
    (lean, lean_lp), (own, own_lp) = both(gemma, ids, torch.ones_like(ids), [], 4)
    assert torch.equal(lean, own) and torch.equal(lean_lp, own_lp)


def test_what_it_does_not_mirror_goes_to_transformer_lens(gemma):
    model = gemma.model
    assert supports(model, [("blocks.3.hook_resid_post", lambda x, hook: x)])
    assert not supports(model, [("blocks.3.attn.hook_z", lambda x, hook: x)])  # inside attention
    assert not supports(model, [("hook_embed", lambda x, hook: x)])
    assert not supports(model, [("blocks.40.hook_resid_post", lambda x, hook: x)])  # no such block
    model.blocks[2].hook_resid_post.add_hook(lambda x, hook: x)  # a hook left on the model
    try:
        assert not supports(model, [])
    finally:
        model.reset_hooks()
    assert supports(model, [])
    ids = torch.tensor([gemma.tokenize(PROMPTS[0], 16).ids])
    dec = Decoder(gemma)
    first = dec.prefill(ids, torch.ones_like(ids))
    assert first.shape == (1, gemma.d_model) and len(dec.keys) == gemma.n_layers and dec.keys[0].shape[1] == ids.shape[1]
    dec.step(torch.tensor([[235]]))
    assert dec.keys[0].shape[1] == ids.shape[1] + 1 and dec.mask.shape == (1, ids.shape[1] + 1)
