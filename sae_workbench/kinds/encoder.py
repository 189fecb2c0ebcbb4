"""What a sentence encoder (kind 'encoder', e.g. all-MiniLM-L6-v2) measures:
it has no LM head, so its output is the pooled sentence embedding.

Fidelity of an SAE spliced in at a hook (`embedding_fidelity`): the cosine of
the pooled sentence embedding to the clean one, with the reconstruction
(cos_recon) and with the hook zero-ablated (cos_zero);
fidelity = (cos_recon - cos_zero) / (1 - cos_zero).
Steering an encoder: `steer.embedding`.
"""

from __future__ import annotations

import torch

from ..edits import Edit, edit_hook, keep_mask, splice_edit, zero_edit
from ..models import ModelHandle, TokenizedText, length_batches, pad_batch
from .base import ModelKind


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sentence-transformers pooling: mean over attended tokens, then L2-normalised."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(pooled, dim=-1)


@torch.no_grad()
def pooled_embeddings(
    handle: ModelHandle, toks: list[TokenizedText], hook: str | None = None, edit: Edit | None = None, batch_size: int = 32
) -> torch.Tensor:
    """[n_texts, d_model] pooled final-layer embeddings, optionally with `edit`
    applied to the residual stream at `hook` (on kept tokens)."""
    out = torch.zeros(len(toks), handle.d_model)
    for idx in length_batches(toks, batch_size):
        chunk = [toks[i] for i in idx]
        ids, mask = pad_batch([t.ids for t in chunk], handle.pad_id)
        cap: dict[str, torch.Tensor] = {}

        def grab(x, hook=None, cap=cap):
            cap["h"] = x.detach()
            return x

        hooks = [(handle.final_hook, grab)]
        if edit is not None:
            hooks.insert(0, (hook, edit_hook(edit, keep_mask(chunk, ids.shape[1]))))
        handle.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks)
        out[idx] = mean_pool(cap["h"].float().cpu(), mask)
    return out


@torch.no_grad()
def embedding_fidelity(handle: ModelHandle, sae, hook: str, toks: list[TokenizedText]) -> dict[str, float]:
    """Encoders' analogue of CE loss recovered (see module docstring)."""
    clean = pooled_embeddings(handle, toks)
    recon = pooled_embeddings(handle, toks, hook, splice_edit(sae))
    zero = pooled_embeddings(handle, toks, hook, zero_edit)
    cos_recon = float((clean * recon).sum(-1).mean())
    cos_zero = float((clean * zero).sum(-1).mean())
    return {"cos_recon": cos_recon, "cos_zero": cos_zero, "fidelity": (cos_recon - cos_zero) / max(1e-9, 1 - cos_zero)}


class Encoder(ModelKind):
    name = "encoder"
    has_lm_head = False
    logit_lens = False
    fidelity_metric = "embedding_cosine"
    fidelity_keys = ("cos_recon", "cos_zero", "fidelity")
    fidelity_definition = ("cosine of the pooled sentence embedding with the reconstruction spliced in at the hook, rescaled "
                           "so that the clean pass scores 1 and the zero-ablated hook 0")
    steering = "embedding_drift"

    def fidelity(self, handle, sae, hook, toks):
        return embedding_fidelity(handle, sae, hook, toks)
