"""sae/metrics.py: the reconstruction metrics' definitions."""

import torch

from sae_workbench.sae.metrics import reconstruction_metrics


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
