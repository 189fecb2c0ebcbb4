"""The random-model control: the same extraction, SAE training and specialist
statistics on a randomly initialised copy of the model (sae_workbench/control.py).

$ python stages/control.py
At control.hook, on the first control.corpus_texts corpus texts and all the
labelled texts. Writes metrics/control.json (the control's numbers beside the
trained model's at the same hook) and the control SAE to data/control/<hook>/.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from sae_workbench.cli import stage, write_json
from sae_workbench.config import CATEGORIES
from sae_workbench.control import ControlStudy, control_study
from sae_workbench.data import read_texts


def args(p):
    p.add_argument("--corpus", default="data/prepared/corpus.jsonl")
    p.add_argument("--texts", default="data/prepared/eval.jsonl")
    p.add_argument("--real-analysis", default="metrics/analysis")
    p.add_argument("--real-details", default="data/analysis")
    p.add_argument("--real-sae", default="metrics/sae")
    p.add_argument("--real-features", default="data/features")
    p.add_argument("--real-acts", default="data/activations/eval")
    p.add_argument("--out", default="data/control")
    p.add_argument("--metrics", default="metrics/control.json")


@stage(args)
def main(args, params):
    """Random-model control at control.hook."""
    hook = params.control.hook
    if not hook or params.model.sae_source != "custom":
        why = "control.hook is empty" if not hook else "the profile uses pre-trained SAEs (the control trains its own)"
        write_json(args.metrics, ControlStudy(hook=None, skipped=why).to_json())
        return
    m = control_study(params, read_texts(args.corpus), read_texts(args.texts), args.out, args.real_analysis, args.real_sae,
                      args.real_acts, args.real_features, args.real_details)
    write_json(args.metrics, m.to_json())
    n = len(CATEGORIES)
    print(f"control {hook}: random model {m.specialists_significant}/{n} significant specialists, mean held-out AUROC "
          f"{m.mean_heldout_auroc:.3f} (trained model: {m.real['specialists_significant']}/{n}, {m.real['mean_heldout_auroc']:.3f})")


if __name__ == "__main__":
    main()
