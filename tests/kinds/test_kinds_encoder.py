"""kinds/encoder.py: embedding fidelity on the real MiniLM: a perfect
reconstruction scores 1, a useless one about 0."""

import torch

from sae_workbench.kinds.encoder import embedding_fidelity

from helpers import Constant, Perfect


TEXTS = ["def f(x):\n    return x * 2", "The committee shall convene on Monday.", "lol same 😂", "∫ x dx = x²/2 + C"]


def test_embedding_fidelity_bounds(minilm):
    toks = [minilm.tokenize(t, 64) for t in TEXTS]
    hook = "blocks.3.hook_resid_pre"
    perfect = embedding_fidelity(minilm, Perfect(), hook, toks)
    assert abs(perfect["cos_recon"] - 1) < 1e-5 and abs(perfect["fidelity"] - 1) < 1e-4
    assert perfect["cos_zero"] < 0.99
    zero_like = embedding_fidelity(minilm, Constant(torch.zeros(384)), hook, toks)
    assert abs(zero_like["fidelity"]) < 1e-4  # reconstructing zeros is the ablation
    worse = embedding_fidelity(minilm, Constant(torch.randn(384) * 5), hook, toks)
    assert worse["fidelity"] < perfect["fidelity"]
