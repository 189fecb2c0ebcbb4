"""Train (custom) or fetch (pre-trained) the SAE of one hook, and measure it.

$ python stages/train_sae.py --hook blocks.3.hook_resid_pre
$ torchrun --nproc_per_node 2 stages/train_sae.py --hook blocks.3.hook_resid_pre   # data-parallel
Metrics on held-out corpus texts go to metrics/sae/<hook>.json, the training
curve to metrics/sae_curves/<hook>.csv, the SAE (SAELens format) to
data/saes/<hook>/. An interrupted run resumes from data/checkpoints/<hook>.pt.
Under torchrun every process trains (sae/distributed.py); process 0 writes.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

import csv
import io
from pathlib import Path


from sae_workbench.cli import stage, write_json
from sae_workbench.atomic import write_text
from sae_workbench.kinds import model_kind
from sae_workbench.measure import measure_sae
from sae_workbench.models import load_model
from sae_workbench.sae.io import load_sae, save_for_saelens
from sae_workbench.sae.distributed import world
from sae_workbench.sae.train import resolve_device, split_activation_set, train_on_split

CURVE_FIELDS = ["step", "tokens", "mse", "aux", "l0", "dead_frac", "lr"]


def args(p):
    p.add_argument("--hook", required=True)
    p.add_argument("--acts", default="data/activations/corpus")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--checkpoints", default="data/checkpoints")
    p.add_argument("--metrics", default="metrics/sae")
    p.add_argument("--curves", default="metrics/sae_curves")


@stage(args)
def main(args, params):
    """Train or fetch the hook's SAE; write its metrics."""
    hook = params.require_hook(args.hook)
    split = split_activation_set(args.acts, hook, params.sae.eval_frac, params.seed)
    out = Path(args.saes) / hook
    curve, dead, extra = [], None, {}
    w = world(resolve_device(params.sae.device))
    result = None
    if params.model.sae_source == "custom":
        result = train_on_split(split, params.sae, params.seed, desc=f"train_sae {hook}",
                                checkpoint=Path(args.checkpoints) / f"{hook}.pt")
    if not w.main:  # torchrun: process 0 writes and measures
        return
    if result is not None:
        save_for_saelens(result.sae, result.scale, out, hook, params.model.name)
        curve, dead = result.curve, result.dead_frac
        extra = {"architecture": params.sae.architecture, "train_tokens": split.train_tokens, "steps": result.steps}
    else:
        out.mkdir(parents=True, exist_ok=True)
        release, sae_id = params.model.pretrained_sae(hook)
        write_json(out / "release.json", {"release": release, "sae_id": sae_id})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_FIELDS)
    w.writeheader()
    w.writerows(curve)
    write_text(Path(args.curves) / f"{hook}.csv", buf.getvalue())

    sae, _ = load_sae(params.model, hook, args.saes)  # through SAELens, as every later stage sees it
    n_fid = params.sae.fidelity_texts
    handle = load_model(params.model) if n_fid else None
    measured = measure_sae(sae, split.x_eval, hook, handle, model_kind(params.model), split.held_texts(n_fid) if n_fid else [],
                           params.data.max_tokens)
    metrics = measured.metrics(params.model.sae_source, dead, **extra).to_json()
    write_json(Path(args.metrics) / f"{hook}.json", metrics)
    print(f"train_sae {hook}: {metrics}")


if __name__ == "__main__":
    main()
