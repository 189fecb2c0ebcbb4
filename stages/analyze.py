"""Per-hook feature analysis of the evaluation texts.

$ python stages/analyze.py --hook blocks.3.hook_resid_pre
Numbers for `dvc metrics` go to metrics/analysis/<hook>.json; rankings,
specialists and figures' inputs to data/analysis/<hook>.json.
"""

from pathlib import Path

from sae_workbench.activations import load_activation_set
from sae_workbench.analysis import analyze_hook
from sae_workbench.cli import stage, write_json
from sae_workbench.features import load_features


def args(p):
    p.add_argument("--hook", required=True)
    p.add_argument("--acts", default="data/activations/eval")
    p.add_argument("--features", default="data/features")
    p.add_argument("--metrics", default="metrics/analysis")
    p.add_argument("--out", default="data/analysis")


@stage(args)
def main(args, params):
    """Strongest / most frequent / most selective / composite features and category specialists."""
    table, acts = load_activation_set(args.acts, params.require_hook(args.hook))
    raw = acts.numpy()
    ft = load_features(Path(args.features) / f"{args.hook}.safetensors")
    if ft.n_rows != table.n_kept:
        raise ValueError(f"features of {args.hook} cover {ft.n_rows} tokens, activations {table.n_kept}: re-run dvc repro")
    metrics, details = analyze_hook(
        ft, raw, table.text_index, table.texts, params.analysis.top_k, params.analysis.min_active_tokens
    )
    details["hook"] = args.hook
    write_json(Path(args.out) / f"{args.hook}.json", details)
    write_json(Path(args.metrics) / f"{args.hook}.json", metrics)
    spec = {c: round(v["heldout_score"], 3) for c, v in metrics["specialists"].items()}
    print(f"analyze {args.hook}: L0/token {metrics['l0_per_token']:.1f}, held-out specialist scores {spec}")


if __name__ == "__main__":
    main()
