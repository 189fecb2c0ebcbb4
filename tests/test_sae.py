"""Custom SAEs: each architecture's forward and backward, the decoder-norm
constraint, dead-latent bookkeeping, resume after interruption, metric
definitions and the SAELens round trip."""

import dataclasses

import numpy as np
import pytest
import torch

from sae_workbench.config import ProfileConfig, SAEConfig
from sae_workbench.sae.buffer import ShuffledBuffer, tensor_reader
from sae_workbench.sae.io import load_sae, save_for_saelens, to_saelens
from sae_workbench.sae.metrics import reconstruction_metrics
from sae_workbench.sae.topk import TopKSAE
from sae_workbench.sae.train import build_sae, geometric_median, train_sae
from sae_workbench.sae.base import TrainState

ARCHS = ["relu", "topk", "batchtopk"]


def planted(n=6000, d=16, n_atoms=24, seed=0):
    """Sparse combinations of 24 unit atoms plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(n_atoms, d, generator=g), dim=1)
    codes = (torch.rand(n, n_atoms, generator=g) < 0.08) * torch.rand(n, n_atoms, generator=g) * 3
    return codes @ atoms + 0.01 * torch.randn(n, d, generator=g) + 2.0


def cfg(arch, **kw):
    base = dict(architecture=arch, expansion=4, k=4, l1_coefficient=0.3, lr=3e-3, batch_tokens=256, epochs=3,
                buffer_tokens=2048, dead_window_tokens=2000, checkpoint_every=5, device="cpu", fidelity_texts=0)
    return SAEConfig(**{**base, **kw})


def buffer_of(x, c, seed=0):
    read, n, _ = tensor_reader(x)
    return ShuffledBuffer(read, np.arange(n), c.batch_tokens, c.buffer_tokens, seed, chunk_tokens=512)


class Identity:
    def __init__(self, mean=None):
        self.mean = mean
        self.W_dec = torch.zeros(16, 16)

    def encode(self, x):
        return x.clamp(min=0)

    def decode(self, f):
        return f if self.mean is None else self.mean.expand_as(f)


def test_explained_variance_definition():
    x = torch.rand(500, 16)
    m = reconstruction_metrics(Identity(), x)
    assert abs(m["explained_variance"] - 1.0) < 1e-9 and m["mse"] == 0
    x[:, :4] = -1.0  # Identity.encode clamps these to 0: four latents never fire
    assert reconstruction_metrics(Identity(), x)["never_fired_frac"] == 4 / 16
    x = torch.rand(500, 16)
    m = reconstruction_metrics(Identity(mean=x.mean(0)), x)
    assert abs(m["explained_variance"]) < 1e-5  # predicting the mean explains nothing


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_matches_inference_and_backward_reaches_every_parameter(arch):
    torch.manual_seed(0)
    sae = build_sae(cfg(arch), 16)
    x = planted(n=64)
    sae.train()
    out = sae(x)
    parts = sae.loss(x, out, TrainState(0, 10, torch.ones(sae.d_sae, dtype=torch.bool)))  # all dead: AuxK active
    parts.total.backward()
    for name, p in sae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    if arch != "batchtopk":  # batchtopk trains with a batch-level choice, infers with a threshold
        with torch.no_grad():
            torch.testing.assert_close(out.x_hat, sae.decode(sae.encode(x)), atol=1e-4, rtol=1e-4)
    if arch == "topk":
        assert ((sae.encode(x) > 0).sum(-1) <= 4).all()
        assert parts.sparsity > 0  # AuxK term with every latent dead


def test_topk_sparse_gradients_equal_dense_autograd():
    """The gathered-encoder/embedding_bag path gives the same gradients as the
    plain dense formulation."""
    torch.manual_seed(0)
    a = TopKSAE(16, 64, k=5, aux_coefficient=0)
    b = TopKSAE(16, 64, k=5, aux_coefficient=0)
    b.load_state_dict(a.state_dict())
    x = planted(n=32)
    out = a(x)
    (x - out.x_hat).pow(2).sum().backward()
    pre = (x - b.b_dec) @ b.W_enc + b.b_enc
    idx = pre.topk(5, dim=-1).indices
    f = torch.zeros_like(pre).scatter(-1, idx, pre.gather(-1, idx).relu())
    (x - (f @ b.W_dec + b.b_dec)).pow(2).sum().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=n)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_decoder_rows_stay_unit_norm(arch):
    r = train_sae(buffer_of(planted(), cfg(arch)), 16, cfg(arch), seed=0)
    torch.testing.assert_close(r.sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5, rtol=0)


def test_parallel_gradient_is_removed():
    sae = TopKSAE(8, 16, k=2)
    sae.W_dec.grad = sae.W_dec.detach().clone() * 3 + torch.randn(16, 8)
    sae.remove_gradient_parallel_to_decoder()
    assert (sae.W_dec.grad * sae.W_dec).sum(1).abs().max() < 1e-5


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


def test_dead_mask_drives_auxk():
    sae = TopKSAE(16, 64, k=4)
    x = planted(n=64)
    out = sae(x)
    none_dead = sae.loss(x, out, TrainState(0, 10, torch.zeros(64, dtype=torch.bool)))
    some_dead = sae.loss(x, out, TrainState(0, 10, torch.arange(64) >= 32))
    assert none_dead.sparsity == 0 and some_dead.sparsity > 0


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


@pytest.mark.parametrize("arch,lens_arch", [("relu", "standard"), ("topk", "topk"), ("batchtopk", "jumprelu")])
def test_saelens_round_trip_encodes_identically(arch, lens_arch, tmp_path):
    x = planted(n=3000)
    c = cfg(arch, epochs=1)
    r = train_sae(buffer_of(x, c), 16, c, seed=0)
    hook = "blocks.0.hook_resid_pre"
    save_for_saelens(r.sae, r.scale, tmp_path / hook, hook, "test-model")
    loaded, neuronpedia = load_sae(ProfileConfig(loader="bridge", name="x", n_layers=1, kind="encoder"), hook, tmp_path)
    assert loaded.cfg.architecture() == lens_arch and neuronpedia is None
    assert loaded.cfg.metadata.hook_name == hook
    with torch.no_grad():
        ours = r.sae.encode(x * r.scale)  # our module on its training scale
        theirs = loaded.encode(x)  # SAELens on raw activations
        torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(loaded.decode(theirs), r.sae.decode(ours) / r.scale, atol=1e-4, rtol=1e-4)


def test_buffer_bounded_covers_every_row_once_per_epoch():
    x = torch.arange(5000, dtype=torch.float32)[:, None].repeat(1, 4)
    rows = np.flatnonzero(np.arange(5000) % 7 != 0)  # some rows held out
    buf = ShuffledBuffer(*tensor_reader(x)[:1], rows, batch_tokens=100, buffer_tokens=1000, seed=0, chunk_tokens=300)
    seen = torch.cat(list(buf.batches(0)))[:, 0].long()
    assert len(seen) == len(rows) // 100 * 100  # only a short tail dropped
    assert len(set(seen.tolist())) == len(seen) and set(seen.tolist()) <= set(rows.tolist())
    assert not torch.equal(seen[:100].sort().values, seen[:100])  # shuffled
    assert not torch.equal(torch.cat(list(buf.batches(1)))[:100], torch.cat(list(buf.batches(0)))[:100])


def test_geometric_median_resists_outliers():
    x = torch.cat([torch.zeros(99, 3), torch.full((1, 3), 1000.0)])
    assert geometric_median(x).norm() < 1.0 < x.mean(0).norm()


def test_too_few_tokens_and_bad_config_are_clear_errors():
    with pytest.raises(ValueError, match="at least sae.batch_tokens"):
        ShuffledBuffer(*tensor_reader(torch.randn(10, 8))[:1], np.arange(10), 64, 128, 0)
    with pytest.raises(ValueError, match="sae.k"):
        TopKSAE(8, 16, k=32)


def test_architecture_registry_builds_each_name_and_rejects_unknown_ones():
    from sae_workbench.config import SAEConfig
    from sae_workbench.sae.train import ARCHITECTURE_BUILDERS, build_sae

    assert set(ARCHITECTURE_BUILDERS) == {"relu", "topk", "batchtopk"}
    for name in ARCHITECTURE_BUILDERS:
        assert build_sae(SAEConfig(architecture=name, expansion=2, k=4), 8).architecture == name
    with pytest.raises(ValueError, match="sae.architecture must be one of relu, topk, batchtopk, got 'gated'"):
        build_sae(SAEConfig(architecture="gated"), 8)
