"""What a causal language model (kind 'causal_lm': Gemma 3 270M, GPT-2) measures:
next-token distributions, so losses and generated text.

Log-probabilities are made in one place, `log_probs` (final norm, unembedding,
logit soft-cap, log-softmax), applied to the residual after the last block in
chunks of LOGIT_CHUNK positions: a 262k-token vocabulary never materialises a
[batch, pos, vocab] tensor. Everything below (next-token log-probs, the
generation measures, the attribution metric, CE loss and KL in `sae.metrics`)
goes through it.

Steering (edits as in `interventions`; m the feature's maximum observed
activation, coefficients c multiples of m): greedy continuations of prompts with
the edit at every non-BOS position:
    feature_activation   mean f_i over the generated tokens in the steered pass
    concept_score        mean f_i over the generated tokens when the UNSTEERED model
                         reads prompt + continuation (does the text carry the concept?)
    boosted_mass         mean over generation steps of the steered next-token probability
                         of the top_tokens tokens that d_i @ W_U raises most (direct path,
                         final norm ignored)
    perplexity           exp(mean NLL of the generated tokens under the UNSTEERED model)
    best coefficient     the highest concept_score among coefficients whose perplexity is
                         <= max_ppl_ratio x the unsteered continuations' (ties: the smaller |c|)

Ablation score per text and attribution metric: the mean log-probability of
the text's actual next tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .activations import length_batches, pad_batch
from .interventions import Edit, best_coefficient, edit_hook, encode_feature, feature_edit, keep_mask
from .models import ModelHandle, TokenizedText

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
    The one log-prob helper: call it on at most LOGIT_CHUNK positions at a time."""
    from transformer_lens.utilities.activation_functions import apply_softcap

    x = model.ln_final(resid) if getattr(model.cfg, "normalization_type", None) is not None else resid
    logits = apply_softcap(model.unembed(x), model.cfg.output_logits_soft_cap)
    return torch.log_softmax(logits.float(), -1)


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


def logprob_metric(handle, ids, mask, hooks) -> torch.Tensor:
    """Attribution metric: mean log-probability of the text's actual next tokens (differentiable)."""
    return token_logprobs(handle, ids, mask, hooks)[0].mean()


# ---------------------------------------------------------------- steering


def boosted_tokens(handle: ModelHandle, sae, feature: int, k: int) -> list[int]:
    """The k vocabulary tokens whose logits d_i @ W_U raises most (direct path, final LayerNorm ignored)."""
    logits = sae.W_dec[feature].detach().float() @ handle.model.W_U.detach().float()
    return logits.topk(k).indices.tolist()


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
    mode: str = "add",
    top_tokens: int = 10,
) -> list[dict]:
    """One row per (coefficient, prompt): the greedy continuation with the
    edit at every non-BOS position and its measures (module docstring).

    prompts: token id tensors [1, pos] starting with BOS."""
    model = handle.model
    boosted = boosted_tokens(handle, sae, feature, top_tokens)
    rows = []

    def grab(cap):
        def fn(x, hook=None):
            cap["x"] = x.detach()
            return x

        return fn

    for coef in coefficients:
        edit = feature_edit(sae, feature, mode, coef * max_act)
        for p_i, ids in enumerate(prompts):
            p = ids.shape[1]
            steered, clean = {}, {}
            with model.hooks(fwd_hooks=[(hook, edit_hook(edit, skip_bos=True))]):
                full = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, stop_at_eos=False, verbose=False, use_past_kv_cache=False)
                resid = final_residual(handle, full, None, [(hook, grab(steered))])
            clean_resid = final_residual(handle, full, None, [(hook, grab(clean))])
            gen = full[0, p:]
            mass = torch.cat([log_probs(model, resid[0, a : min(a + LOGIT_CHUNK, full.shape[1] - 1)])[:, boosted].exp().sum(-1)
                              for a in range(p - 1, full.shape[1] - 1, LOGIT_CHUNK)])
            lp = target_logprobs(model, clean_resid[0, p - 1 : -1], gen)
            nll = float(-lp.mean())
            rows.append(
                {
                    "coefficient": coef,
                    "prompt": p_i,
                    "continuation": handle.tokenizer.decode(gen) if handle.tokenizer is not None else None,
                    "continuation_ids": gen.tolist(),
                    "feature_activation": float(encode_feature(sae, steered["x"][0, p:], feature).mean()),
                    "concept_score": float(encode_feature(sae, clean["x"][0, p:], feature).mean()),
                    "boosted_mass": float(mass.mean()),
                    "nll": nll,
                    "perplexity": math.exp(nll),
                }
            )
    return rows


@dataclass
class GenerationResult:
    mode: str
    coefficients: list[float]
    feature_activation: list[float]
    """Per coefficient, mean over prompts (module docstring); likewise the next three."""
    concept_score: list[float]
    boosted_mass: list[float]
    perplexity: list[float]
    """Per coefficient: exp(mean over prompts and generated tokens of the unsteered model's NLL)."""
    unsteered: dict
    """The four measures of the unsteered continuations."""
    boosted_tokens: list[int]
    best_coefficient: float | None
    best_rule: str
    rows: list[dict]


@torch.no_grad()
def generation_study(
    handle: ModelHandle,
    sae,
    feature: int,
    hook: str,
    max_act: float,
    coefficients: list[float],
    prompts: list[torch.Tensor],
    max_new_tokens: int,
    mode: str = "add",
    max_ppl_ratio: float = 2.0,
    top_tokens: int = 10,
) -> GenerationResult:
    """Causal-LM steering study: steer_generation's rows averaged per coefficient,
    the unsteered reference and the best coefficient (module docstring)."""
    run = lambda coefs, m: steer_generation(handle, sae, feature, hook, max_act, coefs, prompts, max_new_tokens, m, top_tokens)
    rows = run(list(coefficients), mode)
    base = [r for r in rows if r["coefficient"] == 0] if mode == "add" and 0 in coefficients else run([0.0], "add")

    def summary(rs):
        mean = lambda k: float(np.mean([r[k] for r in rs]))
        return {"feature_activation": mean("feature_activation"), "concept_score": mean("concept_score"),
                "boosted_mass": mean("boosted_mass"), "perplexity": math.exp(mean("nll"))}

    per = [summary([r for r in rows if r["coefficient"] == c]) for c in coefficients]
    col = lambda k: [s[k] for s in per]
    unsteered = summary(base)
    rule = (f"highest concept_score among coefficients whose perplexity <= {max_ppl_ratio} x the unsteered "
            "continuations' perplexity (ties: smaller |coefficient|)")
    best = best_coefficient(list(coefficients), col("concept_score"), col("perplexity"), max_ppl_ratio * unsteered["perplexity"])
    return GenerationResult(mode, list(coefficients), col("feature_activation"), col("concept_score"), col("boosted_mass"),
                            col("perplexity"), unsteered, boosted_tokens(handle, sae, feature, top_tokens), best, rule, rows)
