"""sae/topk.py: the sparse TopK path's gradients and the dead-latent mask behind AuxK."""

import torch

from sae_workbench.sae.base import TrainState
from sae_workbench.sae.topk import TopKSAE

from helpers import planted


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


def test_dead_mask_drives_auxk():
    sae = TopKSAE(16, 64, k=4)
    x = planted(n=64)
    out = sae(x)
    none_dead = sae.loss(x, out, TrainState(0, 10, torch.zeros(64, dtype=torch.bool)))
    some_dead = sae.loss(x, out, TrainState(0, 10, torch.arange(64) >= 32))
    assert none_dead.sparsity == 0 and some_dead.sparsity > 0
