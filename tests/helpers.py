"""Builders shared by more than one test file (fixtures stay in conftest.py):
the repository's paths and params, fake SAEs, tiny hand-made inputs.

Test files anywhere under tests/ import them as `from helpers import ...`: tests/
is on sys.path (pytest inserts the root conftest.py's directory, "prepend" import
mode). Heavy libraries are imported inside the builders that need them, so that
conftest.py, which imports this module, stays light."""

from __future__ import annotations

import json
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from sae_lens.saes.standard_sae import StandardSAE

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""


# ---------------------------------------------------------------- params.yaml


MINILM = {
    "model": "minilm",
    "hooks": ["blocks.1.hook_resid_pre", "blocks.3.hook_resid_pre", "blocks.5.hook_resid_pre", "blocks.4.hook_mlp_out", "blocks.4.hook_attn_out"],
    "steer.hook": "blocks.5.hook_resid_pre",
    "sae.seed_hooks": ["blocks.5.hook_resid_pre"],
    "control.hook": "blocks.5.hook_resid_pre",
    "explain.hook": "blocks.5.hook_resid_pre",
    "cross_model.hook": "blocks.5.hook_resid_pre",
    "cross_model.profiles": ["gemma"],
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
        raw["explain"]["hook"] = MINILM["explain.hook"]
        raw["cross_model"]["hook"], raw["cross_model"]["profiles"] = MINILM["cross_model.hook"], list(MINILM["cross_model.profiles"])
    elif profile is not None:
        raise ValueError(profile)
    return raw


def write_params(raw: dict, path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ---------------------------------------------------------------- fake SAEs (tests/kinds, test_gemma.py)


class Perfect:
    def encode(self, x):
        return x

    def decode(self, f):
        return f


class Constant:
    """Reconstructs every token as the same vector."""

    def __init__(self, v):
        self.v = v

    def encode(self, x):
        return x

    def decode(self, f):
        return self.v.expand_as(f)


# ---------------------------------------------------------------- the early-stopping forward pass (test_activations.py, test_gemma.py)


def fired_hooks(handle, hooks, ids):
    """Names of the block hook points (resid/attn_out/mlp_out and the blocks' inner
    ones) that fire while run_hooks(hooks) runs, in order."""
    fired = []
    mods = {n: m for n, m in handle.model.hook_dict.items() if n.startswith("blocks.") or n.startswith("ln_final")}
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: fired.append(n)) for n, m in mods.items()]
    try:
        out = handle.run_hooks(ids, torch.ones_like(ids), hooks)
    finally:
        for h in handles:
            h.remove()
    return out, fired


# ---------------------------------------------------------------- the random GPT-2-shaped model (conftest's tiny_gpt2)


GPT2_HOOKS = ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"]
"""Two hooks of tiny_gpt2 (imported as HOOKS)."""


def _bos_text(ids, bos=0):
    from sae_workbench.models import TokenizedText

    ids = [bos] + list(ids)
    return TokenizedText(ids=ids, tokens=[str(i) for i in ids], offsets=[(0, 0)] * len(ids), special=[True] + [False] * (len(ids) - 1))


def _random_sae(d_in=64, d_sae=128):
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=GPT2_HOOKS[1])))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.2)
    return sae


# ---------------------------------------------------------------- steering, ablation and attribution (tests/steer, test_edits.py)


MINILM_HOOK = "blocks.3.hook_resid_pre"
"""The MiniLM hook the steering tests edit (imported there as HOOK)."""
GPT_HOOK = "blocks.2.hook_resid_pre"


def _texts():
    from sae_workbench.data import read_texts

    return read_texts(ROOT / "data/texts/labelled.jsonl")


