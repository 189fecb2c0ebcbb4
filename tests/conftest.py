"""Shared fixtures: the real Gemma 3 270M (the default profile) and MiniLM, a
random GPT-2-shaped model, seeding.

Gemma's GGUF -> fp32 conversion is cached across test sessions and pipeline runs
in $SAE_WORKBENCH_CACHE (default ~/.cache/sae_workbench): the first session
converts once (~1.5 min), later ones load in ~15 s."""

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


SLOW_FIXTURES = {"gemma"}
"""A test that uses one of these is marked slow wherever it is (loading Gemma alone takes 15-35 s)."""


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


MINILM = {
    "model": "minilm",
    "hooks": ["blocks.1.hook_resid_pre", "blocks.3.hook_resid_pre", "blocks.5.hook_resid_pre", "blocks.4.hook_mlp_out", "blocks.4.hook_attn_out"],
    "steer.hook": "blocks.5.hook_resid_pre",
    "sae.seed_hooks": ["blocks.5.hook_resid_pre"],
    "control.hook": "blocks.5.hook_resid_pre",
}
"""What switching params.yaml to the MiniLM profile takes (README)."""


def raw_params(profile: str | None = None) -> dict:
    """params.yaml as a dict; profile 'minilm' switches model, hooks and steer.hook to MiniLM's."""
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    if profile == "minilm":
        raw["model"], raw["hooks"] = MINILM["model"], list(MINILM["hooks"])
        raw["steer"]["hook"] = MINILM["steer.hook"]
        raw["sae"]["seed_hooks"], raw["control"]["hook"] = MINILM["sae.seed_hooks"], MINILM["control.hook"]
    elif profile is not None:
        raise ValueError(profile)
    return raw


def write_params(raw: dict, path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def params():
    """The default params.yaml (the gemma profile)."""
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def minilm_params(tmp_path_factory):
    return load_params(write_params(raw_params("minilm"), tmp_path_factory.mktemp("minilm") / "params.yaml"))


@pytest.fixture(scope="session")
def minilm(minilm_params):
    from sae_workbench.models import load_model

    return load_model(minilm_params.model)


@pytest.fixture(scope="session")
def gemma(params):
    """The real Gemma 3 270M (default profile), loaded once per session."""
    from sae_workbench.models import load_model

    assert params.model_key == "gemma"
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
    profile = ProfileConfig(loader="hooked_transformer", name="random-gpt2-shaped", n_layers=4, kind="causal_lm")
    return ModelHandle(model=model, tokenizer=None, profile=profile, prepend_bos=True)
