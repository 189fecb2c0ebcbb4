"""Check params.yaml and the labelled texts before any other stage runs.

$ python stages/check.py
DVC deletes a stage's outputs just before running it, so a bad value caught
inside a stage would cost that stage's previous outputs. Every stage depends on
this one's output, so `dvc repro` runs it first and stops here, with one line
naming the bad key or text, before anything is deleted. Its output is the same
bytes whenever the check passes: a params edit re-runs only what the edited
keys feed, never everything.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from sae_workbench.atomic import write_text
from sae_workbench.cli import stage
from sae_workbench.data import read_texts, validate_labelled
from sae_workbench.kinds import model_kind
from sae_workbench.sae.train import architecture_builder

PASSED = "params.yaml and the labelled texts passed stages/check.py\n"


def args(p):
    p.add_argument("--labelled", default="data/texts/labelled.jsonl")
    p.add_argument("--out", default="data/checked.txt")


@stage(args)
def main(args, params):
    """Validate params (the stage wrapper's load_params, then the names its registries
    hold: model kinds, SAE architectures) and the labelled texts."""
    model_kind(params.model)
    architecture_builder(params.sae.architecture)
    validate_labelled(read_texts(args.labelled))
    write_text(args.out, PASSED)


if __name__ == "__main__":
    main()
