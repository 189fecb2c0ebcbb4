"""Steering: add a multiple of one SAE feature's decoder direction at its hook.

The coefficient is expressed in units of the feature's maximum observed
activation on the evaluation texts, so `coef = 1` adds as much of the
direction as the feature's strongest natural firing does.

- MiniLM (no LM head): how the pooled sentence embedding moves towards each
  category's centroid (cosine similarity) as the coefficient grows.
- GPT-2: continuations of neutral prompts generated with the feature added,
  and the feature's own activation over the generated tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .activations import pad_batch
from .models import ModelHandle, TokenizedText


def add_direction_hook(delta: torch.Tensor, keep: torch.Tensor | None = None, skip_bos: bool = False):
    """Hook function adding `delta` [d_model] to the residual stream.

    keep: [batch, pos] 0/1 mask of positions to edit (None: all positions);
    skip_bos: leave position 0 of a full-sequence pass untouched (GPT-2's BOS),
    while incremental generation steps (one new position) are edited.
    """

    def fn(x: torch.Tensor, hook=None) -> torch.Tensor:
        if keep is not None:
            m = keep[:, : x.shape[1]].to(x.dtype).unsqueeze(-1)
        else:
            m = torch.ones(x.shape[:2] + (1,), dtype=x.dtype)
            if skip_bos and x.shape[1] > 1:
                m[:, 0] = 0
        return x + m * delta.to(x.dtype)

    return fn


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sentence-transformers pooling: mean over attended tokens, then L2-normalised."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def keep_mask(toks: list[TokenizedText], width: int) -> torch.Tensor:
    """[batch, width] 1 on each text's non-special tokens, 0 on specials and padding."""
    keep = torch.zeros(len(toks), width, dtype=torch.long)
    for r, t in enumerate(toks):
        keep[r, : len(t.ids)] = torch.tensor([0 if s else 1 for s in t.special])
    return keep


Edit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""edit(resid [batch, pos, d], keep [batch, pos]) -> new resid."""


@torch.no_grad()
def pooled_embeddings(
    handle: ModelHandle, toks: list[TokenizedText], hook: str | None = None, edit: Edit | None = None, batch_size: int = 32
) -> torch.Tensor:
    """[n_texts, d_model] pooled final-layer embeddings, optionally with `edit`
    applied to the residual stream at `hook`."""
    last = f"blocks.{handle.n_layers - 1}.hook_resid_post"
    out = []
    pad_id = getattr(handle.tokenizer, "pad_token_id", None) or 0
    for b in range(0, len(toks), batch_size):
        chunk = toks[b : b + batch_size]
        ids, mask = pad_batch([t.ids for t in chunk], pad_id)
        cap: dict[str, torch.Tensor] = {}

        def grab(x, hook=None):
            cap["h"] = x.detach()
            return x

        hooks = [(last, grab)]
        if edit is not None:
            keep = keep_mask(chunk, ids.shape[1])
            hooks.insert(0, (hook, lambda x, hook=None, keep=keep: edit(x, keep)))
        handle.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks)
        out.append(mean_pool(cap["h"].float(), mask))
    return torch.cat(out)


def add_edit(delta: torch.Tensor) -> Edit:
    """Add `delta` [d_model] on every kept token."""
    return lambda x, keep: add_direction_hook(delta, keep)(x)


@dataclass
class SteerResult:
    coefficients: list[float]
    similarity: dict[str, list[float]]
    """category -> mean cosine similarity of the steered texts to that category's centroid, per coefficient."""
    nearest_target_frac: list[float]
    """Per coefficient: fraction of steered texts whose nearest centroid is the target category."""
    drift: list[float]
    """Per coefficient: mean 1 - cos(steered, unsteered) embedding (how far the meaning moved)."""


def steer_sentence_embeddings(
    handle: ModelHandle,
    hook: str,
    direction: torch.Tensor,
    max_act: float,
    coefficients: list[float],
    centroid_toks: dict[str, list[TokenizedText]],
    steered_toks: list[TokenizedText],
    target: str,
) -> SteerResult:
    """MiniLM steering study: cosine to each category centroid vs coefficient."""
    cats = list(centroid_toks)
    centroids = torch.stack([pooled_embeddings(handle, centroid_toks[c]).mean(0) for c in cats])
    centroids = torch.nn.functional.normalize(centroids, dim=-1)
    base = pooled_embeddings(handle, steered_toks)
    sim = {c: [] for c in cats}
    nearest, drift = [], []
    for coef in coefficients:
        emb = base if coef == 0 else pooled_embeddings(handle, steered_toks, hook, add_edit(coef * max_act * direction))
        s = emb @ centroids.T  # [n, n_cats]
        for j, c in enumerate(cats):
            sim[c].append(float(s[:, j].mean()))
        nearest.append(float((s.argmax(1) == cats.index(target)).float().mean()))
        drift.append(float(1 - (emb * base).sum(-1).mean()))
    return SteerResult(list(coefficients), sim, nearest, drift)


@torch.no_grad()
def steer_generation(
    handle: ModelHandle,
    sae,
    feature: int,
    hook: str,
    max_act: float,
    coefficients: list[float],
    prompts: list[torch.Tensor],
    max_new_tokens: int,
) -> list[dict]:
    """GPT-2 steering study: greedy continuations with the feature added at every
    non-BOS position, and the feature's mean activation over the generated tokens.

    prompts: token id tensors [1, pos] starting with BOS."""
    direction = sae.W_dec[feature].detach()
    rows = []
    model = handle.model
    for coef in coefficients:
        delta = coef * max_act * direction
        for p_i, ids in enumerate(prompts):
            with model.hooks(fwd_hooks=[(hook, add_direction_hook(delta, skip_bos=True))]):
                full = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, stop_at_eos=False, verbose=False, use_past_kv_cache=False)
                _, cache = model.run_with_cache(full, names_filter=[hook])
            acts = sae.encode(cache[hook][0, ids.shape[1] :].to(sae.W_enc.dtype))[:, feature]
            text = handle.tokenizer.decode(full[0, ids.shape[1] :]) if handle.tokenizer is not None else None
            rows.append(
                {
                    "coefficient": coef,
                    "prompt": p_i,
                    "continuation": text,
                    "continuation_ids": full[0, ids.shape[1] :].tolist(),
                    "feature_activation": float(acts.mean()),
                }
            )
    return rows


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of y on x."""
    return float(np.polyfit(np.asarray(x, dtype=float), np.asarray(y, dtype=float), 1)[0])
