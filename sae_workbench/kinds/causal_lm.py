"""What a causal language model (kind 'causal_lm': Gemma 3 270M, GPT-2) measures:
next-token distributions, so losses (and, in `steer.generation`, generated text).

Log-probabilities are made in one place, `log_probs` (final norm, unembedding,
logit soft-cap, log-softmax), applied to the residual after the last block in
chunks of LOGIT_CHUNK positions: a 262k-token vocabulary never materialises a
[batch, pos, vocab] tensor. Everything (next-token log-probs, CE loss and KL
below, the generation measures and the attribution metric in `steer.generation`)
goes through it.

Fidelity of an SAE spliced in at a hook (`ce_loss_recovered`, SAELens/SAEBench
definitions): over the prediction positions P (a kept input token, i.e. not
BOS/special, not padding, with a real next token), next-token cross-entropy
    ce_clean, ce_sae (reconstruction spliced in), ce_zero (hook zero-ablated)
    ce_loss_recovered = (ce_zero - ce_sae) / (ce_zero - ce_clean)   (= fidelity)
and the KL divergence of the spliced (or ablated) model's next-token
distribution from the clean one, KL(p_clean || p_sae), mean over P: kl_sae, kl_zero.
"""

from __future__ import annotations

import torch

from ..edits import Edit, edit_hook, keep_mask, splice_edit, zero_edit
from ..models import ModelHandle, TokenizedText, length_batches, linear, onednn_route, pad_batch
from .base import ModelKind


LOGIT_CHUNK = 64
"""Positions whose logits exist at once: 64 x 262,144 x 4 bytes = 67 MB for Gemma 3."""


def final_residual(handle: ModelHandle, ids: torch.Tensor, mask: torch.Tensor | None = None, fwd_hooks=()) -> torch.Tensor:
    """[batch, pos, d_model] residual stream after the last block (before the final
    norm), with `fwd_hooks` applied: the forward pass without its LM head."""
    if mask is None:
        mask = torch.ones_like(ids)
    return handle.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=list(fwd_hooks), stop_at_layer=handle.n_layers)


def log_probs(model, resid: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities [..., vocab] (float32) from final residuals [..., d_model]:
    the model's final norm, unembedding and logit soft-cap, as its own forward pass applies them.
    The one log-prob helper: call it on at most LOGIT_CHUNK positions at a time.

    Under the pinned numerics the unembedding is `models.linear` (oneDNN, on W_U packed
    once: `models.pack_weights`), as the model's other products are: against MKL's
    COMPATIBLE branch it takes 2 rows of Gemma 3's 262k vocabulary from 48 to 35 ms
    and 64 rows from 532 to 185 ms (bench/results/generation_step.json), and gives a row
    the same bytes in any batch. Otherwise it multiplies by W_U [d_model, vocab] as stored
    (x @ W_U + b_U), not by TransformerLens's [vocab, d_model] copy (F.linear), which costs
    671 MB. Either way the values differ from TransformerLens's own logits in the last bits
    (the same argmax; tests/steer/test_steer_generation.py bounds them)."""
    from transformer_lens.utilities.activation_functions import apply_softcap

    x = model.ln_final(resid) if getattr(model.cfg, "normalization_type", None) is not None else resid
    w_u = model.W_U
    flat = x.reshape(-1, x.shape[-1]).to(w_u.dtype)
    b_u = model.unembed.b_U.to(w_u.dtype)
    logits = linear(flat, w_u.T, b_u) if onednn_route() else torch.addmm(b_u, flat, w_u)
    logits = logits.reshape(*x.shape[:-1], w_u.shape[-1])
    return torch.log_softmax(apply_softcap(logits, model.cfg.output_logits_soft_cap).float(), -1)


def token_logits(model, resid: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """Logits [..., len(tokens)] (float32) of a few vocabulary tokens from final residuals
    [..., d_model]: the final norm, those tokens' W_U columns and the soft-cap, as log_probs
    applies them, without the other 262k columns. Two tokens' log-probability difference is
    their logits' difference (the normaliser cancels), so a yes/no judge needs only this."""
    from transformer_lens.utilities.activation_functions import apply_softcap

    x = model.ln_final(resid) if getattr(model.cfg, "normalization_type", None) is not None else resid
    w_u = model.W_U[:, tokens]
    flat = x.reshape(-1, x.shape[-1]).to(w_u.dtype)
    logits = torch.addmm(model.unembed.b_U[tokens].to(w_u.dtype), flat, w_u).reshape(*x.shape[:-1], len(tokens))
    return apply_softcap(logits, model.cfg.output_logits_soft_cap).float()


def target_logprobs(model, resid: torch.Tensor, targets: torch.Tensor, chunk: int = LOGIT_CHUNK) -> torch.Tensor:
    """[n] log p(targets[j] | resid[j]) for resid [n, d_model], in chunks (differentiable)."""
    parts = [log_probs(model, resid[a : a + chunk]).gather(-1, targets[a : a + chunk, None].to(resid.device))[:, 0]
             for a in range(0, resid.shape[0], chunk)]
    return torch.cat(parts) if parts else resid.new_zeros(0)


def token_logprobs(handle: ModelHandle, ids: torch.Tensor, mask: torch.Tensor, fwd_hooks=(), chunk: int = LOGIT_CHUNK) -> torch.Tensor:
    """[batch, pos - 1] log-probability of each actual next token ids[:, t + 1] given
    ids[:, : t + 1], with `fwd_hooks` applied; 0 where the next token is padding.
    Differentiable (the attribution metric's gradient flows through it)."""
    resid = final_residual(handle, ids, mask, fwd_hooks)[:, :-1]
    sel = mask[:, 1:].bool().to(resid.device)
    out = torch.zeros(sel.shape, dtype=torch.float32, device=resid.device)
    out[sel] = target_logprobs(handle.model, resid[sel], ids[:, 1:].to(resid.device)[sel], chunk)
    return out


@torch.no_grad()
def next_token_logprobs(
    handle: ModelHandle, toks: list[TokenizedText], hook: str | None = None, edit: Edit | None = None, batch_size: int = 8
) -> torch.Tensor:
    """[n_texts] mean log-probability of each text's actual next tokens (every
    token after the first, predicted from its prefix), optionally with `edit` at `hook`."""
    out = torch.zeros(len(toks))
    for idx in length_batches(toks, batch_size):
        chunk = [toks[i] for i in idx]
        ids, mask = pad_batch([t.ids for t in chunk], handle.pad_id)
        hooks = [] if edit is None else [(hook, edit_hook(edit, keep_mask(chunk, ids.shape[1])))]
        lp = token_logprobs(handle, ids, mask, hooks)
        m = mask[:, 1:].float()
        out[idx] = ((lp.cpu() * m).sum(1) / m.sum(1).clamp(min=1))
    return out


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


class CausalLM(ModelKind):
    name = "causal_lm"
    has_lm_head = True
    logit_lens = True
    fidelity_metric = "ce_loss_recovered"
    fidelity_keys = ("ce_clean", "ce_sae", "ce_zero", "ce_loss_recovered", "kl_sae", "kl_zero", "fidelity", "n_positions")
    fidelity_definition = ("CE loss recovered (CE_zero − CE_sae) / (CE_zero − CE_clean): 1 as good as clean, 0 as bad as "
                           "zero-ablating the hook; KL(p_clean ‖ p_sae) of the next-token distributions, mean over positions")
    steering = "generation"

    def fidelity(self, handle, sae, hook, toks):
        return ce_loss_recovered(handle, sae, hook, toks)
