"""Shared fixtures: the real embedded MiniLM, a random GPT-2-shaped model, seeding."""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sae_workbench.config import load_params

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def params():
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def minilm(params):
    from sae_workbench.models import load_model

    return load_model(params.model)


@pytest.fixture(scope="session")
def tiny_gpt2():
    """GPT-2's architecture (LayerNorm, learned positions, GELU, causal attention),
    randomly initialised and small; fed token ids, so no tokenizer download."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from sae_workbench.config import ProfileConfig
    from sae_workbench.models import ModelHandle

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=4, d_model=64, n_ctx=64, d_head=16, n_heads=4, d_mlp=256, d_vocab=500,
        act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard",
        attn_only=False, seed=0, default_prepend_bos=True,
    )
    model = HookedTransformer(cfg)
    model.eval()
    profile = ProfileConfig(loader="hooked_transformer", name="random-gpt2-shaped", n_layers=4, has_lm_head=True)
    return ModelHandle(model=model, tokenizer=None, profile=profile, prepend_bos=True)
