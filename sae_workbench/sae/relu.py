"""ReLU SAE with the L1 penalty weighted by decoder norms (Anthropic, April 2024).

    f    = ReLU(pre)
    loss = ||x - x_hat||^2 + l1(t) * sum_i f_i * ||W_dec[i]||

The decoder is left unconstrained: the norm-weighted L1 already stops the
model from shrinking f by growing W_dec. l1(t) ramps linearly from 0 over the
first l1_warmup_frac of training.
"""

from __future__ import annotations

import torch

from .base import LossParts, SAEOutput, SparseAutoencoder, TrainState


class ReluSAE(SparseAutoencoder):
    architecture = "relu"
    unit_norm_decoder = False

    def __init__(self, d_in: int, d_sae: int, l1_coefficient: float = 2.0, l1_warmup_frac: float = 0.05):
        super().__init__(d_in, d_sae)
        self.l1_coefficient, self.l1_warmup_frac = l1_coefficient, l1_warmup_frac

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def loss(self, x: torch.Tensor, out: SAEOutput, state: TrainState) -> LossParts:
        warm = max(1, int(state.total_steps * self.l1_warmup_frac))
        l1_w = self.l1_coefficient * min(1.0, (state.step + 1) / warm)
        mse = (x - out.x_hat).pow(2).sum(-1).mean()
        l1 = (out.vals * self.W_dec.norm(dim=1)).sum(-1).mean()
        return LossParts(mse + l1_w * l1, mse, l1_w * l1, (out.vals > 0).float().sum(-1).mean().detach())

    def saelens_config(self):
        from sae_lens.saes.standard_sae import StandardSAEConfig

        return StandardSAEConfig, {}