def _capture(handle, toks, hook, edit=None, stop=True):
    """Residual at `hook` as the model sees it after `edit` (a second hook on the same point)."""
    from sae_workbench.edits import edit_hook, keep_mask
    from sae_workbench.models import pad_batch

    ids, mask = pad_batch([t.ids for t in toks], 0)
    cap = {}

    def grab(x, hook=None):
        cap["x"] = x.detach().clone()
        return x

    hooks = ([(hook, edit_hook(edit, keep_mask(toks, ids.shape[1])))] if edit else []) + [(hook, grab)]
    layer = int(hook.split(".")[1])
    with torch.no_grad():
        handle.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks, **({"stop_at_layer": layer + 1} if stop else {}))
    return cap["x"], keep_mask(toks, ids.shape[1])


def _tied_sae(x: torch.Tensor, d_sae: int, hook: str, seed: int = 0) -> StandardSAE:
    """Tied ReLU SAE with orthonormal decoder rows (encoder = decoder^T, no biases);
    feature 0 is planted along the mean activation, so it fires on nearly every token
    with the known activation relu(x . d_0); the other rows are random."""
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    d_in = x.shape[-1]
    g = torch.Generator().manual_seed(seed)
    basis = torch.cat([x.reshape(-1, d_in).mean(0, keepdim=True).T, torch.randn(d_in, d_sae - 1, generator=g)], 1)
    q, r = torch.linalg.qr(basis)
    q = q * torch.sign(torch.diagonal(r))  # keep column 0 pointing along the mean
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=hook)))
    with torch.no_grad():
        sae.W_dec.copy_(q.T)
        sae.W_enc.copy_(q)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def _gpt_setup(tiny_gpt2, seed=0):
    toks = [_bos_text(range(10, 22)), _bos_text(range(40, 48))]
    x, keep = _capture(tiny_gpt2, toks, GPT_HOOK)
    return toks, _tied_sae(x[keep.bool()], 32, GPT_HOOK, seed)


# ---------------------------------------------------------------- on-disk activations and an SAE (tests/pipeline: bad input, resume)


CRAFTED_HOOK = "blocks.5.hook_resid_post"
"""The one hook of _encode_inputs' activation set (imported as HOOK in tests/pipeline)."""


def _encode_inputs(tmp: Path, n_tokens: int = 12, d: int = 640):
    """A tiny activation set (tokens.json + one hook) and an SAE for it, in the on-disk formats."""
    from sae_workbench.activations import save_tensors
    from sae_workbench.sae.io import save_for_saelens
    from sae_workbench.sae.topk import TopKSAE

    acts_dir, sae_dir = tmp / "acts", tmp / "saes"
    text = {"id": "t", "category": "python", "split": "heldout", "register": "", "text": "x" * n_tokens,
            "tokens": ["<bos>"] + ["x"] * n_tokens, "offsets": [[0, 0]] + [[i, i + 1] for i in range(n_tokens)],
            "special": [1] + [0] * n_tokens}
    acts_dir.mkdir()
    (acts_dir / "tokens.json").write_text(json.dumps({"model": "m", "hooks": [CRAFTED_HOOK], "max_tokens": 128, "texts": [text]}))
    g = torch.Generator().manual_seed(0)
    save_tensors(acts_dir / f"{CRAFTED_HOOK}.safetensors",
                        {"acts": torch.randn(n_tokens, d, generator=g), "text_index": torch.zeros(n_tokens, dtype=torch.long),
                         "position": torch.arange(1, n_tokens + 1)}, {"hook": CRAFTED_HOOK, "model": "m"})
    torch.manual_seed(0)
    save_for_saelens(TopKSAE(d, 32, k=4), 1.0, sae_dir / CRAFTED_HOOK, CRAFTED_HOOK, "m")
    return acts_dir, sae_dir


# ---------------------------------------------------------------- custom SAEs on planted data (tests/sae)


ARCHS = ["relu", "topk", "batchtopk"]


