"""model_cache.py: the GGUF -> Hugging Face conversion cache's atomicity and key,
on a fake GGUF package."""

import sys
import types

import pytest


@pytest.fixture
def fake_gguf(monkeypatch, tmp_path):
    from sae_workbench import model_cache, offline

    mod = types.ModuleType("fake_gguf_pkg")
    mod.MODEL_NAME, mod.EXPECTED_SHA256 = "fake.gguf", "ab" * 32
    mod.assemble = lambda path: path
    monkeypatch.setitem(sys.modules, "fake_gguf_pkg", mod)
    monkeypatch.setenv(offline.CACHE_ENV, str(tmp_path / "cache"))
    calls = []

    def convert(package, out, fail=False):
        calls.append(out)
        (out / "config.json").write_text("{}")
        if getattr(convert, "fail", False):
            raise KeyboardInterrupt  # interrupted half way
        for f in ("model.safetensors", "tokenizer_config.json"):
            (out / f).write_text("x")

    monkeypatch.setattr(model_cache, "convert_gguf", convert)
    return mod, convert, calls


@pytest.mark.slow  # was in test_gemma.py, marked slow as a whole
def test_conversion_is_cached_atomic_and_keyed(fake_gguf, tmp_path):
    from sae_workbench.model_cache import gguf_cache_dir, gguf_hf_dir

    mod, convert, calls = fake_gguf
    convert.fail = True
    with pytest.raises(KeyboardInterrupt):
        gguf_hf_dir("fake-gguf-pkg")
    root = tmp_path / "cache" / "hf"
    assert list(root.iterdir()) == []  # no half directory, no temporary left
    convert.fail = False
    d = gguf_hf_dir("fake-gguf-pkg")
    assert d.parent == root and d.name.startswith("fake-abababab") and (d / "model.safetensors").exists()
    assert gguf_hf_dir("fake-gguf-pkg") == d and len(calls) == 2  # the second call converts nothing
    mod.EXPECTED_SHA256 = "cd" * 32  # another GGUF: another directory, converted anew
    assert gguf_cache_dir("fake-gguf-pkg") != d and gguf_hf_dir("fake-gguf-pkg") != d and len(calls) == 3
