"""Does the steer.category specialist cause what it detects? Steering, ablation, attribution.

$ python stages/steer.py
Reads the specialists of steer.hook from data/analysis/<hook>.json, the SAE, the
evaluation texts, the features' firing frequencies (data/features/<hook>.safetensors)
and DiffMean's directions (data/baselines/<hook>.safetensors),
runs the study (sae_workbench/steer/study.py: what is measured and how) and writes
metrics/steer.json (headline numbers) and data/steer/results.json (everything).
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from pathlib import Path

from sae_workbench.analysis.baselines import load_directions
from sae_workbench.analysis.results import HookAnalysis
from sae_workbench.cli import read_json, stage, write_json
from sae_workbench.data import read_texts
from sae_workbench.kinds import model_kind
from sae_workbench.models import load_model
from sae_workbench.sae.io import load_sae
from sae_workbench.steer.study import steer_study, steering_for


def args(p):
    p.add_argument("--texts", default="data/prepared/eval.jsonl")
    p.add_argument("--analysis", default="data/analysis")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--features", default="data/features")
    p.add_argument("--baselines", default="data/baselines")
    p.add_argument("--metrics", default="metrics/steer.json")
    p.add_argument("--out", default="data/steer/results.json")


@stage(args)
def main(args, params):
    """Steer, ablate and attribute the steer.category specialist."""
    cfg = params.steer
    specs = HookAnalysis.from_json(read_json(Path(args.analysis) / f"{cfg.hook}.json")).specialists
    texts = read_texts(args.texts)
    if cfg.attribution_text and not any(t.id == cfg.attribution_text for t in texts):  # before minutes of work
        raise ValueError(f"steer.attribution_text {cfg.attribution_text!r} is not a text id in {args.texts} (params.yaml)")
    if cfg.category not in specs or not (specs[cfg.category].max_act or 0) > 0:
        raise ValueError(f"{args.analysis}/{cfg.hook}.json has no {cfg.category} specialist that fires: nothing to steer (re-run dvc repro)")
    kind = model_kind(params.model)
    directions = None
    if cfg.compare_methods and steering_for(kind).compares_methods:
        directions = load_directions(Path(args.baselines) / f"{cfg.hook}.safetensors")
    handle = load_model(params.model)
    sae, _ = load_sae(params.model, cfg.hook, args.saes)
    study = steer_study(handle, sae, specs, texts, cfg, kind,
                        Path(args.features) / f"{cfg.hook}.safetensors", params.seed, params.data.max_tokens,
                        params.analysis.n_bootstrap, params.analysis.alpha, directions)
    write_json(args.out, study.to_json())
    write_json(args.metrics, study.metrics_json())
    print(f"steer {cfg.hook} feature {study.feature} ({cfg.category}, {cfg.mode}): best coefficient {study.best_coefficient}, "
          f"specialist attribution rank {study.attribution_specialist_rank}")


if __name__ == "__main__":
    main()
