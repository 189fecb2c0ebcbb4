"""What buys an SAE fidelity on this model: ΔCE and KL against training passes, width, k and architecture.

$ python bench/fidelity_sweep.py                                   # the default sweep on blocks.9.hook_resid_post
$ python bench/fidelity_sweep.py --hook blocks.5.hook_resid_post --only base,epochs12
$ python bench/fidelity_sweep.py --out bench/results/fidelity_sweep/blocks.9.hook_resid_post.json

Each run trains one SAE on the pipeline's own activations (data/activations/corpus,
the train split of `sae.eval_frac`), exactly as `stages/train_sae.py` does
(`train_on_split` with params.yaml's `sae` section and one run's overrides), saves it
in SAELens format and loads it back, then measures it as that stage does
(`measure.measure_sae`): explained variance, L0 and dead fraction on the held-out
tokens, and next-token CE and KL with the SAE spliced in at the hook on
`--fidelity-texts` held-out texts (the same texts for every run).
ΔCE = ce_sae - ce_clean in nats per token (SAEBench's headline beside CE-loss recovered).

"Tokens seen" counts passes over the same training tokens (epochs), not new text.
Every run is appended to the JSON as it finishes (a stopped sweep keeps what it measured);
a sweep started again on the same hook and texts keeps the runs already there and skips them.
"""

import sae_workbench  # noqa: F401  first: pins the numerics (determinism.py)

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from machine import cpu_model  # bench/machine.py
from sae_workbench.config import load_params
from sae_workbench.kinds import model_kind
from sae_workbench.measure import measure_sae
from sae_workbench.models import load_model
from sae_workbench.sae.io import load_sae, save_for_saelens
from sae_workbench.sae.train import split_activation_set, train_on_split

SWEEP_BASE = {"normalize": "norm"}
"""What every run starts from besides params.yaml's sae section: the single-scalar input
normalisation (the default until this sweep measured per_dim), so `base` stays the
reference the other runs change one thing of, whatever params.yaml now says."""

RUNS = {
    # name: overrides of params.yaml's sae section (after SWEEP_BASE)
    "base": {},
    "epochs12": {"epochs": 12},
    "batchtopk": {"architecture": "batchtopk"},
    "batchtopk_epochs12": {"architecture": "batchtopk", "epochs": 12},
    "width8x": {"expansion": 8},
    "k128": {"k": 128},
    "revive": {"dead_window_tokens": 20000, "aux_coefficient": 0.125},
    "epochs48": {"epochs": 48},
    "per_dim": {"normalize": "per_dim"},
    "per_dim_epochs12": {"normalize": "per_dim", "epochs": 12},
    "per_dim_batchtopk": {"normalize": "per_dim", "architecture": "batchtopk"},
}

NOT_TRAINING = {"device", "seeds", "seed_hooks", "checkpoint_every", "fidelity_texts"}
"""sae settings that do not change a run's SAE or its measures here (a sweep resumes across them)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--hook", default="blocks.9.hook_resid_post")
    ap.add_argument("--acts", default="data/activations/corpus")
    ap.add_argument("--only", default=",".join(RUNS), help=f"comma-separated runs of: {', '.join(RUNS)}")
    ap.add_argument("--fidelity-texts", type=int, default=32)
    ap.add_argument("--out", default="bench/results/fidelity_sweep/{hook}.json", help="JSON written ({hook}: the hook's name)")
    a = ap.parse_args()
    a.out = a.out.format(hook=a.hook)
    names = [n for n in a.only.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        sys.exit(f"error: unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    params = load_params(a.params)
    hook = params.require_hook(a.hook)
    split = split_activation_set(a.acts, hook, params.sae.eval_frac, params.seed)
    handle = load_model(params.model)
    kind = model_kind(params.model)
    texts = split.held_texts(a.fidelity_texts)
    out = {
        "what": "SAE fidelity vs training passes, width, k and architecture on one hook: each run trained and measured as "
                "stages/train_sae.py does; delta_ce = ce_sae - ce_clean (nats/token) on the same held-out texts",
        "machine": {"cpu": cpu_model(), "cpus_visible": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "hook": hook, "model": params.model.name, "train_tokens": split.train_tokens,
        "fidelity_texts": a.fidelity_texts, "base_config": dataclasses.asdict(dataclasses.replace(params.sae, **SWEEP_BASE)), "runs": [],
    }
    if Path(a.out).exists():
        old = json.loads(Path(a.out).read_text())
        same = lambda c: {k: v for k, v in c.items() if k not in NOT_TRAINING}  # noqa: E731
        if ((old.get("hook"), old.get("fidelity_texts"), old.get("train_tokens")) == (hook, a.fidelity_texts, split.train_tokens)
                and same(old.get("base_config", {})) == same(out["base_config"])):
            out["runs"] = [r for r in old["runs"] if r["run"] in RUNS and r["overrides"] == RUNS[r["run"]]]
    for name in names:
        if any(r["run"] == name for r in out["runs"]):
            print(f"{name}: already measured in {a.out}", flush=True)
            continue
        cfg = dataclasses.replace(params.sae, **{**SWEEP_BASE, **RUNS[name]})
        t = time.perf_counter()
        result = train_on_split(split, cfg, params.seed, desc=f"{name}")
        train_s = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            save_for_saelens(result.sae, result.scale, Path(tmp) / hook, hook, params.model.name)
            sae, _ = load_sae(params.model, hook, tmp)
            t = time.perf_counter()
            m = measure_sae(sae, split.x_eval, hook, handle, kind, texts, params.data.max_tokens)
        metrics = m.metrics("custom", result.dead_frac).to_json()
        fid = metrics["fidelity"]
        row = {"run": name, "overrides": RUNS[name], "epochs": cfg.epochs, "tokens_seen": split.train_tokens * cfg.epochs,
               "d_sae": metrics["d_sae"], "architecture": cfg.architecture, "k": cfg.k, "l0": metrics["l0"],
               "explained_variance": metrics["explained_variance"], "dead_frac": metrics["dead_frac"],
               "ce_clean": fid["ce_clean"], "ce_sae": fid["ce_sae"], "delta_ce": round(fid["ce_sae"] - fid["ce_clean"], 6),
               "kl": fid["kl_sae"], "ce_loss_recovered": fid["ce_loss_recovered"], "train_seconds": round(train_s, 1),
               "measure_seconds": round(time.perf_counter() - t, 1), "train_tokens_per_s": round(result.tokens_per_s)}
        out["runs"].append(row)
        print(f"{name}: ΔCE {row['delta_ce']:.3f} nats, KL {row['kl']:.3f}, EV {row['explained_variance']:.3f}, "
              f"L0 {row['l0']:.1f}, dead {row['dead_frac']:.1%} ({train_s:.0f} s training)", flush=True)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
