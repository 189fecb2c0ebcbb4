"""The cross-hook comparison (compare_hooks): specialists, strongest features
and coverage side by side, and every mlp_out / attn_out hook against the residual
stream it writes into (paired bootstrap on the held-out texts, stats.py)."""

from __future__ import annotations

import numpy as np

from ..cli import rounded
from ..config import CATEGORIES
from ..features import FeatureTable
from .results import HookAnalysis, HookComparison
from .stats import paired_auroc_test


def written_into(hook: str, hooks: list[str]) -> str | None:
    """The residual-stream hook a block's mlp_out / attn_out is added into:
    blocks.L.hook_resid_post or blocks.(L+1).hook_resid_pre, if listed."""
    from ..config import HOOK_RE

    m = HOOK_RE.match(hook)
    if not m or m.group(2) not in ("mlp_out", "attn_out"):
        return None
    L = int(m.group(1))
    for cand in (f"blocks.{L}.hook_resid_post", f"blocks.{L + 1}.hook_resid_pre"):
        if cand in hooks:
            return cand
    return None


def specialist_strengths(ft: FeatureTable, text_index: np.ndarray, n_texts: int, specialists: dict[str, Specialist],
                         categories=CATEGORIES) -> np.ndarray:
    """[n_texts, n_cat]: each text's strongest activation of each category's specialist."""
    return ft.per_text_max(text_index, n_texts)[:, [specialists[c].feature for c in categories]]


def compare_hooks(hooks: list[str], metrics: dict[str, dict], details: dict[str, HookAnalysis], heldout: dict | None = None,
                  rng: np.random.Generator | None = None, n_boot: int = 1000, alpha: float = 0.05) -> HookComparison:
    """Cross-layer comparison from the per-hook analyses (metrics: each hook's
    metrics_json(), details: its HookAnalysis).

    Returns a HookComparison (metrics for DVC, data for the report): significant / positive
    specialist counts per hook with bootstrap intervals, mean held-out AUROC,
    the category x hook specialist table, top-5 strongest activations and
    frequent-feature coverage per hook, and for every mlp_out / attn_out hook
    the comparison with the residual stream it writes into: the verdict comes from
    `paired_auroc_test` on the held-out texts (heldout = {"labels": [n],
    "strength": {hook: [n, n_cat]}}), as does the best hook's margin over the runner-up."""
    if heldout is None:
        raise ValueError("compare_hooks needs the held-out specialist strengths for its paired tests")
    rng = rng if rng is not None else np.random.default_rng(0)
    test = lambda a, b: paired_auroc_test(heldout["strength"][a], heldout["strength"][b], heldout["labels"], rng, n_boot, alpha)
    table = {
        c: {h: {k: metrics[h]["specialists"][c][k] for k in ("feature", "heldout_score", "ci_low", "ci_high", "heldout_auroc", "p_value", "significant")} for h in hooks}
        for c in CATEGORIES
    }
    per_hook = {
        h: {
            "significant": metrics[h]["specialists_significant"],
            "positive": metrics[h]["specialists_heldout_positive"],
            "positive_ci": [metrics[h]["specialists_heldout_positive_ci_low"], metrics[h]["specialists_heldout_positive_ci_high"]],
            "mean_heldout_auroc": metrics[h]["mean_heldout_auroc"],
        }
        for h in hooks
    }
    components = []
    for h in hooks:
        resid = written_into(h, hooks)
        if resid is None:
            continue
        a = [metrics[h]["specialists"][c]["heldout_auroc"] for c in CATEGORIES]
        b = [metrics[resid]["specialists"][c]["heldout_auroc"] for c in CATEGORIES]
        wins = int(sum(x > y for x, y in zip(a, b)))
        losses = int(sum(x < y for x, y in zip(a, b)))
        t = test(h, resid)
        components.append(
            {
                "hook": h,
                "resid_hook": resid,
                "significant": per_hook[h]["significant"],
                "resid_significant": per_hook[resid]["significant"],
                "mean_auroc": rounded(np.mean(a)),
                "resid_mean_auroc": rounded(np.mean(b)),
                "categories_higher_auroc": wins,
                "categories_lower_auroc": losses,
                "verdict": t["verdict"],
                "test": t,
            }
        )
    strongest = {h: [{k: r[k] for k in ("feature", "max_act", "top_text")} for r in details[h].rankings["strongest"][:5]] for h in hooks}
    coverage_by_hook = {h: metrics[h]["coverage_top_frequent"] for h in hooks}
    order = sorted(hooks, key=lambda h: (per_hook[h]["significant"], per_hook[h]["mean_heldout_auroc"]), reverse=True)
    best_test = {"runner_up": order[1], **test(order[0], order[1])} if len(order) > 1 else None
    return HookComparison(
        hooks=hooks,
        per_hook=per_hook,
        specialist_table=table,
        heldout_score_matrix={h: details[h].score_matrix for h in hooks},
        top5_strongest=strongest,
        coverage=coverage_by_hook,
        components_vs_resid=components,
        best_hook=order[0],
        best_hook_vs_runner_up=best_test,
    )
