"""claims.py: the headline sentences come from the tests' statistics; on a planted
null they say "no significant effect", on a planted effect they state it with its interval."""

import numpy as np

from sae_workbench.analysis.stats import paired_difference
from sae_workbench.claims import ablation_claim, steering_claim, steering_tally
from sae_workbench.steer.generation import GenerationResult
from sae_workbench.steer.study import SteerStudy

COEFS = [-2.0, 0.0, 2.0]


def _study(effect: float, seed: int = 0, n_prompts: int = 12) -> SteerStudy:
    """A steering study whose per-prompt combined scores are planted: unsteered ~ U(0.1, 0.3),
    each steered coefficient the same plus `effect` at +2 and plus noise of mean 0."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.3, n_prompts)
    scores = {-2.0: base + rng.normal(0, 0.05, n_prompts), 0.0: base, 2.0: base + effect + rng.normal(0, 0.05, n_prompts)}
    steered = [-2.0, 2.0]
    test_rng = np.random.default_rng(1)
    versus = {str(c): paired_difference(scores[c], base, test_rng, 1000, 0.05 / len(steered)) for c in steered}
    combined = [float(scores[c].mean()) for c in COEFS]
    best = max(steered, key=lambda c: (combined[COEFS.index(c)], -abs(c)))
    g = GenerationResult("add", COEFS, [0.0] * 3, [0.0] * 3, [0.0] * 3, [0.0] * 3, [1.0] * 3, {"combined": combined[1]}, [], best, "",
                         [], [1.0] * 3, combined, [], versus, versus[str(best)]["verdict"] == "higher")
    abl = {"categories": {c: {"specialist_vs_control": paired_difference(rng.normal(effect, 0.05, 20), rng.normal(0, 0.05, 20),
                                                                         test_rng, 1000, 0.05)} for c in ("python", "math")}}
    return SteerStudy(hook="blocks.1.hook_resid_post", category="python", feature=7, max_act=1.0, mode="add", coefficients=COEFS,
                      headline={}, headline_metrics={}, best_coefficient=best, best_rule="", sweeps={"add": g}, attribution={},
                      per_feature_metrics={"python": {"works": g.works}, "math": {"works": False}}, ablation=abl)


def test_planted_null_reads_no_significant_effect():
    for seed in range(5):
        s = _study(effect=0.0, seed=seed)
        assert not s.sweeps["add"].works
        sentence = steering_claim(s)
        assert sentence.startswith("Steering the `python` specialist (feature 7) has no significant effect") and "includes 0" in sentence
        assert steering_tally(s).startswith("None of the 2 specialists")
        assert ablation_claim(s).startswith("No category shows a significant effect of ablation")


def test_planted_effect_is_stated_with_its_interval():
    s = _study(effect=0.3)
    g = s.sweeps["add"]
    assert g.works and g.best_coefficient == 2.0
    sentence = steering_claim(s)
    t = g.versus_unsteered["2.0"]
    assert "at 2× its maximum activation raises" in sentence and f"{t['ci_low']:+.3f} to {t['ci_high']:+.3f}" in sentence
    assert "over 12 prompts" in sentence and "Bonferroni-corrected over 2 coefficients" in sentence
    assert steering_tally(s) == "1 of the 2 specialists steered raises their own category's combined score significantly above unsteered (`python`)."
    assert ablation_claim(s).startswith("Ablating a specialist costs its own category's held-out texts significantly more") and "in 2 of 2" in ablation_claim(s)


def _methods(diffmean_effect: float, seed: int = 0, n_prompts: int = 12) -> dict:
    """steer.methods' result for two categories with planted per-prompt scores: the specialist and the
    prompt at U(0.1, 0.3) plus noise, DiffMean the same plus `diffmean_effect`; 'works' planted."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in ("python", "math"):
        base = rng.uniform(0.1, 0.3, n_prompts)
        sae, dm, pr = base + rng.normal(0, 0.05, n_prompts), base + diffmean_effect + rng.normal(0, 0.05, n_prompts), base + rng.normal(0, 0.05, n_prompts)
        summ = lambda v, works: {"works": works, "best_combined": {"mean": float(v.mean())}}  # noqa: E731
        out[c] = {"sae": summ(sae, False), "diffmean": summ(dm, diffmean_effect > 0), "prompt": summ(pr, False),
                  "diffmean_vs_sae": paired_difference(dm, sae, rng, 1000, 0.05), "prompt_vs_sae": paired_difference(pr, sae, rng, 1000, 0.05)}
    return out


def test_methods_claim_counts_what_the_tests_say():
    from dataclasses import replace

    from sae_workbench.claims import methods_claim

    s = _study(effect=0.0)
    assert methods_claim(s) is None  # no comparison run: no sentence
    null = methods_claim(replace(s, methods=_methods(0.0)))
    assert null.startswith("Of 2 categories, the SAE specialist steers its category significantly above unsteered in 0, its DiffMean direction in 0")
    assert "DiffMean is better 0, not significantly different 2, worse 0" in null
    planted = methods_claim(replace(s, methods=_methods(0.3)))
    assert "its DiffMean direction in 2" in planted and "DiffMean is better 2, not significantly different 0, worse 0" in planted
