"""Steering a causal language model (kind 'causal_lm'): greedy continuations
of prompts with a feature edited in (`edits`) at every non-BOS position; m is
the feature's maximum observed activation, coefficients c multiples of m.
Measured per coefficient:
    feature_activation   mean f_i over the generated tokens in the steered pass
    concept_score        mean f_i over the generated tokens when the UNSTEERED model
                         reads prompt + continuation (does the text carry the concept?)
    classifier_prob      P(category | continuation) under a character n-gram classifier
                         fitted on labelled texts (`steer.judge`): an independent
                         judge, blind to the model and the SAE
    boosted_mass         mean over generation steps of the steered next-token probability
                         of the top_tokens tokens that d_i @ W_U raises most (direct path,
                         final norm ignored)
    perplexity           exp(mean NLL of the generated tokens under the UNSTEERED model)
    fluency, combined    per continuation, as AxBench scores steering (`steer.judge`): fluency
                         from its NLL and share of distinct tokens against the unsteered
                         continuations'; combined = harmonic mean of the judge's concept score
                         (classifier_prob) and fluency, 0 when either is 0
    combined_ci          mean combined score over prompts with its bootstrap interval
    versus_unsteered     per coefficient, the paired bootstrap over prompts of its combined
                         score minus the unsteered one's, at alpha / (number of coefficients
                         tested) (Bonferroni: the best of several is picked)
    best coefficient     the highest mean combined score among the steered coefficients (ties:
                         the smaller |c|); steering *works* only when its interval against
                         unsteered lies above 0

Ablation score per text and attribution metric: the mean log-probability of
the text's actual next tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..decode import Decoder, supports
from ..edits import direction_edit, edit_hook, encode_feature, feature_edit
from ..kinds.causal_lm import final_residual, log_probs, next_token_logprobs, target_logprobs, token_logprobs
from ..models import ModelHandle, hook_position
from ..analysis.stats import bootstrap_mean, paired_difference
from .judge import combined, distinct_frac, fit_classifier, fluency
from .sweep import Steering, SteeringContext, per_coef, pick, slope, tokenizer


def logprob_metric(handle, ids, mask, hooks) -> torch.Tensor:
    """Attribution metric: mean log-probability of the text's actual next tokens (differentiable)."""
    return token_logprobs(handle, ids, mask, hooks)[0].mean()


def boosted_tokens(handle: ModelHandle, sae, feature: int, k: int, direction: torch.Tensor | None = None) -> list[int]:
    """The k vocabulary tokens whose logits d_i @ W_U raises most (direct path, final LayerNorm
    ignored); direction: that of a steering vector instead of the feature's decoder row."""
    d = sae.W_dec[feature] if direction is None else direction
    logits = d.detach().float() @ handle.model.W_U.detach().float()
    return logits.topk(k).indices.tolist()


