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
from sae_workbench.data import read_texts
from sae_workbench.validate import check_pipeline

PASSED = "params.yaml and the labelled texts passed stages/check.py\n"


def args(p):
    p.add_argument("--labelled", default="data/texts/labelled.jsonl")
    p.add_argument("--out", default="data/checked.txt")


@stage(args)
def main(args, params):
    """Validate params (the stage wrapper's load_params), then what they ask of the machine
    and the data (validate.check_pipeline: registries, offline source sizes, the model's
    config, the device, the labelled texts and the ids params.yaml names)."""
    for note in check_pipeline(params, read_texts(args.labelled), args.labelled):
        print(f"note: {note}")
    write_text(args.out, PASSED)


if __name__ == "__main__":
    main()
