"""Per-hook feature analysis of the evaluation texts.

$ python stages/analyze.py --hook blocks.3.hook_resid_pre
Numbers for `dvc metrics` go to metrics/analysis/<hook>.json; rankings,
specialists (with bootstrap intervals and permutation p-values), co-activation
and feature cards go to data/analysis/<hook>.json; the supervised baselines beside
each specialist (DiffMean, probes: analysis/baselines.py) to data/baselines/<hook>.json
and metrics/baselines/<hook>.json, DiffMean's directions (for the steer stage) to
data/baselines/<hook>.safetensors.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from pathlib import Path

import numpy as np

from sae_workbench.activations import load_activation_set
from sae_workbench.analysis.baselines import hook_baselines, save_directions
from sae_workbench.analysis.hook import analyze_hook
from sae_workbench.cli import stage, write_json
from sae_workbench.features import load_features


def args(p):
    p.add_argument("--hook", required=True)
    p.add_argument("--acts", default="data/activations/eval")
    p.add_argument("--features", default="data/features")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--metrics", default="metrics/analysis")
    p.add_argument("--out", default="data/analysis")
    p.add_argument("--baselines-out", default="data/baselines")
    p.add_argument("--baselines-metrics", default="metrics/baselines")


def unembedding(params, hook, saes):
    """(W_dec, W_U, vocab) for models whose kind has a logit lens, else None."""
    from sae_workbench.kinds import model_kind

    if not model_kind(params.model).logit_lens:
        return None
    from sae_workbench.models import load_model
    from sae_workbench.sae.io import load_sae

    handle = load_model(params.model)
    sae, _ = load_sae(params.model, hook, saes)
    W_U = handle.model.W_U.detach().float().numpy()
    vocab = handle.tokenizer.batch_decode([[i] for i in range(W_U.shape[1])])
    return sae.W_dec.detach().float().numpy(), W_U, vocab


@stage(args)
def main(args, params):
    """Rankings, specialists with statistics, co-activation and feature cards of one hook."""
    table, acts = load_activation_set(args.acts, params.require_hook(args.hook))
    ft = load_features(Path(args.features) / f"{args.hook}.safetensors")
    if ft.n_rows != table.n_kept:
        raise ValueError(f"features of {args.hook} cover {ft.n_rows} tokens, activations {table.n_kept}: re-run dvc repro")
    rng = np.random.default_rng(params.seed)
    raw = acts.numpy()
    result = analyze_hook(ft, raw, table, params.analysis, rng, unembedding(params, args.hook, args.saes))
    base = hook_baselines(ft, raw, table, result.specialists, rng, params.analysis)
    metrics = result.metrics_json()
    write_json(Path(args.out) / f"{args.hook}.json", {**result.to_json(), "hook": args.hook})
    write_json(Path(args.metrics) / f"{args.hook}.json", metrics)
    write_json(Path(args.baselines_out) / f"{args.hook}.json", {**base.to_json(), "hook": args.hook})
    write_json(Path(args.baselines_metrics) / f"{args.hook}.json", base.metrics_json())
    save_directions(Path(args.baselines_out) / f"{args.hook}.safetensors", base.directions, args.hook)
    sig = [c for c, v in metrics["specialists"].items() if v["significant"]]
    print(f"analyze {args.hook}: L0/token {metrics['l0_per_token']:.1f}, significant held-out specialists "
          f"{len(sig)}/{len(metrics['specialists'])} {sig}, mean held-out AUROC {metrics['mean_heldout_auroc']:.3f}; "
          f"specialist vs DiffMean {base.verdicts()}")


if __name__ == "__main__":
    main()
