"""Train the SAEs of sae.seed_hooks with further seeds: headline metrics as mean
and spread, feature stability across seeds, and whether each specialist has a match
(the study: sae_workbench/analysis/seeds.py).

$ python stages/seeds.py                       # every hook of sae.seed_hooks
$ python stages/seeds.py --hook blocks.9.hook_resid_post
Seeds are `seed`, `seed + 1`, ... (`sae.seeds` in all); the first is the SAE of
the train_sae stage, read from data/saes and metrics/sae, the others are kept in
data/seeds/<hook>/seed_<s>/. Writes metrics/seeds.json ({hook: numbers}) and
data/seeds/<hook>/stability.json.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from pathlib import Path

from sae_workbench.analysis.seeds import seed_study
from sae_workbench.cli import stage, write_json


def args(p):
    p.add_argument("--hook", default=None, help="one hook (default: every hook of sae.seed_hooks)")
    p.add_argument("--acts", default="data/activations/corpus")
    p.add_argument("--eval", default="data/activations/eval")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--sae-metrics", default="metrics/sae")
    p.add_argument("--analysis", default="data/analysis")
    p.add_argument("--out", default="data/seeds")
    p.add_argument("--metrics", default="metrics/seeds.json")


@stage(args)
def main(args, params):
    """Train sae.seeds - 1 more SAEs of each seed hook and compare them with the first."""
    hooks = [params.require_hook(args.hook)] if args.hook else params.sae.seed_hooks
    if params.model.sae_source != "custom":  # pre-trained SAEs: one per hook, nothing to re-train
        hooks = []
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out) / "hooks.json", hooks)
    write_json(args.metrics, {h: seed_study(params, h, args.out, args.acts, args.eval, args.saes, args.sae_metrics,
                                            args.analysis).metrics_json() for h in hooks})


if __name__ == "__main__":
    main()
