"""The GPT-2 profile's mechanics on a randomly initialised GPT-2-shaped model fed
token ids (the real GPT-2 and its SAEs need the Hugging Face hub)."""

import subprocess
import sys

import torch
import yaml

from sae_workbench.extraction import token_activations
from sae_workbench.features import encode_sparse
from sae_workbench.steer.generation import steer_generation
from sae_workbench.edits import add_direction_hook

from helpers import GPT2_HOOKS as HOOKS, ROOT, _bos_text, _random_sae


def test_bos_masked_and_padding_invariant(tiny_gpt2):
    toks = [_bos_text(range(5, 25)), _bos_text([7, 8, 9]), _bos_text(range(100, 140))]
    batched = token_activations(tiny_gpt2, toks, HOOKS, batch_size=3)
    for i, tk in enumerate(toks):
        alone = token_activations(tiny_gpt2, [tk], HOOKS, batch_size=1)
        for h in HOOKS:
            assert batched[h][i].shape == (len(tk.ids) - 1, 64)  # BOS masked out
            torch.testing.assert_close(batched[h][i], alone[h][0], atol=1e-4, rtol=1e-4)
    # the kept rows are exactly positions 1.. of the full forward pass
    _, cache = tiny_gpt2.model.run_with_cache(torch.tensor([toks[0].ids]), names_filter=HOOKS)
    torch.testing.assert_close(batched[HOOKS[1]][0], cache[HOOKS[1]][0, 1:], atol=1e-4, rtol=1e-4)


def test_encode_with_a_saelens_sae_and_wrong_width_error(tiny_gpt2):
    acts = token_activations(tiny_gpt2, [_bos_text(range(1, 30))], HOOKS, 1)[HOOKS[1]][0]
    ft = encode_sparse(_random_sae(), acts)
    assert ft.n_rows == 29 and (ft.value > 0).all()
    dense = _random_sae().encode(acts)
    assert len(ft.value) <= dense.numel()
    import pytest

    with pytest.raises(ValueError, match="wrong SAE"):
        encode_sparse(_random_sae(d_in=32), acts)


def test_steering_hook_edits_only_non_bos_positions(tiny_gpt2):
    ids = torch.tensor([_bos_text(range(10, 20)).ids])
    delta = torch.randn(64)
    _, clean = tiny_gpt2.model.run_with_cache(ids, names_filter=HOOKS[1])
    cap = {}

    def grab(x, hook):
        cap["x"] = x.detach().clone()
        return x

    tiny_gpt2.model.run_with_hooks(ids, fwd_hooks=[(HOOKS[1], add_direction_hook(delta, skip_bos=True)), (HOOKS[1], grab)])
    diff = cap["x"] - clean[HOOKS[1]]
    assert diff[0, 0].abs().max() == 0  # BOS untouched
    torch.testing.assert_close(diff[0, 1:], delta.expand(10, 64), atol=1e-5, rtol=1e-5)


def test_steered_generation_raises_feature_activation(tiny_gpt2):
    sae = _random_sae()
    feature = 3
    prompts = [torch.tensor([_bos_text([11, 12, 13]).ids])]
    rows = steer_generation(tiny_gpt2, sae, feature, HOOKS[1], 1.0, [0.0, 20.0], prompts, max_new_tokens=4)
    assert [r["coefficient"] for r in rows] == [0.0, 20.0]
    assert all(len(r["continuation_ids"]) == 4 for r in rows)
    assert rows[1]["feature_activation"] > rows[0]["feature_activation"]


def test_gpt2_profile_offline_is_one_clear_line(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"] = "gpt2"
    params["hooks"], params["steer"]["hook"] = ["blocks.8.hook_resid_pre"], "blocks.8.hook_resid_pre"
    params["sae"]["seed_hooks"], params["control"]["hook"], params["explain"]["hook"], params["cross_model"]["hook"] = [], "", "", ""
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    out = tmp_path / "acts"
    r = subprocess.run(
        [sys.executable, str(ROOT / "stages/extract.py"), "--params", str(p), "--texts", str(ROOT / "data/texts/labelled.jsonl"), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "Hugging Face hub" in last and "Traceback" not in r.stderr
    assert not out.exists()


def test_pretrained_sae_offline_is_one_clear_error(params, tmp_path):
    import pytest

    from sae_workbench.config import ProfileConfig
    from sae_workbench.offline import ModelUnavailable
    from sae_workbench.sae.io import load_sae

    gpt2 = ProfileConfig(loader="hooked_transformer", name="gpt2-small", n_layers=12, kind="causal_lm", sae_source="pretrained", sae_release="gpt2-small-res-jb")
    with pytest.raises(ModelUnavailable, match="Hugging Face hub") as e:
        load_sae(gpt2, "blocks.8.hook_resid_pre", tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="has no SAE for"):
        load_sae(gpt2, "blocks.8.hook_mlp_out", tmp_path)
