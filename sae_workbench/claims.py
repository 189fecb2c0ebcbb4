"""The report's headline sentences about steering and ablation, written from the
tests' statistics, never from one picked coefficient: a difference is called one
only when its interval excludes 0; otherwise the sentence says "no significant
effect". Used by the steering chapter and the abstract.

    steering_claim(study)      the headline specialist, steered (SteerStudy)
    steering_tally(study)      how many specialists steer their text significantly
    ablation_claim(study)      how many specialists' ablation costs more than a matched control's
    methods_claim(study)       the specialists beside DiffMean and prompting (steer.methods)
    explain_claim(study)       automatic explanations against their controls (explain.study)
"""

from __future__ import annotations


def _interval(t: dict) -> str:
    level = 100 * (1 - t["alpha"])
    return f"{t['diff']:+.3f}, {level:.4g}% interval {t['ci_low']:+.3f} to {t['ci_high']:+.3f}"


def steering_claim(study) -> str:
    """One sentence on the headline specialist's steering (a steer.study.SteerStudy)."""
    g = study.sweeps[study.mode]
    who = f"the `{study.category}` specialist (feature {study.feature})"
    tests = getattr(g, "versus_unsteered", None)
    if not tests or g.best_coefficient is None:
        return (f"Steering {who} is described, not tested: this model kind's steering has no per-prompt judge "
                f"(see the figures for what moved).")
    t = tests[str(g.best_coefficient)]
    i = g.coefficients.index(g.best_coefficient)
    n, k = t["n"], len(tests)
    scores = f"{g.combined[i]:.3f} against {g.unsteered['combined']:.3f} unsteered"
    if g.works:
        return (f"Steering {who} at {g.best_coefficient:g}× its maximum activation raises the combined concept-and-fluency "
                f"score of the continuations to {scores} (paired difference over {n} prompts {_interval(t)}, "
                f"Bonferroni-corrected over {k} coefficients).")
    return (f"Steering {who} has no significant effect on the combined concept-and-fluency score: its best coefficient, "
            f"{g.best_coefficient:g}×, scores {scores} (paired difference over {n} prompts {_interval(t)}, "
            f"Bonferroni-corrected over {k} coefficients; the interval includes 0).")


def steering_tally(study) -> str | None:
    """One sentence: of the specialists steered (steer.all_specialists), how many raise their
    own category's combined score significantly; None when there is no per-feature test."""
    pf = study.per_feature_metrics or {}
    tested = {c: m for c, m in pf.items() if "works" in m}
    if not tested:
        return None
    ok = sorted(c for c, m in tested.items() if m["works"])
    if not ok:
        return (f"None of the {len(tested)} specialists steered raises its own category's combined score significantly "
                f"above unsteered.")
    return (f"{len(ok)} of the {len(tested)} specialists steered raise{'s' if len(ok) == 1 else ''} their own category's "
            f"combined score significantly above unsteered ({', '.join(f'`{c}`' for c in ok)}).")


def ablation_claim(study) -> str | None:
    """One sentence on the ablations: for how many categories ablating the specialist costs
    the category's texts more than ablating a frequency-matched control (paired test)."""
    if not study.ablation:
        return None
    cats = study.ablation["categories"]
    tested = {c: r["specialist_vs_control"] for c, r in cats.items() if "specialist_vs_control" in r}
    if not tested:
        return None
    higher = sorted(c for c, t in tested.items() if t["verdict"] == "higher")
    lower = sorted(c for c, t in tested.items() if t["verdict"] == "lower")
    level = 100 * (1 - next(iter(tested.values()))["alpha"])
    base = (f"Ablating a specialist costs its own category's held-out texts significantly more than ablating a "
            f"frequency-matched control feature")
    if not higher:
        s = f"No category shows a significant effect of ablation: {base[0].lower()}{base[1:]} in none of {len(tested)} categories"
    else:
        s = f"{base} in {len(higher)} of {len(tested)} categories ({', '.join(f'`{c}`' for c in higher)})"
    s += f" (paired bootstrap over texts, {level:.4g}% intervals)"
    if lower:
        s += f"; the control costs more in {', '.join(f'`{c}`' for c in lower)}"
    return s + "."


def methods_claim(study) -> str | None:
    """One sentence: in how many categories each method (SAE specialist, DiffMean, prompt) steers
    significantly, and how often each baseline beats the specialist (paired tests over prompts);
    None without the comparison."""
    if not study.methods:
        return None
    from .steer.methods import method_tally

    t = method_tally(study.methods)
    n = t["categories"]
    vs = lambda b: ", ".join(f"{k} {t[f'{b}_vs_sae'][v]}" for v, k in  # noqa: E731
                             (("higher", "better"), ("no_difference", "not significantly different"), ("lower", "worse")))
    return (f"Of {n} categories, the SAE specialist steers its category significantly above unsteered in {t['sae']}, "
            f"its DiffMean direction in {t['diffmean']} and a prompt naming the concept in {t['prompt']}. "
            f"Against the specialist at each method's best coefficient (paired bootstrap over prompts), DiffMean is {vs('diffmean')}; "
            f"the prompt is {vs('prompt')}.")


def judge_check_claim(study) -> str | None:
    """One sentence on the judge's check (explain.study.judge_check): does the judge find
    planted explanations, so that its detection and fuzzing scores can mean something?"""
    c = getattr(study, "judge_check", None)
    if not c:
        return None
    m, level = c["mean"], 100 * (1 - c["alpha"])
    head = (f"Checked first on planted explanations (each of {m['n']} categories' description, read with {c['texts_per_category']} held-out texts "
            f"of each category), the judge's detection AUROC averages {m['mean']:.3f} ({level:.4g}% interval over categories "
            f"{m['ci_low']:.3f} to {m['ci_high']:.3f})")
    if c["verdict"] == "above_chance":
        return head + ": it finds right explanations above chance, so its scores below can rank explanations."
    return (head + ": the judge does not find even these above chance, so its detection and fuzzing scores below cannot tell a right "
            "explanation from a wrong one; the embedding scorer does not use it.")


def judge_caveat(study) -> str:
    """A clause for a sentence quoting the judge's scores: "" unless the judge's check found it at chance."""
    c = getattr(study, "judge_check", None)
    if not c or c["verdict"] != "at_chance":
        return ""
    return (f"; the judge itself finds planted explanations only at chance (mean AUROC {c['mean']['mean']:.3f}), "
            "so these scores cannot rank explanations")


def explain_claim(study, scorer: str = "detection") -> str | None:
    """One sentence on the explanations' `scorer` AUROC against the shuffled and top-token
    controls (paired bootstrap over features); None without a summary for it."""
    if study is None or scorer not in study.summary:
        return None
    s = study.summary[scorer]
    m = s["mean"]
    level = 100 * (1 - s["vs_shuffled"]["alpha"])
    word = {"higher": "significantly above", "lower": "significantly below", "no_difference": "not significantly different from"}

    def vs(c, name):
        t = s[f"vs_{c}"]
        return f"{word[t['verdict']]} {name} ({m[c]['mean']:.3f}; difference {t['diff']:+.3f}, {level:.4g}% interval {t['ci_low']:+.3f} to {t['ci_high']:+.3f})"

    return (f"Scored by {scorer} on held-out contexts over {s['n_features']} features, the explanations' mean AUROC is "
            f"{m['explanation']['mean']:.3f}, {vs('shuffled', 'another feature’s explanation')} and {vs('top_tokens', 'a list of the top tokens')}.")
