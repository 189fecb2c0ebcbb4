"""What every SAE architecture shares.

    pre   = (x - b_dec) @ W_enc + b_enc          # [batch, d_sae]
    f     = activation(pre)                       # architecture-specific, sparse
    x_hat = f @ W_dec + b_dec

Shapes follow SAELens (W_enc [d_in, d_sae], W_dec [d_sae, d_in]) so that a
trained SAE exports to SAELens's own classes without transposes. Subclasses
(relu.py, topk.py) implement `activation`, the training `loss` and the
SAELens export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn


class SAEOutput(NamedTuple):
    x_hat: torch.Tensor
    """Reconstruction [batch, d_in]."""
    idx: torch.Tensor | None
    """Kept latents: [batch, k] for TopK, flat [n_kept] for BatchTopK (the
    count varies per token), None for dense architectures."""
    vals: torch.Tensor
    """Their activations, shaped like idx; dense architectures: all features [batch, d_sae]."""
    pre: torch.Tensor
    """Pre-activations [batch, d_sae]."""


class LossParts(NamedTuple):
    total: torch.Tensor
    mse: torch.Tensor
    """sum over dimensions of (x - x_hat)^2, mean over the batch."""
    sparsity: torch.Tensor
    """L1 term (ReLU) or AuxK term (TopK); already weighted."""
    l0: torch.Tensor
    """Mean active latents per token (a tensor: reading it waits for the device)."""


@dataclass
class TrainState:
    """What a loss may depend on besides the batch."""

    step: int
    total_steps: int
    dead_mask: torch.Tensor
    """Latents that did not fire over the last dead_window_tokens tokens."""


class SparseAutoencoder(nn.Module):
    architecture: ClassVar[str]
    unit_norm_decoder: ClassVar[bool] = True
    """Keep decoder rows at unit norm (and project out the parallel gradient)."""

    def __init__(self, d_in: int, d_sae: int):
        super().__init__()
        self.d_in, self.d_sae = d_in, d_sae
        w = torch.randn(d_sae, d_in)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc = nn.Parameter(w.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and not x.requires_grad:
            return EncoderPreActs.apply(x, self.W_enc, self.b_enc, self.b_dec)
        # addmm: one fused op, and under bf16 autocast the result stays bf16
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense feature activations [batch, d_sae] (inference)."""
        return self.activation(self.pre_acts(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> SAEOutput:
        pre = self.pre_acts(x)
        f = self.activation(pre)
        return SAEOutput(self.decode(f), None, f, pre)

    def loss(self, x: torch.Tensor, out: SAEOutput, state: TrainState) -> LossParts:
        raise NotImplementedError

    def saelens_config(self) -> tuple[type, dict]:
        """(SAELens config class, its architecture-specific fields)."""
        raise NotImplementedError

    def extra_state_for_export(self) -> dict[str, torch.Tensor]:
        return {}

    @torch.no_grad()
    def set_decoder_norm_to_unit(self) -> None:
        self.W_dec.data /= self.W_dec.data.norm(dim=1, keepdim=True).clamp(min=1e-8)

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder(self) -> None:
        """With unit-norm decoder rows, the gradient's component along each row
        would only change its norm, which the constraint undoes: drop it."""
        if self.W_dec.grad is None:
            return
        g, w = self.W_dec.grad, self.W_dec.data
        g -= (g * w).sum(dim=1, keepdim=True) * w


class EncoderPreActs(torch.autograd.Function):
    """pre = (x - b_dec) @ W_enc + b_enc, for training (x needs no gradient).

    Autograd would get b_dec's gradient through a full [batch, d_in] input
    gradient, g @ W_enc^T, a third matmul as large as the forward; since
    b_dec is shared by every row, -W_enc @ sum_rows(g) gives the same in a
    matrix-vector product. Under autocast the matmuls run in its dtype."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, W_enc, b_enc, b_dec):
        xc = x - b_dec
        dtype = torch.get_autocast_dtype("cuda") if x.is_cuda and torch.is_autocast_enabled("cuda") else W_enc.dtype
        ctx.save_for_backward(xc.to(dtype), W_enc)
        return torch.addmm(b_enc.to(dtype), xc.to(dtype), W_enc.to(dtype))

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, g):
        xc, W_enc = ctx.saved_tensors
        g_sum = g.sum(0)
        grad_W = (xc.t() @ g.to(xc.dtype)).to(W_enc.dtype)
        grad_b_dec = -(W_enc @ g_sum.to(W_enc.dtype))
        return None, grad_W, g_sum.to(W_enc.dtype), grad_b_dec


def sparse_decode(idx: torch.Tensor, vals: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """sum_j vals[:, j] * W_dec[idx[:, j]], without the bias.

    On the CPU an embedding_bag over the kept latents (never materialising
    [batch, d_sae]); on a GPU a scatter into dense activations and one matmul,
    which tensor cores run faster than embedding_bag's gathers (measured on an
    H100: embedding_bag forward + backward took ~4x the dense path's time)."""
    if W_dec.is_cuda:
        f = torch.zeros(idx.shape[0], W_dec.shape[0], dtype=vals.dtype, device=vals.device).scatter(-1, idx, vals)
        return f @ W_dec
    return nn.functional.embedding_bag(idx, W_dec, per_sample_weights=vals.to(W_dec.dtype), mode="sum")
