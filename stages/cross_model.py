"""The same questions on other models: extraction, SAE training, specialist
statistics and DiffMean on each profile of cross_model.profiles at the hook of
matched relative depth (sae_workbench/cross_model.py).

$ python stages/cross_model.py
Writes metrics/cross_model.json (a row per model: the chosen one at
cross_model.hook, each other profile, the random-weight control; the chosen
model's specialists against each other's, paired on the shared held-out texts)
and each other model's SAE to data/cross_model/<profile>/<hook>/.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from sae_workbench.cli import stage, write_json
from sae_workbench.cross_model import CrossModelStudy, cross_model_study
from sae_workbench.data import read_texts


def args(p):
    p.add_argument("--corpus", default="data/prepared/corpus.jsonl")
    p.add_argument("--texts", default="data/prepared/eval.jsonl")
    p.add_argument("--real-analysis", default="metrics/analysis")
    p.add_argument("--real-details", default="data/analysis")
    p.add_argument("--real-sae", default="metrics/sae")
    p.add_argument("--real-baselines", default="data/baselines")
    p.add_argument("--real-acts", default="data/activations/eval")
    p.add_argument("--real-features", default="data/features")
    p.add_argument("--control", default="metrics/control.json")
    p.add_argument("--out", default="data/cross_model")
    p.add_argument("--metrics", default="metrics/cross_model.json")


@stage(args)
def main(args, params):
    """The cross-model study at cross_model.hook."""
    cfg = params.cross_model
    if not cfg.hook or not cfg.profiles or params.model.sae_source != "custom":
        why = ("cross_model.hook is empty" if not cfg.hook else "cross_model.profiles is empty" if not cfg.profiles
               else "the profile uses pre-trained SAEs (the study trains its own)")
        write_json(args.metrics, CrossModelStudy(hook=None, skipped=why).to_json())
        return
    m = cross_model_study(params, read_texts(args.corpus), read_texts(args.texts), args.out, args.real_analysis, args.real_details,
                          args.real_sae, args.real_baselines, args.real_acts, args.real_features, args.control)
    write_json(args.metrics, m.to_json())
    for r in m.row_objects():
        print(f"cross_model {r.profile} {r.hook}: {r.specialists_significant}/7 significant specialists, mean held-out AUROC "
              f"{r.mean_heldout_auroc}, vs DiffMean {r.specialist_vs_diffmean}, dead {r.dead_frac}")


if __name__ == "__main__":
    main()
