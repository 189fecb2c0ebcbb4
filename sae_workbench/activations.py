"""Per-token activations on disk, with token strings and character offsets:
the activation store that extraction (`extraction`) writes and SAE training,
encoding and analysis read. Imports nothing about models.

On-disk format of one activation set (a directory):

    tokens.json
        {"model": str, "hooks": [str], "max_tokens": int,
         "texts": [{"id", "category", "split", "register", "text",
                    "tokens": [str], "offsets": [[start, end]], "special": [0|1]}]}
        Every token the model saw (padding never appears). `special` = 1 marks
        [CLS]/[SEP]/BOS, masked out of the activation tables below.
    <hook>.safetensors, one per hook, tensors:
        acts        float32 [n_kept, d_model]  activations of the non-special tokens
        text_index  int32   [n_kept]           index into tokens.json "texts"
        position    int32   [n_kept]           token position inside that text
      rows in text order, then position order; metadata {"json": '{"hook", "model"}'}.

So row r of any hook's table is token `texts[text_index[r]].tokens[position[r]]`,
spanning characters `offsets[position[r]]` of that text: any later stage can
highlight it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import atomic_file


@dataclass
class TokenTable:
    """tokens.json in memory, plus the kept-token index shared by every hook."""

    texts: list[dict]
    text_index: np.ndarray
    position: np.ndarray

    @property
    def n_kept(self) -> int:
        return len(self.text_index)

    def categories(self) -> list[str]:
        return [t["category"] for t in self.texts]


def kept_index(texts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    ti, pos = [], []
    for i, t in enumerate(texts):
        for p, s in enumerate(t["special"]):
            if not s:
                ti.append(i)
                pos.append(p)
    return np.asarray(ti, dtype=np.int32), np.asarray(pos, dtype=np.int32)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """safetensors file, written atomically. The metadata goes in as one JSON
    string under "json": safetensors orders several keys at random, which would
    change the file's hash (and DVC's) from run to run."""
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={"json": json.dumps(metadata, sort_keys=True)})


def load_token_table(act_dir: str | Path) -> TokenTable:
    path = Path(act_dir) / "tokens.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        texts = raw["texts"]
    except FileNotFoundError:
        raise ValueError(f"{path} is missing: run the extract stage first (dvc repro)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is corrupt ({e}); delete it and run dvc repro") from None
    ti, pos = kept_index(texts)
    return TokenTable(texts, ti, pos)


def load_acts(act_dir: str | Path, hook: str, table: TokenTable | None = None) -> torch.Tensor:
    """Activations [n_kept, d_model] of one hook; checks they match tokens.json."""
    path = Path(act_dir) / f"{hook}.safetensors"
    if not path.exists():
        raise ValueError(f"no activations for hook {hook!r} in {act_dir}: add it to hooks in params.yaml and run dvc repro")
    try:
        t = load_file(str(path))
        acts = t["acts"]
    except (SafetensorError, KeyError, OSError, ValueError) as e:
        raise ValueError(f"{path} is corrupt ({type(e).__name__}); delete it and run dvc repro") from None
    if table is not None and acts.shape[0] != table.n_kept:
        raise ValueError(f"{path} has {acts.shape[0]} rows but tokens.json has {table.n_kept} kept tokens: re-run dvc repro")
    bad = ~torch.isfinite(acts).all(dim=1)
    if bad.any():
        raise ValueError(f"{path} has {int(bad.sum())} rows with NaN or infinite activations (first: row {int(bad.nonzero()[0])}); "
                         "delete it and re-run dvc repro (stage extract)")
    return acts


def load_activation_set(act_dir: str | Path, hook: str) -> tuple[TokenTable, torch.Tensor]:
    """tokens.json and one hook's activations, checked against each other."""
    table = load_token_table(act_dir)
    return table, load_acts(act_dir, hook, table)
