"""The custom ReLU SAE: metric definitions, training, SAELens round trip."""

import torch

import pytest

from sae_workbench.config import ProfileConfig, SAEConfig
from sae_workbench.sae import ReluSAE, fold_scale, load_sae, reconstruction_metrics, save_for_saelens, train_relu_sae


class Identity:
    """An 'SAE' that reconstructs perfectly, and one that predicts the mean."""

    def __init__(self, mean=None):
        self.mean = mean

    def encode(self, x):
        return x.clamp(min=0)

    def decode(self, f):
        return f if self.mean is None else self.mean.expand_as(f)


def test_explained_variance_definition():
    x = torch.rand(500, 16)  # non-negative so Identity.encode is lossless
    m = reconstruction_metrics(Identity(), x)
    assert abs(m["explained_variance"] - 1.0) < 1e-9 and m["mse"] == 0
    m = reconstruction_metrics(Identity(mean=x.mean(0)), x)
    assert abs(m["explained_variance"]) < 1e-5  # predicting the mean explains nothing
    assert abs(m["l0"] - (x > 0).sum(1).float().mean().item()) < 1e-6


def _planted_data(n=6000, d=16, n_atoms=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(n_atoms, d, generator=g), dim=1)
    codes = (torch.rand(n, n_atoms, generator=g) < 0.08) * torch.rand(n, n_atoms, generator=g) * 3
    return codes @ atoms + 0.01 * torch.randn(n, d, generator=g)


def test_training_reduces_loss_and_is_seeded():
    x = _planted_data()
    cfg = SAEConfig(expansion=4, l1_coefficient=0.5, lr=3e-3, batch_tokens=256, epochs=3)
    a = train_relu_sae(x, cfg, seed=1)
    b = train_relu_sae(x, cfg, seed=1)
    assert a.curve[-1]["mse"] < a.curve[0]["mse"] / 3
    torch.testing.assert_close(a.sae.W_dec, b.sae.W_dec, atol=0, rtol=0)
    ws = fold_scale(a)
    sae = ReluSAE(16, 64)
    sae.load_state_dict(ws)
    m = reconstruction_metrics(sae, x)
    assert m["explained_variance"] > 0.5 and m["l0"] < 64


def test_saelens_round_trip_encodes_identically(tmp_path):
    x = _planted_data(n=2000)
    res = train_relu_sae(x, SAEConfig(expansion=2, batch_tokens=256, epochs=1), seed=0)
    weights = fold_scale(res)
    hook = "blocks.0.hook_resid_pre"
    save_for_saelens(weights, tmp_path / hook, hook, "test-model")
    profile = ProfileConfig(loader="bridge", name="x", n_layers=1, sae_source="custom")
    loaded, neuronpedia = load_sae(profile, hook, tmp_path)  # SAE.load_from_disk underneath
    assert type(loaded).__name__ == "StandardSAE" and neuronpedia is None
    assert loaded.cfg.d_in == 16 and loaded.cfg.d_sae == 32
    assert loaded.cfg.metadata.hook_name == hook
    with torch.no_grad():
        ours = res.sae.encode(x * res.scale)  # the trained module on its normalised scale
        theirs = loaded.encode(x)  # SAELens on raw activations
        torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(loaded.decode(theirs), res.sae.decode(ours) / res.scale, atol=1e-4, rtol=1e-4)


def test_too_few_tokens_is_a_clear_error():
    with pytest.raises(ValueError, match="at least sae.batch_tokens"):
        train_relu_sae(torch.randn(10, 8), SAEConfig(batch_tokens=64), seed=0)
