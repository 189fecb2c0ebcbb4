"""Extraction: the model run once per batch of texts, every hook captured,
written as an activation set (format: `activations`).

    extract_activations(handle, texts, hooks, "data/activations/corpus", max_tokens, batch_size)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm

from .activations import TokenTable, kept_index, save_tensors
from .atomic import write_text
from .data import Text
from .models import ModelHandle, TokenizedText, length_batches, pad_batch


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
    text_index, position = kept_index(records)
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
