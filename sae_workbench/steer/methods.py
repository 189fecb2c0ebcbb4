"""Steering with the SAE specialist beside the field's baselines (AxBench): each
category's DiffMean direction and a prompt naming the concept, through the same
prompts, judge and fluency score (`steer.generation`), for causal LMs.

Per category c, all in mode 'add':
    sae        the specialist f_c's sweep: x + k * m_c * W_dec[f_c] over steer.coefficients k
               (m_c: f_c's max activation)
    diffmean   DiffMean's direction w_c of the hook (analysis/baselines.py, fitted on the
               train texts) scaled to the specialist's decoder-row norm:
               x + k * m_c * ||W_dec[f_c]|| * w_c / ||w_c||, the same coefficients, so a
               coefficient moves the residual stream as far as the specialist's does
    prompt     no edit; steer.prompt_prefixes[c] and a newline are generated from before
               the neutral prompt (the model reads "<prefix>\\n<prompt>"); the continuation
               is scored as the others' are, as a continuation of the bare prompt
For the two swept methods the best coefficient is the one with the highest mean combined
score (generation_study's rule); each method's per-prompt combined scores at its best
coefficient (the prompt's: its only condition) are compared with the specialist's by a
paired bootstrap over prompts (analysis.stats.paired_difference; 'higher' means the
baseline steers better than the specialist). Each method also has its own test against
unsteered (`works`), as the specialist has.
"""

from __future__ import annotations

import numpy as np
import torch

from ..analysis.stats import paired_difference

METHODS = ("sae", "diffmean", "prompt")


def _at_best(result) -> list[float]:
    """Per-prompt combined scores at the result's best coefficient (prompt order)."""
    rows = sorted((r for r in result.rows if r["coefficient"] == result.best_coefficient), key=lambda r: r["prompt"])
    return [r["combined"] for r in rows]


def _summary(result) -> dict:
    i = result.coefficients.index(result.best_coefficient)
    return {"best_coefficient": result.best_coefficient, "combined": result.combined, "classifier_prob": result.classifier_prob,
            "fluency": result.fluency, "perplexity": result.perplexity, "combined_ci": result.combined_ci,
            "best_combined": result.combined_ci[i], "best_classifier_prob": result.classifier_prob[i],
            "best_fluency": result.fluency[i], "works": result.works,
            "best_versus_unsteered": result.versus_unsteered[str(result.best_coefficient)],
            "continuations": [r["continuation"] for r in sorted(result.rows, key=lambda r: r["prompt"])
                              if r["coefficient"] == result.best_coefficient]}


def prefix_ids(handle, prefix: str, max_tokens: int) -> torch.Tensor:
    """[1, k]: the token ids of `prefix` and a newline, without the BOS the tokenizer adds."""
    ids = handle.tokenize(prefix.rstrip() + "\n", max_tokens).ids
    bos = getattr(handle.tokenizer, "bos_token_id", None)
    return torch.tensor([ids[1:] if ids and ids[0] == bos else ids])


def compare_methods(study_one, sae, specs: dict, directions: dict[str, np.ndarray], sae_results: dict, cfg, rng: np.random.Generator,
                    n_boot: int, alpha: float, prefix_of) -> dict:
    """Per category with a firing specialist and a DiffMean direction: the three methods
    (module docstring), and the baselines against the specialist.

    study_one(feature, max_act, category, direction=None, prefix=None, coefficients=None) runs
    generation_study for one feature's category; sae_results[c]: the specialist's add-mode
    sweep where one was run already (else it is run here); prefix_of(c): prompt prefix ids."""
    out = {}
    for c, spec in specs.items():
        m = float(spec.max_act or 0)
        if m <= 0 or c not in directions:
            continue
        sae_r = sae_results.get(c) or study_one(spec.feature, m, c)
        w = torch.tensor(np.asarray(directions[c]), dtype=torch.float32)
        scale = float(sae.W_dec[spec.feature].detach().float().norm())
        norm = float(w.norm())
        if norm == 0:
            continue
        dm_r = study_one(spec.feature, m, c, direction=w / norm * scale)
        pr_r = study_one(spec.feature, m, c, prefix=prefix_of(c), coefficients=[0.0])
        base = _at_best(sae_r)
        out[c] = {
            "feature": spec.feature, "max_act": m, "decoder_norm": scale, "prefix": cfg.prompt_prefixes[c],
            "sae": _summary(sae_r), "diffmean": _summary(dm_r), "prompt": _summary(pr_r),
            "diffmean_vs_sae": paired_difference(_at_best(dm_r), base, rng, n_boot, alpha),
            "prompt_vs_sae": paired_difference(_at_best(pr_r), base, rng, n_boot, alpha),
        }
    return out


def method_tally(methods: dict) -> dict:
    """How many categories each method works in, and how often each baseline beats,
    ties with or loses to the specialist."""
    tally = {m: sum(bool(r[m]["works"]) for r in methods.values()) for m in METHODS}
    for b in ("diffmean", "prompt"):
        vs = [r[f"{b}_vs_sae"]["verdict"] for r in methods.values()]
        tally[f"{b}_vs_sae"] = {v: vs.count(v) for v in ("higher", "no_difference", "lower")}
    tally["categories"] = len(methods)
    return tally
