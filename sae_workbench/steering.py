"""Does a feature cause what it detects? Steering, ablation and attribution.

Feature i of the SAE at a hook reads f_i(x) from the residual x of a token and
writes along its decoder direction d_i = W_dec[i]; m is its maximum observed
activation on the evaluation texts and coefficients c are multiples of m.
Every intervention edits x on kept tokens only (not special tokens, not padding):

    add     x' = x + c m d_i
    clamp   x' = x + (c m - f_i(x)) d_i    the SAE's reading of feature i is set to c m
                                           (re-encoding gives exactly c m for a tied ReLU SAE
                                           with orthonormal decoder where the feature was
                                           active); every other feature's contribution and
                                           the SAE error term x - x_hat are kept
    ablate  x' = x - f_i(x) d_i            (clamp at 0): removes exactly the feature's
                                           contribution to the SAE's reconstruction

Steering, MiniLM (no LM head): held-out texts of other categories are steered
and their pooled sentence embeddings compared with the category centroids
(the normalised mean embedding of each category's unsteered train texts):
    similarity[cat]      mean cos(steered embedding, centroid of cat)
    nearest_target_frac  fraction of steered texts whose nearest centroid is the target
    drift                mean 1 - cos(steered, unsteered embedding): the fluency analogue
    feature_activation   mean over kept tokens of f_i(x'), the SAE re-reading the edit
    best coefficient     the highest target similarity among coefficients with
                         drift <= max_drift (ties: the smaller |c|)

Steering, GPT-2: greedy continuations of prompts with the edit at every non-BOS position:
    feature_activation   mean f_i over the generated tokens in the steered pass
    concept_score        mean f_i over the generated tokens when the UNSTEERED model
                         reads prompt + continuation (does the text carry the concept?)
    boosted_mass         mean over generation steps of the steered next-token probability
                         of the top_tokens tokens that d_i @ W_U raises most (direct path,
                         final LayerNorm ignored)
    perplexity           exp(mean NLL of the generated tokens under the UNSTEERED model)
    best coefficient     the highest concept_score among coefficients whose perplexity is
                         <= max_ppl_ratio x the unsteered continuations' (ties: the smaller |c|)

Ablation (all kept tokens of every held-out text), per text score s:
    MiniLM  separation = cos(emb, own centroid) - max over other categories of cos(emb, centroid)
            (> 0 exactly when the nearest centroid is the text's own category)
    GPT-2   mean log-probability of the text's actual next tokens
    drop = mean over the category's held-out texts of s(clean) - s(ablated);
    off_target_drop: the same over the other categories' held-out texts.

Attribution (one text, metric M: MiniLM cos(pooled embedding, own-category
centroid); GPT-2 mean log-probability of the actual next tokens):
    attr[pos, i] = f_i(x)[pos] * (dM/dx[pos] . d_i)
the first-order estimate of M(clean) - M(feature i ablated at pos), gradients
through the model from the hook onward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .activations import length_batches, pad_batch
from .config import STEER_MODES
from .models import ModelHandle, TokenizedText

MODES = STEER_MODES

Edit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""edit(resid [batch, pos, d], keep [batch, pos]) -> new resid."""


def edit_hook(edit: Edit, keep: torch.Tensor | None = None, skip_bos: bool = False):
    """Hook function applying `edit` to the residual stream.

    keep: [batch, pos] 0/1 mask of positions to edit (None: all positions);
    skip_bos: leave position 0 of a full-sequence pass untouched (GPT-2's BOS),
    while incremental generation steps (one new position) are edited."""

    def fn(x: torch.Tensor, hook=None) -> torch.Tensor:
        if keep is not None:
            m = keep[:, : x.shape[1]]
        else:
            m = torch.ones(x.shape[:2], dtype=torch.long)
            if skip_bos and x.shape[1] > 1:
                m[:, 0] = 0
        return edit(x, m)

    return fn


def add_edit(delta: torch.Tensor) -> Edit:
    """Add `delta` [d_model] on every kept token."""
    return lambda x, keep: x + keep.to(x.device, x.dtype).unsqueeze(-1) * delta.to(x.device, x.dtype)


def add_direction_hook(delta: torch.Tensor, keep: torch.Tensor | None = None, skip_bos: bool = False):
    """Hook function adding `delta` [d_model] to the residual stream (see edit_hook)."""
    return edit_hook(add_edit(delta), keep, skip_bos)


@torch.no_grad()
def encode_feature(sae, x: torch.Tensor, feature: int) -> torch.Tensor:
    """f_feature(x) for activations of any leading shape [..., d_in] -> [...]."""
    flat = x.reshape(-1, x.shape[-1]).to(sae.W_enc.dtype)
    return sae.encode(flat)[:, feature].reshape(x.shape[:-1]).to(x.dtype)