def left_pad(seqs: list[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id tensors [1, len_i] as one left-padded batch: (ids [n, L], mask [n, L], 0 on the
    pads). Left padding keeps every row's end at the same position, where generation appends."""
    width = max(s.shape[1] for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=seqs[0].dtype)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - s.shape[1]:] = s[0]
        mask[i, width - s.shape[1]:] = 1
    return ids, mask


@torch.no_grad()
def greedy_continuation(handle: ModelHandle, ids: torch.Tensor, max_new_tokens: int, fwd_hooks=(), kv_cache: bool = True,
                        mask: torch.Tensor | None = None, on_step=None, lean: bool = True, stop=None) -> torch.Tensor:
    """ids [batch, pos] followed by max_new_tokens greedy tokens, `fwd_hooks` applied at every step;
    mask [batch, pos]: 0 on left padding (`left_pad`), None when no row is padded;
    on_step(log_probs [batch, vocab]): called with each step's next-token distribution;
    stop(new_ids [batch, n]): called after each step with the tokens generated so far, True
    ends the generation there (fewer than max_new_tokens new tokens).

    Only the last position is unembedded at each step (a 262k vocabulary makes
    full-sequence logits the dominant cost). With kv_cache each step runs only the new
    token: an edit hook sees the prompt once and then one new position per step, and
    edits each exactly as a full pass would (`edits.edit_hook` leaves only a full pass's
    BOS alone). The steps run on `decode.Decoder` where it mirrors the model (the same
    bytes as TransformerLens's key-value cache, without its per-step overhead), else on
    TransformerLens's own cache (and so with lean=False). Without kv_cache every step re-runs the whole sequence
    (some 10x the work for 20 new tokens). A Decoder step takes the model's turn
    (`ModelHandle.turn`), as `run_with_hooks` does in the app."""
    model = handle.model
    mask = torch.ones_like(ids) if mask is None else mask
    cache = decoder = None
    if kv_cache and lean and supports(model, fwd_hooks):
        decoder = Decoder(handle, fwd_hooks)
    elif kv_cache:
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        cache = TransformerLensKeyValueCache.init_cache(model.cfg, ids.device, ids.shape[0])
    step, step_mask = ids, mask
    for i in range(max_new_tokens):
        if decoder is not None and i == 0:
            last = decoder.prefill(ids, mask)  # through run_with_hooks
        elif decoder is not None:
            with handle.turn():
                last = decoder.step(step)
        elif cache is None:
            last = final_residual(handle, ids, mask, fwd_hooks)[:, -1]
        else:
            last = model.run_with_hooks(step, attention_mask=step_mask, past_kv_cache=cache,
                                        fwd_hooks=list(fwd_hooks), stop_at_layer=handle.n_layers)[:, -1]
        lp = log_probs(model, last)
        if on_step is not None:
            on_step(lp)
        step = lp.argmax(-1, keepdim=True).to(ids.device)
        step_mask = torch.ones_like(step)
        ids, mask = torch.cat([ids, step], 1), torch.cat([mask, step_mask], 1)
        if stop is not None and stop(ids[:, ids.shape[1] - i - 1:]):
            break
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
    direction: torch.Tensor | None = None,
    prefix: torch.Tensor | None = None,
) -> list[dict]:
    """One row per (coefficient, prompt): the greedy continuation with the
    edit at every non-BOS position and its measures (module docstring).
    Every (prompt, coefficient) runs in one left-padded batch (`left_pad`): a pass
    reads the weights once for all rows, where the 671 MB unembedding of a 262k
    vocabulary dominates each generation step.

    prompts: token id tensors [1, pos] starting with BOS;
    judge: continuations (list of str) -> P(category) per text, or None;
    direction: steer along this [d_model] vector instead (x + c * max_act * direction,
    mode ignored: 'add'); prefix: token ids [1, k] generated after BOS and before the
    prompt (prompting as a steering method). The steered pass (feature_activation,
    boosted_mass) reads what was generated from, prefix included; the unsteered pass
    (concept_score, nll) reads the bare prompt and the continuation."""
    model = handle.model
    boosted = boosted_tokens(handle, sae, feature, top_tokens, direction)
    coefs = list(coefficients)
    rows = {}

    def grab(cap):
        def fn(x, hook=None):
            cap["x"] = x.detach()
            return x

        return fn

    b = len(coefs)
    pad_id = getattr(handle.tokenizer, "pad_token_id", None) or 0
    # every (prompt, coefficient) in one left-padded batch: row p_i * b + r
    starts = [ids if prefix is None else torch.cat([ids[:, :1], prefix, ids[:, 1:]], 1) for ids in prompts]
    start, start_mask = left_pad([s for s in starts for _ in coefs], pad_id)
    bare, bare_mask = left_pad([ids for ids in prompts for _ in coefs], pad_id)
    q, p = start.shape[1], bare.shape[1]
    keep = start_mask.clone()
    keep[torch.arange(len(keep)), q - start_mask.sum(1)] = 0  # each row's BOS
    values = torch.tensor(coefs * len(prompts), dtype=torch.float32) * max_act
    edit = feature_edit(sae, feature, mode, values) if direction is None else direction_edit(direction, values)
    steer_hook = (hook, edit_hook(edit, prompt_keep=keep))
    masses = []  # per step, the steered distribution's mass on the boosted tokens
    full_gen = greedy_continuation(handle, start, max_new_tokens, [steer_hook], mask=start_mask,
                                   on_step=lambda lp: masses.append(lp[:, boosted].exp().sum(-1)))
    gen = full_gen[:, q:]
    n = gen.shape[1]
    ones = torch.ones_like(gen)
    full = torch.cat([bare, gen], 1)
    steered, clean = {}, {}
    # the steered pass is read for the feature only: it stops after the hook's block
    model.run_with_hooks(full_gen, attention_mask=torch.cat([start_mask, ones], 1), fwd_hooks=[steer_hook, (hook, grab(steered))],
                         stop_at_layer=hook_position(hook)[0] + 1)
    clean_resid = final_residual(handle, full, torch.cat([bare_mask, ones], 1), [(hook, grab(clean))])
    d = clean_resid.shape[-1]
    mass = torch.stack(masses, 1)
    nlls = -target_logprobs(model, clean_resid[:, p - 1 : -1].reshape(-1, d), gen.reshape(-1)).reshape(-1, n).mean(1)
    texts = [handle.tokenizer.decode(g) if handle.tokenizer is not None else None for g in gen]
    probs = judge(texts) if judge is not None and None not in texts else [float("nan")] * len(texts)
    f_steer = encode_feature(sae, steered["x"][:, q:], feature).mean(1)
    f_clean = encode_feature(sae, clean["x"][:, p:], feature).mean(1)
    for p_i in range(len(prompts)):
        for r, coef in enumerate(coefs):
            i = p_i * b + r
            rows[(r, p_i)] = {
                "coefficient": coef,
                "prompt": p_i,
                "continuation": texts[i],
                "continuation_ids": gen[i].tolist(),
                "feature_activation": float(f_steer[i]),
                "concept_score": float(f_clean[i]),
                "boosted_mass": float(mass[i].mean()),
                "classifier_prob": float(probs[i]),
                "nll": float(nlls[i]),
                "perplexity": math.exp(float(nlls[i])),
                "distinct": distinct_frac(gen[i].tolist()),
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
    """The measures of the unsteered continuations."""
    boosted_tokens: list[int]
    best_coefficient: float | None
    best_rule: str
    rows: list[dict]
    fluency: list[float]
    """Per coefficient, mean over prompts (module docstring); likewise combined."""
    combined: list[float]
    combined_ci: list[dict]
    """Per coefficient: analysis.stats.bootstrap_mean of the combined score over prompts."""
    versus_unsteered: dict
    """Per steered coefficient (str): analysis.stats.paired_difference of combined scores against unsteered."""
    works: bool
    """The best coefficient's combined score is above unsteered (its interval lies above 0)."""


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
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    direction: torch.Tensor | None = None,
    prefix: torch.Tensor | None = None,
) -> GenerationResult:
    """Causal-LM steering study: steer_generation's rows scored (fluency, combined)
    against the unsteered continuations, averaged per coefficient with intervals over
    prompts, each steered coefficient tested against unsteered, and the best one
    (module docstring). max_ppl_ratio: fluency is 0 above this perplexity ratio to unsteered.
    direction, prefix: as steer_generation (with a prefix every coefficient, 0 included,
    is steered: pass [0.0] to measure the prompt alone)."""
    run = lambda coefs, m, pre: steer_generation(handle, sae, feature, hook, max_act, coefs, prompts, max_new_tokens, m, top_tokens,  # noqa: E731
                                                 judge, direction, pre)
    coefs = list(coefficients)
    rows = run(coefs, mode, prefix)
    plain_zero = prefix is None and (mode == "add" or direction is not None)
    base = [r for r in rows if r["coefficient"] == 0] if plain_zero and 0 in coefs else run([0.0], "add", None)
    nll_ref, distinct_ref = float(np.mean([r["nll"] for r in base])), float(np.mean([r["distinct"] for r in base]))
    for r in {id(r): r for r in rows + base}.values():
        r["fluency"] = fluency(r["nll"], r["distinct"], nll_ref, distinct_ref, max_ppl_ratio)
        r["combined"] = combined(r["classifier_prob"], r["fluency"])

    def summary(rs):
        mean = lambda k: float(np.mean([r[k] for r in rs]))
        return {"feature_activation": mean("feature_activation"), "concept_score": mean("concept_score"),
                "classifier_prob": mean("classifier_prob"), "boosted_mass": mean("boosted_mass"), "perplexity": math.exp(mean("nll")),
                "distinct": mean("distinct"), "fluency": mean("fluency"), "combined": mean("combined")}

    by_coef = {c: sorted((r for r in rows if r["coefficient"] == c), key=lambda r: r["prompt"]) for c in coefs}
    per = [summary(by_coef[c]) for c in coefs]
    col = lambda k: [s[k] for s in per]
    unsteered = summary(base)
    rng = np.random.default_rng(seed)
    base_scores = [r["combined"] for r in sorted(base, key=lambda r: r["prompt"])]
    combined_ci = [bootstrap_mean([r["combined"] for r in by_coef[c]], rng, n_boot, alpha) for c in coefs]
    steered = [c for c in coefs if c != 0 or not plain_zero]
    tested_alpha = alpha / max(1, len(steered))
    versus = {str(c): paired_difference([r["combined"] for r in by_coef[c]], base_scores, rng, n_boot, tested_alpha) for c in steered}
    best = max(steered, key=lambda c: (per[coefs.index(c)]["combined"], -abs(c))) if steered else None
    works = best is not None and versus[str(best)]["verdict"] == "higher"
    rule = (f"highest mean combined score (concept x fluency, harmonic mean) over the {len(prompts)} prompts among the steered "
            f"coefficients (ties: smaller |coefficient|); it works when the paired bootstrap interval of its combined score minus "
            f"the unsteered one's, at alpha {alpha} / {len(steered)} coefficients, lies above 0")
    return GenerationResult(mode, coefs, col("feature_activation"), col("concept_score"), col("classifier_prob"), col("boosted_mass"),
                            col("perplexity"), unsteered, boosted_tokens(handle, sae, feature, top_tokens, direction), best, rule, rows,
                            col("fluency"), col("combined"), combined_ci, versus, works)


