"""How concentrated the variance of each hook's activations is (why sae.normalize per_dim).

$ python bench/residual_outliers.py [--act-dir data/activations/corpus]

Per hook of the extracted corpus (run dvc repro first): the share of the total
variance (sum over dimensions of each dimension's variance) held by the largest
dimension, and by the largest 8; which dimension that is; the ratio of the largest
dimension's standard deviation to the median's; and the share of the squared norm
E||x||^2 that is the mean vector's (a constant offset a single-scalar
normalisation keeps). A scalar normalisation leaves the SAE's MSE dominated by the
largest dimensions; per-dimension standardisation (sae.normalize: per_dim) weighs all.
Writes bench/results/residual_outliers.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from sae_workbench.activations import load_acts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--act-dir", default="data/activations/corpus")
    ap.add_argument("--out", default="bench/results/residual_outliers.json")
    a = ap.parse_args()
    act_dir = ROOT / a.act_dir
    hooks = sorted(p.name.removesuffix(".safetensors") for p in act_dir.glob("*.safetensors"))
    if not hooks:
        sys.exit(f"no activations in {act_dir}: run dvc repro first")
    rows = []
    for hook in hooks:
        x = load_acts(act_dir, hook).double()
        var = x.var(0)
        order = torch.argsort(var, descending=True)
        total = float(var.sum())
        std = var.sqrt()
        mean_sq = float((x.mean(0) ** 2).sum())
        rows.append({"hook": hook, "tokens": x.shape[0], "d": x.shape[1],
                     "top_dimension": int(order[0]), "top_dimension_variance_share": round(float(var[order[0]]) / total, 4),
                     "top_8_variance_share": round(float(var[order[:8]].sum()) / total, 4),
                     "top_std_over_median_std": round(float(std.max() / std.median()), 1),
                     "mean_vector_share_of_squared_norm": round(mean_sq / float((x ** 2).sum(1).mean()), 4)})
        print(rows[-1], flush=True)
    out = ROOT / a.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"what": "variance concentration of each hook's activations (corpus)", "act_dir": a.act_dir,
                               "hooks": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
