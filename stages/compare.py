"""Cross-layer (and cross-component) comparison of the per-hook analyses.

$ python stages/compare.py
Reads metrics/analysis/<hook>.json and data/analysis/<hook>.json for every hook
in params.yaml; writes metrics/compare.json (specialist counts and AUROC by
hook, MLP-out / attention-out vs the residual stream) and data/compare.json
(everything the comparison chapter draws).
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from pathlib import Path

import numpy as np

from sae_workbench.activations import load_token_table
from sae_workbench.analysis.compare import compare_hooks, specialist_strengths
from sae_workbench.analysis.results import HookAnalysis
from sae_workbench.cli import read_json, stage, write_json
from sae_workbench.features import load_features


def args(p):
    p.add_argument("--analysis-metrics", default="metrics/analysis")
    p.add_argument("--analysis", default="data/analysis")
    p.add_argument("--features", default="data/features")
    p.add_argument("--acts", default="data/activations/eval")
    p.add_argument("--metrics", default="metrics/compare.json")
    p.add_argument("--out", default="data/compare.json")


@stage(args)
def main(args, params):
    """Specialists, strongest features and coverage across hooks."""
    hooks = params.hooks
    m = {h: read_json(Path(args.analysis_metrics) / f"{h}.json") for h in hooks}
    d = {h: HookAnalysis.from_json(read_json(Path(args.analysis) / f"{h}.json"), m[h]) for h in hooks}
    table = load_token_table(args.acts)
    held = np.array([t["split"] == "heldout" for t in table.texts])
    strength = {}
    for h in hooks:
        ft = load_features(Path(args.features) / f"{h}.safetensors")
        if ft.n_rows != len(table.text_index):
            raise ValueError(f"{args.features}/{h}.safetensors covers {ft.n_rows} tokens, {args.acts} {len(table.text_index)}: re-run dvc repro")
        strength[h] = specialist_strengths(ft, table.text_index, len(table.texts), d[h].specialists)[held]
    heldout = {"labels": [t["category"] for t, k in zip(table.texts, held) if k], "strength": strength}
    result = compare_hooks(hooks, m, d, heldout, np.random.default_rng(params.seed), params.analysis.n_bootstrap, params.analysis.alpha)
    metrics = result.metrics_json()
    write_json(args.out, result.to_json())
    write_json(args.metrics, metrics)
    print(f"compare: significant specialists by hook {metrics['significant_by_hook']}")
    for h, c in metrics["components_vs_resid"].items():
        print(f"  {h} vs {c['resid_hook']}: {c['significant']} vs {c['resid_significant']} significant, "
              f"mean AUROC {c['mean_auroc']:.3f} vs {c['resid_mean_auroc']:.3f} -> {c['verdict']} "
              f"(paired bootstrap: difference {c['test']['auroc_diff']:+.3f}, 95% interval {c['test']['ci_low']:+.3f}..{c['test']['ci_high']:+.3f})")


if __name__ == "__main__":
    main()
