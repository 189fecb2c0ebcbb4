"""SAE quality metrics, with the definitions we use written down.

On held-out corpus tokens, special tokens excluded, raw activation scale:
    l0                  mean number of non-zero latents per token
    explained_variance  1 - FVU, FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2,
                        mean(x) over all evaluated tokens (one vector, not per
                        batch; libraries differ on this, so we state ours)
    mse                 mean over tokens and dimensions of (x - x_hat)^2
    dense_frac          latents firing on > 10% of the evaluated tokens
    never_fired_frac    latents firing on none of the evaluated tokens
    dead_frac           (from training) latents silent over the last
                        dead_window_tokens training tokens

Downstream fidelity (reconstruction spliced into the forward pass at the
hook, on every non-special token):
    MiniLM (no LM head): cosine similarity of the pooled sentence embedding to
      the clean one, with the reconstruction (cos_recon) and with the hook
      zero-ablated (cos_zero); fidelity = (cos_recon - cos_zero) / (1 - cos_zero).
    GPT-2: CE loss recovered = (L_zero - L_recon) / (L_zero - L_clean),
      next-token cross-entropy over the texts.
"""

from __future__ import annotations

import torch

from ..activations import pad_batch
from ..models import ModelHandle, TokenizedText
from ..steering import keep_mask, pooled_embeddings


@torch.no_grad()
def reconstruction_metrics(sae, acts: torch.Tensor, batch: int = 8192) -> dict[str, float]:
    """L0, explained variance, MSE and dense fraction of any SAE with
    encode/decode (ours or SAELens's) on raw activations [n, d_in]."""
    n, d = acts.shape
    if n == 0:
        raise ValueError("no tokens to evaluate the SAE on")
    mean = acts.mean(0)
    sse = tot = l0 = 0.0
    fire_counts = torch.zeros(int(sae.W_dec.shape[0]))
    for b in range(0, n, batch):
        x = acts[b : b + batch]
        f = sae.encode(x)
        x_hat = sae.decode(f)
        sse += (x - x_hat).pow(2).sum().item()
        tot += (x - mean).pow(2).sum().item()
        active = f > 0
        l0 += active.sum().item()
        fire_counts += active.sum(0).float()
    return {
        "l0": l0 / n,
        "explained_variance": 1.0 - sse / tot,
        "mse": sse / (n * d),
        "dense_frac": float((fire_counts / n > 0.10).float().mean()),
        "never_fired_frac": float((fire_counts == 0).float().mean()),
        "n_tokens": n,
    }


def _splice(sae):
    def edit(x, keep):
        recon = sae.decode(sae.encode(x.float())).to(x.dtype)
        return torch.where(keep.bool().unsqueeze(-1), recon, x)

    return edit


def _zero(x, keep):
    return x * (1 - keep.unsqueeze(-1).to(x.dtype))


@torch.no_grad()
def embedding_fidelity(handle: ModelHandle, sae, hook: str, toks: list[TokenizedText]) -> dict[str, float]:
    """MiniLM's analogue of CE loss recovered (see module docstring)."""
    clean = pooled_embeddings(handle, toks)
    recon = pooled_embeddings(handle, toks, hook, _splice(sae))
    zero = pooled_embeddings(handle, toks, hook, _zero)
    cos_recon = float((clean * recon).sum(-1).mean())
    cos_zero = float((clean * zero).sum(-1).mean())
    return {"cos_recon": cos_recon, "cos_zero": cos_zero, "fidelity": (cos_recon - cos_zero) / max(1e-9, 1 - cos_zero)}


@torch.no_grad()
def ce_loss_recovered(handle: ModelHandle, sae, hook: str, toks: list[TokenizedText], batch_size: int = 8) -> dict[str, float]:
    """GPT-2: next-token CE with the reconstruction spliced in, against clean and zero-ablated."""
    model = handle.model
    totals = {"clean": 0.0, "recon": 0.0, "zero": 0.0}
    n_tok = 0
    for b in range(0, len(toks), batch_size):
        chunk = toks[b : b + batch_size]
        ids, mask = pad_batch([t.ids for t in chunk], handle.pad_id)
        keep = keep_mask(chunk, ids.shape[1])
        target_mask = mask[:, 1:].float()
        for name, edit in (("clean", None), ("recon", _splice(sae)), ("zero", _zero)):
            hooks = [] if edit is None else [(hook, lambda x, hook=None, e=edit: e(x, keep))]
            logits = model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks, return_type="logits")
            lp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
            totals[name] += float(-(lp * target_mask).sum())
        n_tok += int(target_mask.sum())
    ce = {k: v / max(1, n_tok) for k, v in totals.items()}
    rec = (ce["zero"] - ce["recon"]) / max(1e-9, ce["zero"] - ce["clean"])
    return {"ce_clean": ce["clean"], "ce_recon": ce["recon"], "ce_zero": ce["zero"], "fidelity": rec}