def feature_edit(sae, feature: int, mode: str, value: float) -> Edit:
    """The edit steering `feature` on kept tokens (module docstring):
    'add': x + value * d_i; 'clamp': x + (value - f_i(x)) * d_i (value 0 ablates)."""
    if mode not in MODES:
        raise ValueError(f"steering mode must be one of {', '.join(MODES)}, got {mode!r}")
    d = sae.W_dec[feature].detach()

    def edit(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        m = keep.to(x.device, x.dtype)
        if mode == "clamp":
            m = m * (value - encode_feature(sae, x.detach(), feature))
        else:
            m = m * value
        return x + m.unsqueeze(-1) * d.to(x.device, x.dtype)

    return edit


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
        logits = handle.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks, return_type="logits")
        lp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
        m = mask[:, 1:].float()
        out[idx] = ((lp.cpu() * m).sum(1) / m.sum(1).clamp(min=1))
    return out


@torch.no_grad()
def hook_activations(handle: ModelHandle, toks: list[TokenizedText], hook: str, batch_size: int = 32):
    """Residual at `hook` of the right-padded texts: (x [n, width, d_model] float32, keep [n, width])."""
    width = max(len(t.ids) for t in toks)
    x = torch.zeros(len(toks), width, handle.d_model)
    for idx in length_batches(toks, batch_size):
        ids, mask = pad_batch([toks[i].ids for i in idx], handle.pad_id)
        x[idx, : ids.shape[1]] = handle.run_hooks(ids, mask, [hook])[hook]
    return x, keep_mask(toks, width)


def masked_mean(v: torch.Tensor, keep: torch.Tensor) -> float:
    return float((v * keep).sum() / keep.sum().clamp(min=1))


@torch.no_grad()
def category_centroids(handle: ModelHandle, toks: dict[str, list[TokenizedText]]) -> dict[str, torch.Tensor]:
    """{category: normalised mean of its texts' (unsteered) pooled embeddings}."""
    return {c: torch.nn.functional.normalize(pooled_embeddings(handle, t).mean(0), dim=0) for c, t in toks.items()}


def best_coefficient(coefficients: list[float], score: list[float], cost: list[float], max_cost: float) -> float | None:
    """The coefficient with the highest score among those with cost <= max_cost
    (ties: the smaller |coefficient|); None when none qualifies."""
    ok = [i for i, c in enumerate(cost) if c <= max_cost]
    if not ok:
        return None
    return coefficients[max(ok, key=lambda i: (score[i], -abs(coefficients[i])))]


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of y on x."""
    return float(np.polyfit(np.asarray(x, dtype=float), np.asarray(y, dtype=float), 1)[0])


# ---------------------------------------------------------------- steering, MiniLM


@dataclass
class SteerResult:
    mode: str
    coefficients: list[float]
    similarity: dict[str, list[float]]
    """category -> mean cosine similarity of the steered texts to that category's centroid, per coefficient."""
    nearest_target_frac: list[float]
    """Per coefficient: fraction of steered texts whose nearest centroid is the target category."""
    drift: list[float]
    """Per coefficient: mean 1 - cos(steered, unsteered) embedding (how far the meaning moved)."""
    feature_activation: list[float]
    """Per coefficient: mean over kept tokens of the feature's activation re-encoded after the edit."""
    unsteered: dict = field(default_factory=dict)
    """The same measures without any edit (in clamp mode coefficient 0 is the ablation, not this)."""
    best_coefficient: float | None = None
    best_rule: str = ""


@torch.no_grad()
def steer_sentence_embeddings(
    handle: ModelHandle,
    sae,
    feature: int,
    hook: str,
    max_act: float,
    coefficients: list[float],
    centroids: dict[str, torch.Tensor],
    steered_toks: list[TokenizedText],
    target: str,
    mode: str = "add",
    max_drift: float = 0.5,
) -> SteerResult:
    """MiniLM steering study (module docstring): similarity to each centroid,
    nearest-target fraction, drift and re-encoded activation per coefficient."""
    cats = list(centroids)
    C = torch.stack([centroids[c] for c in cats])
    base = pooled_embeddings(handle, steered_toks)
    x, keep = hook_activations(handle, steered_toks, hook)
    sim = {c: [] for c in cats}
    nearest, drift, acts = [], [], []

    def measure(emb):
        s = emb @ C.T  # [n, n_cats]
        return s.mean(0).tolist(), float((s.argmax(1) == cats.index(target)).float().mean())

    for coef in coefficients:
        edit = feature_edit(sae, feature, mode, coef * max_act)
        emb = base if (mode == "add" and coef == 0) else pooled_embeddings(handle, steered_toks, hook, edit)
        s, near = measure(emb)
        for c, v in zip(cats, s):
            sim[c].append(v)
        nearest.append(near)
        drift.append(float(1 - (emb * base).sum(-1).mean()))
        acts.append(masked_mean(encode_feature(sae, edit(x, keep), feature), keep))
    s, near = measure(base)
    unsteered = {"similarity": dict(zip(cats, s)), "nearest_target_frac": near,
                 "feature_activation": masked_mean(encode_feature(sae, x, feature), keep)}
    rule = f"highest target similarity among coefficients with drift <= {max_drift} (ties: smaller |coefficient|)"
    best = best_coefficient(list(coefficients), sim[target], drift, max_drift)
    return SteerResult(mode, list(coefficients), sim, nearest, drift, acts, unsteered, best, rule)


