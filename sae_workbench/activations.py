"""Per-token activations on disk, with token strings and character offsets.

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
from tqdm import tqdm

from .atomic import atomic_file, write_text
from .data import Text
from .models import ModelHandle, TokenizedText


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


def _kept_index(texts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    ti, pos = [], []
    for i, t in enumerate(texts):
        for p, s in enumerate(t["special"]):
            if not s:
                ti.append(i)
                pos.append(p)
    return np.asarray(ti, dtype=np.int32), np.asarray(pos, dtype=np.int32)


def extract_activations(
    handle: ModelHandle,
    texts: list[Text],
    hooks: list[str],
    out_dir: str | Path,
    max_tokens: int,
    batch_size: int,
    desc: str = "extract",
) -> TokenTable:
    """Run the model once per batch for all hooks and write the on-disk format above."""
    handle.check_hooks(hooks)
    toks: list[TokenizedText] = [handle.tokenize(t.text, max_tokens) for t in texts]
    per_text = token_activations(handle, toks, hooks, batch_size, desc)

    records = [
        {
            "id": t.id,
            "category": t.category,
            "split": t.split,
            "register": t.register,
            "text": t.text,
            "tokens": tk.tokens,
            "offsets": [list(o) for o in tk.offsets],
            "special": [int(s) for s in tk.special],
        }
        for t, tk in zip(texts, toks)
    ]
    text_index, position = _kept_index(records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = handle.profile.name
    for h in hooks:
        acts = torch.cat(per_text[h]) if per_text[h] else torch.zeros(0, handle.d_model)
        save_tensors(
            out_dir / f"{h}.safetensors",
            {
                "acts": acts.contiguous(),
                "text_index": torch.from_numpy(text_index),
                "position": torch.from_numpy(position),
            },
            {"hook": h, "model": name},
        )
    write_text(
        out_dir / "tokens.json",
        json.dumps({"model": name, "hooks": hooks, "max_tokens": max_tokens, "texts": records}, ensure_ascii=False),
    )
    return TokenTable(records, text_index, position)


def token_activations(
    handle: ModelHandle, toks: list[TokenizedText], hooks: list[str], batch_size: int, desc: str = "extract"
) -> dict[str, list[torch.Tensor]]:
    """{hook: [per text: activations of its non-special tokens, [n_kept_i, d_model]]}.

    Texts are batched by length (right padding, attention mask), so padding
    never changes a token's activations; one forward pass serves all hooks."""
    per_text: dict[str, list] = {h: [None] * len(toks) for h in hooks}
    for idx in tqdm(length_batches(toks, batch_size), desc=desc, unit="batch"):
        ids, mask = pad_batch([toks[i].ids for i in idx], handle.pad_id)
        out = handle.run_hooks(ids, mask, hooks)
        for row, i in enumerate(idx):
            keep = torch.tensor([not s for s in toks[i].special])
            for h in hooks:
                per_text[h][i] = out[h][row, : len(toks[i].ids)][keep]
    return per_text


def length_batches(toks: list[TokenizedText], batch_size: int) -> list[list[int]]:
    """Text indices in batches of similar length (less padding), in a fixed order."""
    order = sorted(range(len(toks)), key=lambda i: (len(toks[i].ids), i))
    return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into (ids, attention_mask)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    return ids, mask


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
    ti, pos = _kept_index(texts)
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
