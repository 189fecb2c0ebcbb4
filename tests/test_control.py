"""control.py: the random-weights control model."""

import pytest
import torch


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