def planted(n=6000, d=16, n_atoms=24, seed=0):
    """Sparse combinations of 24 unit atoms plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(n_atoms, d, generator=g), dim=1)
    codes = (torch.rand(n, n_atoms, generator=g) < 0.08) * torch.rand(n, n_atoms, generator=g) * 3
    return codes @ atoms + 0.01 * torch.randn(n, d, generator=g) + 2.0


def cfg(arch, **kw):
    """A small SAEConfig for `arch`, overridden by kw."""
    from sae_workbench.config import SAEConfig

    base = dict(architecture=arch, expansion=4, k=4, l1_coefficient=0.3, lr=3e-3, batch_tokens=256, epochs=3,
                buffer_tokens=2048, dead_window_tokens=2000, checkpoint_every=5, device="cpu", fidelity_texts=0)
    return SAEConfig(**{**base, **kw})


def buffer_of(x, c, seed=0):
    from sae_workbench.sae.buffer import ShuffledBuffer, tensor_reader

    read, n, _ = tensor_reader(x)
    return ShuffledBuffer(read, np.arange(n), c.batch_tokens, c.buffer_tokens, seed, chunk_tokens=512)


# ---------------------------------------------------------------- hand-built feature tables (tests/analysis)


def _planted_table(seed=0):
    """7 categories x 6 texts x 5 tokens, 40 features. Feature 10+k fires on every
    token of category k's texts; feature 0 fires everywhere weakly; others at random."""
    from sae_workbench.config import CATEGORIES
    from sae_workbench.features import FeatureTable

    rng = np.random.default_rng(seed)
    texts, rows, feats, vals, text_index = [], [], [], [], []
    r = 0
    for k, c in enumerate(CATEGORIES):
        for j in range(6):
            texts.append({"id": f"{c}-{j}", "category": c, "split": "heldout" if j % 3 == 2 else "train"})
            for _ in range(5):
                for f, v in [(0, 0.5), (10 + k, 4.0 + rng.random())] + [(int(rng.integers(20, 40)), float(rng.random()))]:
                    rows.append(r), feats.append(f), vals.append(v)
                text_index.append(len(texts) - 1)
                r += 1
    ft = FeatureTable(np.array(rows, np.int32), np.array(feats, np.int32), np.array(vals, np.float32), r, 40)
    ti = np.array(text_index, np.int32)
    for i, t in enumerate(texts):  # token records as the activation set stores them
        n = int((ti == i).sum())
        t["text"] = " ".join(f"w{i}_{p}" for p in range(n))
        t["offsets"], a = [], 0
        for p in range(n):
            w = f"w{i}_{p}"
            t["offsets"].append([a, a + len(w)])
            a += len(w) + 1
    position = np.concatenate([np.arange((ti == i).sum()) for i in range(len(texts))]).astype(np.int32)
    return ft, ti, texts, position


# ---------------------------------------------------------------- report figures (tests/report: render, viz)


HOSTILE = 'x = a#b $5 *c* _d_ [e] \\f @g <h> `i` ``` "q" ]) } // #set text(red) $x^2$ @fig-a </b>'


def _figures():
    from sae_workbench import viz

    return (
        viz.bar(["python", "math", "urls"], [0.5, 1.25, -0.25], "Held-out score per category", "category", "score"),
        viz.heatmap([[1, 2, 3], [3, 4, 5]], ["a spec", "b spec", "c spec"], ["a", "b"], "Score matrix"),
        viz.lines(["blocks.1", "blocks.3", "blocks.5"], {"python": [0.1, 0.4, 0.3], "math": [0.2, 0.1, 0.5]}, "By depth", "hook", "score"),
    )


# ---------------------------------------------------------------- a real browser (tests/browser, tests/app)


def have_chromium() -> bool:
    """Debian's chromium and chromedriver are installed (.ci/run apt-installs them)."""
    from sae_workbench.browser.chromium import available

    return available()


def chromium(width: int = 1400, height: int = 900):
    """Debian's headless chromium with its console log, seeing only the project's fonts
    (sae_workbench.browser.chromium.headless)."""
    from sae_workbench.browser.chromium import headless

    return headless(width, height)
