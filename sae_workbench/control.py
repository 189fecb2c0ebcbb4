"""A random-model control: would the same pipeline find "significant specialists"
in a transformer that learned nothing?

SAEs trained on randomly initialised transformers also yield plausible-looking,
interpretable-seeming features (Heap et al. 2025, "Sparse autoencoders can
interpret randomly initialized transformers"): token identity alone separates
Python from French. A finding about the trained model means something only
against this baseline.

The control model is the trained model with every weight matrix (every
parameter of 2 or more dimensions: embeddings, attention, MLP, unembedding)
replaced by seeded Gaussian noise of the same mean and standard deviation;
1-D parameters (norm scales, biases) are kept, so activations keep their
scale. Same architecture, same tokenizer, nothing learned.
"""

from __future__ import annotations

import torch

from .models import ModelHandle


@torch.no_grad()
def randomize_weights(handle: ModelHandle, seed: int) -> ModelHandle:
    """The handle's model with its weight matrices re-drawn in place (module docstring)."""
    g = torch.Generator().manual_seed(seed)
    for _, p in sorted(handle.model.named_parameters(), key=lambda kv: kv[0]):
        if p.dim() >= 2:
            mean, std = p.float().mean(), p.float().std()
            p.copy_((torch.randn(p.shape, generator=g) * std + mean).to(p.dtype))
    handle.model.__dict__.pop("_workbench_unembed_rows", None)
    return handle
