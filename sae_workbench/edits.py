"""Edits of a hook's activations: the one place a forward pass is changed.
The fidelity splice and zero-ablation (`kinds`), steering, ablation and
attribution (`steer`) all go through these; they sit below both.

Feature i of the SAE at a hook reads f_i(x) from the activation x of a token and
writes along its decoder direction d_i = W_dec[i]. Every edit touches kept tokens
only (not special tokens, not padding):

    add     x' = x + value d_i
    clamp   x' = x + (value - f_i(x)) d_i    the SAE's reading of feature i set to value
                                             (every other feature's contribution and the
                                             SAE error term x - x_hat are kept)
    ablate  x' = x - f_i(x) d_i              (clamp at 0)
    splice  x' = x_hat = SAE(x)              (fidelity: the reconstruction replaces x)
    zero    x' = 0                           (fidelity: the hook zero-ablated)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .config import STEER_MODES
from .models import ModelHandle, TokenizedText, length_batches, pad_batch

MODES = STEER_MODES

Edit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""edit(resid [batch, pos, d], keep [batch, pos]) -> new resid."""


def edit_hook(edit: Edit, keep: torch.Tensor | None = None, skip_bos: bool = False, prompt_keep: torch.Tensor | None = None):
    """Hook function applying `edit` to the residual stream.

    keep: [batch, pos] 0/1 mask of positions to edit (None: all positions);
    skip_bos: leave position 0 of a full-sequence pass untouched (a causal LM's BOS),
    while incremental generation steps (one new position) are edited;
    prompt_keep: [batch, pos0] 0/1 mask of left-padded prompts (0 on the pads and each
    row's BOS) for generation: a full pass (more than one position) edits where the mask
    is 1 in its first pos0 positions and every position after them (what was generated);
    incremental generation steps (one new position) are edited."""

    def fn(x: torch.Tensor, hook=None) -> torch.Tensor:
        n = x.shape[1]
        if keep is not None:
            m = keep[:, :n]
        elif prompt_keep is not None and n > 1:
            m = torch.cat([prompt_keep[:, :n], torch.ones(x.shape[0], max(0, n - prompt_keep.shape[1]), dtype=prompt_keep.dtype)], 1)
        else:
            m = torch.ones(x.shape[:2], dtype=torch.long)
            if skip_bos and n > 1:
                m[:, 0] = 0
        return edit(x, m)

    return fn


def add_edit(delta: torch.Tensor) -> Edit:
    """Add `delta` [d_model] on every kept token."""
    return lambda x, keep: x + keep.to(x.device, x.dtype).unsqueeze(-1) * delta.to(x.device, x.dtype)


def direction_edit(direction: torch.Tensor, values: torch.Tensor) -> Edit:
    """x + values[row] * direction on every kept token: one value per row of the batch
    (steering along a vector that is no SAE feature, e.g. a DiffMean direction)."""
    u = direction.detach().float()

    def edit(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        m = keep.to(x.device, x.dtype) * values[:, None].to(x.device, x.dtype)
        return x + m.unsqueeze(-1) * u.to(x.device, x.dtype)

    return edit


def add_direction_hook(delta: torch.Tensor, keep: torch.Tensor | None = None, skip_bos: bool = False):
    """Hook function adding `delta` [d_model] to the residual stream (see edit_hook)."""
    return edit_hook(add_edit(delta), keep, skip_bos)


@torch.no_grad()
def encode_feature(sae, x: torch.Tensor, feature: int) -> torch.Tensor:
    """f_feature(x) for activations of any leading shape [..., d_in] -> [...]."""
    flat = x.reshape(-1, x.shape[-1]).to(sae.W_enc.dtype)
    return sae.encode(flat)[:, feature].reshape(x.shape[:-1]).to(x.dtype)


def feature_edit(sae, feature: int, mode: str, value) -> Edit:
    """The edit steering `feature` on kept tokens (module docstring):
    'add': x + value * d_i; 'clamp': x + (value - f_i(x)) * d_i (value 0 ablates).
    value: a number, or a [batch] tensor (one value per row of the batch)."""
    if mode not in MODES:
        raise ValueError(f"steering mode must be one of {', '.join(MODES)}, got {mode!r}")
    d = sae.W_dec[feature].detach()

    def edit(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        m = keep.to(x.device, x.dtype)
        v = value[:, None].to(x.device, x.dtype) if isinstance(value, torch.Tensor) else value
        if mode == "clamp":
            m = m * (v - encode_feature(sae, x.detach(), feature))
        else:
            m = m * v
        return x + m.unsqueeze(-1) * d.to(x.device, x.dtype)

    return edit


def splice_edit(sae) -> Edit:
    """The SAE's reconstruction in place of the activation on kept tokens."""

    def edit(x, keep):
        recon = sae.decode(sae.encode(x.float())).to(x.dtype)
        return torch.where(keep.bool().unsqueeze(-1), recon, x)

    return edit


def zero_edit(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The activation zeroed on kept tokens."""
    return x * (1 - keep.unsqueeze(-1).to(x.dtype))


def keep_mask(toks: list[TokenizedText], width: int) -> torch.Tensor:
    """[batch, width] 1 on each text's non-special tokens, 0 on specials and padding."""
    keep = torch.zeros(len(toks), width, dtype=torch.long)
    for r, t in enumerate(toks):
        keep[r, : len(t.ids)] = torch.tensor([0 if s else 1 for s in t.special])
    return keep


def masked_mean(v: torch.Tensor, keep: torch.Tensor) -> float:
    return float((v * keep).sum() / keep.sum().clamp(min=1))


@torch.no_grad()
def hook_activations(handle: ModelHandle, toks: list[TokenizedText], hook: str, batch_size: int = 32):
    """Residual at `hook` of the right-padded texts: (x [n, width, d_model] float32, keep [n, width])."""
    width = max(len(t.ids) for t in toks)
    x = torch.zeros(len(toks), width, handle.d_model)
    for idx in length_batches(toks, batch_size):
        ids, mask = pad_batch([toks[i].ids for i in idx], handle.pad_id)
        x[idx, : ids.shape[1]] = handle.run_hooks(ids, mask, [hook])[hook]
    return x, keep_mask(toks, width)