class GenerationSteering(Steering):
    """Causal LMs: continuations of cfg.prompts, judged by the feature read back
    (concept score), the independent classifier and the unsteered model's perplexity."""

    name = "generation"
    result_type = GenerationResult
    ablation_score = "mean log-probability of the actual next tokens"
    attribution_metric_name = "mean next-token log-prob"
    compares_methods = True

    def steering_context(self, handle, texts, cfg, max_tokens):
        tok = tokenizer(handle, max_tokens)
        prompts = [torch.tensor([handle.tokenize(p, max_tokens).ids]) for p in cfg.prompts]
        return SteeringContext(tokenize=tok, held=[t for t in texts if t.split == "heldout"], prompts=prompts,
                               classifier=fit_classifier(texts))

    @staticmethod
    def judge(ctx, category):
        """texts -> the classifier's concept score for `category`, or None without one."""
        if ctx.classifier is not None and category in ctx.classifier.categories:
            return lambda texts: ctx.classifier.proba(texts, category)
        return None

    def sweep(self, handle, sae, feature, hook, max_act, coefs, ctx, category, mode, cfg):
        judge = self.judge(ctx, category)
        return generation_study(handle, sae, feature, hook, max_act, coefs, ctx.prompts, cfg.max_new_tokens, mode,
                                cfg.max_ppl_ratio, cfg.top_tokens, judge, ctx.n_boot, ctx.alpha, ctx.seed)

    def curve(self, result, category):
        return result.combined

    def headline(self, result, coefs, ctx, category, cfg):
        g = result
        res = dict(generations=g.rows, feature_activation=g.feature_activation, concept_score=g.concept_score,
                   classifier_prob=g.classifier_prob, boosted_mass=g.boosted_mass, perplexity=g.perplexity,
                   fluency=g.fluency, combined=g.combined, combined_ci=g.combined_ci, versus_unsteered=g.versus_unsteered, works=g.works)
        if ctx.classifier is not None:
            res["classifier"] = {"fitted_on": ctx.classifier.fitted_on, "n_fit": ctx.classifier.n_fit,
                                 "accuracy_other_split": ctx.classifier.accuracy, "calibration": ctx.classifier.calibration,
                                 "model": ("TF-IDF char 1-4-grams + logistic regression, gated by P(real) from gradient boosting "
                                           "on string properties (sae_workbench/steer/judge.py)")}
        best = str(g.best_coefficient)
        met = dict(
            feature_activation=per_coef(coefs, g.feature_activation), activation_slope=slope(coefs, g.feature_activation),
            concept_score=per_coef(coefs, g.concept_score), classifier_prob=per_coef(coefs, g.classifier_prob),
            boosted_mass=per_coef(coefs, g.boosted_mass),
            perplexity=per_coef(coefs, g.perplexity), unsteered_perplexity=g.unsteered["perplexity"],
            combined=per_coef(coefs, g.combined), unsteered_combined=g.unsteered["combined"],
            best_versus_unsteered=g.versus_unsteered.get(best), works=g.works,
        )
        return res, met

    def ablation_scores(self, handle, toks, labels, ctx):
        return lambda hook=None, edit=None, idx=None: next_token_logprobs(handle, pick(toks, idx), hook, edit)

    def attribution_metric(self, ctx, category):
        return logprob_metric, self.attribution_metric_name

    def compare_methods(self, handle, sae, specs, directions, ctx, cfg, sae_results, max_tokens):
        from .methods import compare_methods, prefix_ids

        coefs = sorted(cfg.coefficients)

        def one(feature, max_act, category, direction=None, prefix=None, coefficients=None):
            return generation_study(handle, sae, feature, cfg.hook, max_act, coefs if coefficients is None else coefficients, ctx.prompts,
                                    cfg.max_new_tokens, "add", cfg.max_ppl_ratio, cfg.top_tokens, self.judge(ctx, category), ctx.n_boot,
                                    ctx.alpha, ctx.seed, direction, prefix)

        return compare_methods(one, sae, specs, directions, sae_results, cfg, np.random.default_rng(ctx.seed), ctx.n_boot, ctx.alpha,
                               lambda c: prefix_ids(handle, cfg.prompt_prefixes[c], max_tokens))
