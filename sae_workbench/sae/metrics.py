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
hook, on every non-special token; which one a model gets is its kind's
`kinds.ModelKind.fidelity`, and `fidelity` is the headline in both):
    encoder (no LM head, e.g. MiniLM): cosine similarity of the pooled sentence
      embedding to the clean one, with the reconstruction (cos_recon) and with the
      hook zero-ablated (cos_zero); fidelity = (cos_recon - cos_zero) / (1 - cos_zero).
    causal LM (Gemma, GPT-2), SAELens/SAEBench definitions: over the prediction
      positions P (a kept input token, i.e. not BOS/special, not padding, with a
      real next token), next-token cross-entropy
        ce_clean, ce_sae (reconstruction spliced in), ce_zero (hook zero-ablated)
        ce_loss_recovered = (ce_zero - ce_sae) / (ce_zero - ce_clean)   (= fidelity)
      and the KL divergence of the spliced (or ablated) model's next-token
      distribution from the clean one, KL(p_clean || p_sae), mean over P:
        kl_sae, kl_zero
      Logits are made LOGIT_CHUNK positions at a time (262k-token vocabularies).
"""

from __future__ import annotations

import torch

from ..activations import length_batches, pad_batch
from ..causal_lm import LOGIT_CHUNK, final_residual, log_probs
from ..encoder import pooled_embeddings
from ..interventions import edit_hook, keep_mask, splice_edit, zero_edit
from ..models import ModelHandle, TokenizedText


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


@torch.no_grad()
def embedding_fidelity(handle: ModelHandle, sae, hook: str, toks: list[TokenizedText]) -> dict[str, float]:
    """Encoders' analogue of CE loss recovered (see module docstring)."""
    clean = pooled_embeddings(handle, toks)
    recon = pooled_embeddings(handle, toks, hook, splice_edit(sae))
    zero = pooled_embeddings(handle, toks, hook, zero_edit)
    cos_recon = float((clean * recon).sum(-1).mean())
    cos_zero = float((clean * zero).sum(-1).mean())
    return {"cos_recon": cos_recon, "cos_zero": cos_zero, "fidelity": (cos_recon - cos_zero) / max(1e-9, 1 - cos_zero)}


@torch.no_grad()
def ce_loss_recovered(
    handle: ModelHandle, sae, hook: str, toks: list[TokenizedText], batch_size: int = 8, chunk: int = LOGIT_CHUNK
) -> dict[str, float]:
    """Causal LMs: CE loss clean / with the SAE spliced in / zero-ablated, CE loss
    recovered and KL to the clean model (module docstring). Memory: three
    [batch, pos, d_model] residuals and [chunk, vocab] log-probabilities."""
    model = handle.model
    sums = dict.fromkeys(("clean", "sae", "zero", "kl_sae", "kl_zero"), 0.0)
    n_pos = 0
    for idx in length_batches(toks, batch_size):
        batch = [toks[i] for i in idx]
        ids, mask = pad_batch([t.ids for t in batch], handle.pad_id)
        keep = keep_mask(batch, ids.shape[1])
        pred = (keep[:, :-1] * mask[:, 1:]).bool()
        target = ids[:, 1:][pred]
        resid = {}
        for name, edit in (("clean", None), ("sae", splice_edit(sae)), ("zero", zero_edit)):
            hooks = [] if edit is None else [(hook, edit_hook(edit, keep))]
            resid[name] = final_residual(handle, ids, mask, hooks)[:, :-1][pred.to(ids.device)]
        for a in range(0, len(target), chunk):
            lp = {k: log_probs(model, r[a : a + chunk]) for k, r in resid.items()}
            t = target[a : a + chunk, None].to(lp["clean"].device)
            for k in ("clean", "sae", "zero"):
                sums[k] -= float(lp[k].gather(-1, t).sum())
            p = lp["clean"].exp()
            sums["kl_sae"] += float((p * (lp["clean"] - lp["sae"])).sum())
            sums["kl_zero"] += float((p * (lp["clean"] - lp["zero"])).sum())
        n_pos += len(target)
    if n_pos == 0:
        raise ValueError("no prediction positions to measure CE loss on (texts of one token?)")
    m = {k: v / n_pos for k, v in sums.items()}
    rec = (m["zero"] - m["sae"]) / max(1e-9, m["zero"] - m["clean"])
    return {"ce_clean": m["clean"], "ce_sae": m["sae"], "ce_zero": m["zero"], "ce_loss_recovered": rec,
            "kl_sae": m["kl_sae"], "kl_zero": m["kl_zero"], "fidelity": rec, "n_positions": n_pos}
