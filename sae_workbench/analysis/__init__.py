"""The analyses of the SAE features, one module per job.

    results.py   typed results (Specialist, SpecialistCount, HookAnalysis, HookComparison, SeedStudy),
                 written by to_json / metrics_json, read back by from_json
    stats.py     every statistical test and interval: specialist selection on the train texts,
                 held-out AUROC and score with bootstrap intervals, permutation test,
                 leave-one-register-out, paired test; seed-to-seed decoder matching
    hook.py      the per-hook analysis (analyze_hook): feature statistics, rankings,
                 co-activation, coverage; concept search
    cards.py     feature cards: top activating tokens in context, histogram, logit effects
    compare.py   the cross-hook comparison (compare_hooks): components vs the residual stream
    seeds.py     seed stability (seed_study): the same SAE trained with further seeds, matched
"""

# Nothing is imported here: import from the submodule (`from sae_workbench.analysis.stats import auroc`),
# so a stage depends only on the files it uses (sae_workbench.deps checks dvc.yaml against that).
