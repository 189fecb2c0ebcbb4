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
    classifier_prob      P(category | continuation) under a character n-gram classifier
                         fitted on labelled texts (`text_classifier`): an independent
                         judge, blind to the model and the SAE
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
    logits = apply_softcap(torch.nn.functional.linear(x, unembed_rows(model), model.unembed.b_U), model.cfg.output_logits_soft_cap)
    return torch.log_softmax(logits.float(), -1)


def unembed_rows(model) -> torch.Tensor:
    """W_U as [vocab, d_model] rows, contiguous: what TransformerLens's Unembed multiplies
    by (it copies W_U.T.contiguous() on every call, 671 MB for Gemma 3). Made once per model:
    the tied embedding W_E when it equals W_U.T (no copy), else a cached copy."""
    rows = model.__dict__.get("_workbench_unembed_rows")
    if rows is None or rows.device != model.W_U.device:
        w_u = model.W_U.detach()
        w_e = getattr(model, "W_E", None)
        tied = w_e is not None and w_e.shape == w_u.T.shape and w_e.is_contiguous() and torch.equal(w_e.detach(), w_u.T)
        rows = w_e.detach() if tied else w_u.T.contiguous()
        model.__dict__["_workbench_unembed_rows"] = rows
    return rows


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
def greedy_continuation(handle: ModelHandle, ids: torch.Tensor, max_new_tokens: int, fwd_hooks=()) -> torch.Tensor:
    """ids [1, pos] followed by max_new_tokens greedy tokens, `fwd_hooks` applied at every step.

    Only the last position is unembedded at each step (a 262k vocabulary makes
    full-sequence logits the dominant cost); no KV cache, so an edit hook sees
    the whole sequence each step, exactly as in a plain forward pass."""
    for _ in range(max_new_tokens):
        last = final_residual(handle, ids, None, fwd_hooks)[:, -1]
        nxt = log_probs(handle.model, last).argmax(-1, keepdim=True).to(ids.device)
        ids = torch.cat([ids, nxt], 1)
    return ids


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
    judge=None,
) -> list[dict]:
    """One row per (coefficient, prompt): the greedy continuation with the
    edit at every non-BOS position and its measures (module docstring).
    All coefficients of one prompt run as one batch (a row per coefficient).

    prompts: token id tensors [1, pos] starting with BOS;
    judge: continuations (list of str) -> P(category) per text, or None."""
    model = handle.model
    boosted = boosted_tokens(handle, sae, feature, top_tokens)
    coefs = list(coefficients)
    rows = {}

    def grab(cap):
        def fn(x, hook=None):
            cap["x"] = x.detach()
            return x

        return fn

    for p_i, ids in enumerate(prompts):
        p, b = ids.shape[1], len(coefs)
        edit = feature_edit(sae, feature, mode, torch.tensor(coefs, dtype=torch.float32) * max_act)
        steer_hook = (hook, edit_hook(edit, skip_bos=True))
        full = greedy_continuation(handle, ids.repeat(b, 1), max_new_tokens, [steer_hook])
        steered, clean = {}, {}
        resid = final_residual(handle, full, None, [steer_hook, (hook, grab(steered))])
        clean_resid = final_residual(handle, full, None, [(hook, grab(clean))])
        n, d = full.shape[1] - p, resid.shape[-1]
        r_steer = resid[:, p - 1 : -1].reshape(-1, d)
        mass = torch.cat([log_probs(model, r_steer[a : a + LOGIT_CHUNK])[:, boosted].exp().sum(-1)
                          for a in range(0, r_steer.shape[0], LOGIT_CHUNK)]).reshape(b, n)
        gen = full[:, p:]
        nlls = -target_logprobs(model, clean_resid[:, p - 1 : -1].reshape(-1, d), gen.reshape(-1)).reshape(b, n).mean(1)
        texts = [handle.tokenizer.decode(g) if handle.tokenizer is not None else None for g in gen]
        probs = judge(texts) if judge is not None and None not in texts else [float("nan")] * b
        f_steer = encode_feature(sae, steered["x"][:, p:], feature).mean(1)
        f_clean = encode_feature(sae, clean["x"][:, p:], feature).mean(1)
        for r, coef in enumerate(coefs):
            rows[(r, p_i)] = {
                "coefficient": coef,
                "prompt": p_i,
                "continuation": texts[r],
                "continuation_ids": gen[r].tolist(),
                "feature_activation": float(f_steer[r]),
                "concept_score": float(f_clean[r]),
                "boosted_mass": float(mass[r].mean()),
                "classifier_prob": float(probs[r]),
                "nll": float(nlls[r]),
                "perplexity": math.exp(float(nlls[r])),
            }
    return [rows[k] for k in sorted(rows)]


@dataclass
class GenerationResult:
    mode: str
    coefficients: list[float]
    feature_activation: list[float]
    """Per coefficient, mean over prompts (module docstring); likewise the next three."""
    concept_score: list[float]
    classifier_prob: list[float]
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
    judge=None,
) -> GenerationResult:
    """Causal-LM steering study: steer_generation's rows averaged per coefficient,
    the unsteered reference and the best coefficient (module docstring)."""
    run = lambda coefs, m: steer_generation(handle, sae, feature, hook, max_act, coefs, prompts, max_new_tokens, m, top_tokens, judge)
    rows = run(list(coefficients), mode)
    base = [r for r in rows if r["coefficient"] == 0] if mode == "add" and 0 in coefficients else run([0.0], "add")

    def summary(rs):
        mean = lambda k: float(np.mean([r[k] for r in rs]))
        return {"feature_activation": mean("feature_activation"), "concept_score": mean("concept_score"),
                "classifier_prob": mean("classifier_prob"), "boosted_mass": mean("boosted_mass"), "perplexity": math.exp(mean("nll"))}

    per = [summary([r for r in rows if r["coefficient"] == c]) for c in coefficients]
    col = lambda k: [s[k] for s in per]
    unsteered = summary(base)
    rule = (f"highest concept_score among coefficients whose perplexity <= {max_ppl_ratio} x the unsteered "
            "continuations' perplexity (ties: smaller |coefficient|)")
    best = best_coefficient(list(coefficients), col("concept_score"), col("perplexity"), max_ppl_ratio * unsteered["perplexity"])
    return GenerationResult(mode, list(coefficients), col("feature_activation"), col("concept_score"), col("classifier_prob"), col("boosted_mass"),
                            col("perplexity"), unsteered, boosted_tokens(handle, sae, feature, top_tokens), best, rule, rows)
