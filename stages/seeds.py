"""Train the SAEs of sae.seed_hooks with further seeds: headline metrics as mean
and spread, feature stability across seeds, and whether each specialist has a match.

$ python stages/seeds.py                       # every hook of sae.seed_hooks
$ python stages/seeds.py --hook blocks.9.hook_resid_post
Seeds are `seed`, `seed + 1`, ... (`sae.seeds` in all); the first is the SAE of
the train_sae stage, read from data/saes and metrics/sae, the others are trained
here exactly as train_sae trains (same activations, held-out texts and config;
the seed changes the initialisation and the order of training tokens) and kept
in data/seeds/<hook>/seed_<s>/. Definitions: sae_workbench/analysis/stats.py.
Writes metrics/seeds.json ({hook: numbers}) and data/seeds/<hook>/stability.json.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

import json
from pathlib import Path

import numpy as np

from sae_workbench.activations import load_activation_set
from sae_workbench.analysis.results import HookAnalysis
from sae_workbench.analysis.stats import STABLE_COSINE, auroc, best_match, mean_and_spread, pair_stability, unit_decoder
from sae_workbench.cli import read_json, stage, write_json
from sae_workbench.config import CATEGORIES
from sae_workbench.features import encode_sparse
from sae_workbench.kinds import model_kind
from sae_workbench.models import load_model
from sae_workbench.sae.io import load_sae, save_for_saelens
from sae_workbench.sae.metrics import reconstruction_metrics
from sae_workbench.sae.train import split_activation_set, train_on_split

HEADLINE = ("explained_variance", "l0", "dead_frac")


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
    write_json(args.metrics, {h: seed_study(args, params, h) for h in hooks})


def seed_study(args, params, hook: str) -> dict:
    """Train the hook's extra seeds; write data/seeds/<hook>/stability.json; return its metrics."""
    seeds = [params.seed + i for i in range(params.sae.seeds)]
    split = split_activation_set(args.acts, hook, params.sae.eval_frac, params.seed)
    x_eval = split.x_eval
    first = read_json(Path(args.sae_metrics) / f"{hook}.json")
    specs = HookAnalysis.from_json(read_json(Path(args.analysis) / f"{hook}.json")).specialists
    eval_table, eval_acts = load_activation_set(args.eval, hook)
    labels = np.array([t["category"] for t in eval_table.texts])
    heldout = np.array([t["split"] == "heldout" for t in eval_table.texts])
    kind, handle = model_kind(params.model), None

    saes, per_seed = {}, {}
    for s in seeds:
        if s == params.seed:
            sae, _ = load_sae(params.model, hook, args.saes)
            m = dict(first)
        else:
            result = train_on_split(split, params.sae, s, desc=f"seeds {hook} seed {s}")
            save_for_saelens(result.sae, result.scale, Path(args.out) / hook / f"seed_{s}" / hook, hook, params.model.name)
            sae, _ = load_sae(params.model, hook, Path(args.out) / hook / f"seed_{s}")
            r = reconstruction_metrics(sae, x_eval)
            m = {"explained_variance": r["explained_variance"], "l0": r["l0"], "dead_frac": result.dead_frac}
            if params.sae.fidelity_texts:
                handle = handle or load_model(params.model)
                toks = [handle.tokenize(t, params.data.max_tokens) for t in split.held_texts(params.sae.fidelity_texts)]
                m["fidelity"] = kind.fidelity(handle, sae, hook, toks)
        saes[s] = sae
        alive = np.zeros(int(sae.cfg.d_sae), dtype=bool)
        alive[np.unique(encode_sparse(sae, x_eval).feature)] = True
        ft = encode_sparse(sae, eval_acts)
        per_seed[s] = {"metrics": m, "alive": alive, "strength": ft.per_text_max(eval_table.text_index, len(eval_table.texts))}

    headline = {k: mean_and_spread([per_seed[s]["metrics"][k] for s in seeds]) for k in HEADLINE}
    fid_key = kind.fidelity_metric
    if all(fid_key in (per_seed[s]["metrics"].get("fidelity") or {}) for s in seeds):
        headline[fid_key] = mean_and_spread([per_seed[s]["metrics"]["fidelity"][fid_key] for s in seeds])

    units = {s: unit_decoder(saes[s]) for s in seeds}
    pairs = [{"from": a, "to": b, **pair_stability(units[a], units[b], per_seed[a]["alive"])} for a in seeds for b in seeds if a != b]
    stability = {
        "threshold": STABLE_COSINE,
        "frac_stable": mean_and_spread([p["frac_stable"] for p in pairs]),
        "median_best_cosine": mean_and_spread([p["median_best_cosine"] for p in pairs]),
        "pairs": pairs,
    }

    specialists = {}
    base = params.seed
    for c in CATEGORIES:
        if c not in specs:
            continue
        f = specs[c].feature
        own, other = heldout & (labels == c), heldout & (labels != c)
        matches = []
        for s in seeds:
            if s == base:
                continue
            cos, idx = best_match(units[base][f : f + 1], units[s])
            j, st = int(idx[0]), per_seed[s]["strength"]
            matches.append({"seed": s, "feature": j, "cosine": float(cos[0]), "matched": bool(cos[0] >= STABLE_COSINE),
                            "heldout_auroc": auroc(st[own, j], st[other, j])})
        specialists[c] = {"feature": f, "significant": specs[c].significant, "heldout_auroc": specs[c].heldout_auroc,
                          "matched_in": sum(m["matched"] for m in matches), "other_seeds": len(matches), "matches": matches}

    metrics = {
        "hook": hook,
        "seeds": seeds,
        "headline": headline,
        "stability": {k: v for k, v in stability.items() if k != "pairs"},
        "specialists_matched_in_every_seed": sum(v["matched_in"] == v["other_seeds"] for v in specialists.values()),
        "specialists": {c: {k: v[k] for k in ("feature", "matched_in", "other_seeds")} for c, v in specialists.items()},
    }
    write_json(Path(args.out) / hook / "stability.json", json.loads(json.dumps(
        {"pairs": pairs, "specialists": specialists, "per_seed": {str(s): per_seed[s]["metrics"] for s in seeds}}, default=float)))
    print(f"seeds {hook}: EV {headline['explained_variance']['mean']:.4f} ± {headline['explained_variance']['std']:.4f}, "
          f"stable features {stability['frac_stable']['mean']:.3f}, specialists matched in every seed "
          f"{metrics['specialists_matched_in_every_seed']}/{len(specialists)}")
    return metrics


if __name__ == "__main__":
    main()
