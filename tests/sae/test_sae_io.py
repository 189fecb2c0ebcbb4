"""sae/io.py: the SAELens round trip of each architecture."""

import pytest
import torch

from sae_workbench.config import ProfileConfig
from sae_workbench.sae.io import load_sae, save_for_saelens
from sae_workbench.sae.train import train_sae

from helpers import buffer_of, cfg, planted


@pytest.mark.parametrize("arch,lens_arch", [("relu", "standard"), ("topk", "topk"), ("batchtopk", "jumprelu")])
def test_saelens_round_trip_encodes_identically(arch, lens_arch, tmp_path):
    x = planted(n=3000)
    c = cfg(arch, epochs=1)
    r = train_sae(buffer_of(x, c), 16, c, seed=0)
    hook = "blocks.0.hook_resid_pre"
    save_for_saelens(r.sae, r.scale, tmp_path / hook, hook, "test-model")
    loaded, neuronpedia = load_sae(ProfileConfig(loader="bridge", name="x", n_layers=1, kind="encoder"), hook, tmp_path)
    assert loaded.cfg.architecture() == lens_arch and neuronpedia is None
    assert loaded.cfg.metadata.hook_name == hook
    with torch.no_grad():
        ours = r.sae.encode(x * r.scale)  # our module on its training scale
        theirs = loaded.encode(x)  # SAELens on raw activations
        torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(loaded.decode(theirs), r.sae.decode(ours) / r.scale, atol=1e-4, rtol=1e-4)