# ---------------------------------------------------------------- steering, GPT-2


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
    """GPT-2: one row per (coefficient, prompt): the greedy continuation with the
    edit at every non-BOS position and its measures (module docstring).

    prompts: token id tensors [1, pos] starting with BOS."""
    model = handle.model
    boosted = boosted_tokens(handle, sae, feature, top_tokens)
    rows = []
    for coef in coefficients:
        edit = feature_edit(sae, feature, mode, coef * max_act)
        for p_i, ids in enumerate(prompts):
            p = ids.shape[1]
            with model.hooks(fwd_hooks=[(hook, edit_hook(edit, skip_bos=True))]):
                full = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, stop_at_eos=False, verbose=False, use_past_kv_cache=False)
                logits, cache = model.run_with_cache(full, names_filter=[hook])
            clean_logits, clean_cache = model.run_with_cache(full, names_filter=[hook])
            gen = full[0, p:]
            probs = logits[0, p - 1 : -1].float().softmax(-1)
            lp = clean_logits[0, p - 1 : -1].float().log_softmax(-1).gather(-1, gen[:, None])[:, 0]
            nll = float(-lp.mean())
            rows.append(
                {
                    "coefficient": coef,
                    "prompt": p_i,
                    "continuation": handle.tokenizer.decode(gen) if handle.tokenizer is not None else None,
                    "continuation_ids": gen.tolist(),
                    "feature_activation": float(encode_feature(sae, cache[hook][0, p:], feature).mean()),
                    "concept_score": float(encode_feature(sae, clean_cache[hook][0, p:], feature).mean()),
                    "boosted_mass": float(probs[:, boosted].sum(-1).mean()),
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
    """GPT-2 steering study: steer_generation's rows averaged per coefficient,
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


# ---------------------------------------------------------------- ablation


def separation(emb: torch.Tensor, centroids: dict[str, torch.Tensor], labels: list[str]) -> torch.Tensor:
    """[n] cos(emb, own centroid) - max over the other categories of cos(emb, centroid)."""
    cats = list(centroids)
    s = emb @ torch.stack([centroids[c] for c in cats]).T
    own = torch.tensor([cats.index(lab) for lab in labels])
    mine = s.gather(1, own[:, None])[:, 0]
    other = s.scatter(1, own[:, None], float("-inf")).max(1).values
    return mine - other


def text_scores(handle: ModelHandle, toks, labels, centroids=None, hook=None, edit=None) -> torch.Tensor:
    """Per text score for ablation: separation (MiniLM, centroids given) or mean next-token log-prob (GPT-2)."""
    if centroids is None:
        return next_token_logprobs(handle, toks, hook, edit)
    return separation(pooled_embeddings(handle, toks, hook, edit), centroids, labels)


def matched_control(freq: np.ndarray, feature: int, exclude: set[int], rng: np.random.Generator, n_candidates: int = 5) -> int:
    """A random feature firing about as often as `feature`: drawn with `rng` among the
    n_candidates alive (freq > 0) features outside `exclude` whose firing frequency is
    closest to freq[feature] (|difference|; ties by feature index)."""
    cand = np.flatnonzero(freq > 0)
    cand = cand[~np.isin(cand, sorted(exclude))]
    if not len(cand):
        raise ValueError("no alive non-specialist feature is left to serve as an ablation control")
    near = cand[np.lexsort((cand, np.abs(freq[cand] - freq[feature])))][:n_candidates]
    return int(rng.choice(near))


def ablation_roles(specialists: dict[str, int], freq: np.ndarray, rng: np.random.Generator, n_candidates: int = 5) -> dict[str, dict[str, int]]:
    """{category: {"specialist": f, "control": g}}: each specialist with its own
    frequency-matched control (matched_control), no feature used twice."""
    exclude, roles = set(specialists.values()), {}
    for c, f in specialists.items():
        roles[c] = {"specialist": f, "control": matched_control(freq, f, exclude, rng, n_candidates)}
        exclude.add(roles[c]["control"])
    return roles


@torch.no_grad()
def ablation_study(
    handle: ModelHandle, sae, hook: str, features: dict[str, dict[str, int]], toks: list[TokenizedText], labels: list[str],
    centroids: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict[str, dict]]:
    """Zero-ablate each feature on all texts (module docstring).

    features: {category: {role: feature}} (e.g. specialist and control).
    Returns {category: {role: {feature, drop, off_target_drop[, accuracy_clean, accuracy_ablated]}}};
    accuracy (MiniLM): fraction of the category's texts whose nearest centroid is their own (separation > 0)."""
    clean = text_scores(handle, toks, labels, centroids)
    out: dict[str, dict[str, dict]] = {}
    for cat, roles in features.items():
        own = torch.tensor([lab == cat for lab in labels])
        if not own.any():
            raise ValueError(f"no held-out texts of category {cat!r} to ablate on")
        out[cat] = {}
        for role, f in roles.items():
            s = text_scores(handle, toks, labels, centroids, hook, feature_edit(sae, f, "clamp", 0.0))
            d = clean - s
            r = {"feature": int(f), "drop": float(d[own].mean()), "off_target_drop": float(d[~own].mean()) if (~own).any() else 0.0}
            if centroids is not None:
                r.update(accuracy_clean=float((clean[own] > 0).float().mean()), accuracy_ablated=float((s[own] > 0).float().mean()))
            out[cat][role] = r
    return out


# ---------------------------------------------------------------- attribution

Metric = Callable[[ModelHandle, torch.Tensor, torch.Tensor, list], torch.Tensor]
"""metric(handle, ids [1, pos], mask, fwd_hooks) -> scalar tensor (differentiable)."""


def embedding_metric(centroid: torch.Tensor) -> Metric:
    """MiniLM: cos(pooled sentence embedding, centroid)."""

    def metric(handle, ids, mask, hooks):
        cap = {}

        def grab(x, hook=None):
            cap["h"] = x
            return x

        handle.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[*hooks, (handle.final_hook, grab)])
        return (mean_pool(cap["h"].float(), mask)[0] * centroid).sum()

    return metric


def logprob_metric(handle, ids, mask, hooks) -> torch.Tensor:
    """GPT-2: mean log-probability of the text's actual next tokens."""
    logits = handle.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks, return_type="logits")
    return torch.log_softmax(logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None]).mean()


