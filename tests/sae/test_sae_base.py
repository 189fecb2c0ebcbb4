"""sae/base.py: every architecture's forward and backward through the common
interface, and the decoder-norm gradient projection."""

import pytest
import torch

from sae_workbench.sae.base import TrainState
from sae_workbench.sae.topk import TopKSAE
from sae_workbench.sae.train import build_sae

from helpers import ARCHS, cfg, planted


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


def test_parallel_gradient_is_removed():
    sae = TopKSAE(8, 16, k=2)
    sae.W_dec.grad = sae.W_dec.detach().clone() * 3 + torch.randn(16, 8)
    sae.remove_gradient_parallel_to_decoder()
    assert (sae.W_dec.grad * sae.W_dec).sum(1).abs().max() < 1e-5
