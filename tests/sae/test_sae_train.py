"""sae/train.py: training learns and is seeded, keeps decoder rows unit-norm,
counts dead latents, resumes after interruption bit for bit; the geometric-median
initialisation and the architecture registry."""

import dataclasses

import pytest
import torch

from sae_workbench.sae.io import to_saelens
from sae_workbench.sae.metrics import reconstruction_metrics
from sae_workbench.sae.train import geometric_median, train_sae

from helpers import ARCHS, buffer_of, cfg, planted


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_decoder_rows_stay_unit_norm(arch):
    r = train_sae(buffer_of(planted(), cfg(arch)), 16, cfg(arch), seed=0)
    torch.testing.assert_close(r.sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5, rtol=0)


def test_dead_latent_bookkeeping():
    """Latents whose encoder can never win are reported dead; AuxK revives latents."""
    x = planted()
    c = cfg("topk", aux_coefficient=0.0, epochs=2)
    torch.manual_seed(0)
    r = train_sae(buffer_of(x, c), 16, c, seed=0)
    ev = reconstruction_metrics(r.sae, x * r.scale)
    fired = (r.sae.encode(x * r.scale) > 0).any(0)
    assert 0 <= r.dead_frac <= 1
    assert r.dead_frac >= float((~fired).float().mean()) - 1e-9  # never fired on data => dead
    assert r.curve[-1]["dead_frac"] >= 0 and ev["l0"] <= 4


@pytest.mark.parametrize("arch", ARCHS)
def test_training_learns_and_is_seeded(arch):
    x = planted()
    c = cfg(arch)
    a = train_sae(buffer_of(x, c), 16, c, seed=1)
    b = train_sae(buffer_of(x, c), 16, c, seed=1)
    torch.testing.assert_close(a.sae.W_dec, b.sae.W_dec, atol=0, rtol=0)
    assert a.curve[-1]["mse"] < a.curve[0]["mse"] / 2
    m = reconstruction_metrics(to_saelens(a.sae, a.scale, "blocks.0.hook_resid_pre", "t"), x)
    assert m["explained_variance"] > 0.7, m


@pytest.mark.parametrize("arch", ARCHS)
def test_resume_after_interruption_is_bit_identical(arch, tmp_path):
    x = planted()
    c = cfg(arch)
    full = train_sae(buffer_of(x, c), 16, c, seed=2)
    ck = tmp_path / "ck.pt"
    part = train_sae(buffer_of(x, c), 16, c, seed=2, checkpoint=ck, stop_after=23)
    assert not part.finished and ck.exists()
    resumed = train_sae(buffer_of(x, c), 16, c, seed=2, checkpoint=ck)
    assert resumed.finished and not ck.exists()
    assert resumed.steps == full.steps
    for p, q in zip(resumed.sae.state_dict().values(), full.sae.state_dict().values()):
        torch.testing.assert_close(p, q, atol=0, rtol=0)
    # a checkpoint from other settings is ignored, not resumed
    train_sae(buffer_of(x, c), 16, c, seed=2, checkpoint=ck, stop_after=5)
    other = dataclasses.replace(c, lr=1e-3)
    r = train_sae(buffer_of(x, other), 16, other, seed=2, checkpoint=ck)
    assert r.finished and r.curve[0]["step"] == 0


def test_geometric_median_resists_outliers():
    x = torch.cat([torch.zeros(99, 3), torch.full((1, 3), 1000.0)])
    assert geometric_median(x).norm() < 1.0 < x.mean(0).norm()


def test_architecture_registry_builds_each_name_and_rejects_unknown_ones():
    from sae_workbench.config import SAEConfig
    from sae_workbench.sae.train import ARCHITECTURE_BUILDERS, build_sae

    assert set(ARCHITECTURE_BUILDERS) == {"relu", "topk", "batchtopk"}
    for name in ARCHITECTURE_BUILDERS:
        assert build_sae(SAEConfig(architecture=name, expansion=2, k=4), 8).architecture == name
    with pytest.raises(ValueError, match="sae.architecture must be one of relu, topk, batchtopk, got 'gated'"):
        build_sae(SAEConfig(architecture="gated"), 8)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_per_dim_normalisation_folds_into_the_export_and_spares_a_dominant_dimension(arch):
    """sae.normalize per_dim: one dimension carrying most of the variance (Gemma 3's
    residual stream has such dimensions) no longer takes the SAE's capacity from the rest,
    and the exported SAELens SAE on raw activations is the trained SAE on scaled ones."""
    x = planted()
    x[:, 0] += 60 * torch.randn(len(x), generator=torch.Generator().manual_seed(1))

    def ev_rest(x_hat):  # explained variance of every dimension but the dominant one
        r = x[:, 1:]
        return float(1 - ((r - x_hat[:, 1:]) ** 2).sum() / ((r - r.mean(0)) ** 2).sum())

    ev = {}
    for norm in ("norm", "per_dim"):
        c = cfg(arch, normalize=norm, epochs=4)
        r = train_sae(buffer_of(x, c), 16, c, seed=0)
        assert isinstance(r.scale, torch.Tensor) == (norm == "per_dim")
        lens = to_saelens(r.sae, r.scale, "blocks.0.hook_resid_pre", "t")
        with torch.no_grad():
            raw = lens.decode(lens.encode(x))
            if arch == "topk":  # the same SAE: decode(encode(x * s)) / s
                torch.testing.assert_close(raw, r.sae.decode(r.sae.encode(x * r.scale)) / r.scale, atol=1e-3, rtol=1e-4)
        ev[norm] = ev_rest(raw)
    assert ev["per_dim"] > ev["norm"] + 0.2, ev