def feature_attribution(
    handle: ModelHandle, sae, hook: str, tok: TokenizedText, metric: Metric, top: int = 20,
    n_token_features: int = 3, extra_features: tuple[int, ...] = (),
) -> dict:
    """Act x grad attribution of `metric` to the SAE features at `hook` (module docstring).

    The hook's activation is replaced by a leaf tensor requiring grad, so the
    gradient flows through the model from the hook onward. Returns
      metric         M on the clean text
      features       the `top` features by |sum over positions of attr|, descending:
                     [{feature, attribution, rank}] (rank 1-based)
      error_term     sum over kept positions of dM/dx . (x - x_hat) (the SAE error's share)
      per_token      for the top n_token_features features and `extra_features`:
                     [{feature, rank, values: attr[pos] per token (0 at special tokens)}]
      tokens, offsets, special   the text's tokens, for highlights."""
    ids = torch.tensor([tok.ids])
    mask = torch.ones_like(ids)
    x = handle.run_hooks(ids, mask, [hook])[hook][0]
    leaf = x.clone().requires_grad_(True)
    with torch.enable_grad():
        value = metric(handle, ids, mask, [(hook, lambda a, hook=None: leaf.to(a.dtype).unsqueeze(0))])
        (grad,) = torch.autograd.grad(value, leaf)
    keep = torch.tensor([0.0 if s else 1.0 for s in tok.special])[:, None]
    with torch.no_grad():
        f = sae.encode(x.to(sae.W_enc.dtype)).float()
        attr = f * keep * (grad @ sae.W_dec.detach().float().T)  # [pos, d_sae]
        error = float(((x - sae.decode(f).float()) * grad * keep).sum())
    total = attr.sum(0)
    order = torch.sort(total.abs(), descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(1, len(order) + 1)
    shown = list(dict.fromkeys([*order[:n_token_features].tolist(), *extra_features]))
    return {
        "metric": float(value.detach()),
        "features": [{"feature": int(i), "attribution": float(total[i]), "rank": int(rank[i])} for i in order[:top]],
        "error_term": error,
        "per_token": [{"feature": int(i), "rank": int(rank[i]), "values": attr[:, i].tolist()} for i in shown],
        "tokens": tok.tokens,
        "offsets": [list(o) for o in tok.offsets],
        "special": tok.special,
    }
