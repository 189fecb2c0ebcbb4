"""Seed stability: the SAEs of sae.seed_hooks trained again with further seeds
(`seed + 1`, ...; `sae.seeds` in all), exactly as train_sae trains (same
activations, held-out texts and config; the seed changes the initialisation
and the order of training tokens). Headline metrics as mean and spread over
seeds, the share of features whose decoder direction has a best match of
cosine >= STABLE_COSINE in another seed, and whether each specialist has such
a match and its held-out AUROC there. Definitions: `analysis.stats`.

    study = seed_study(params, hook, "data/seeds")       # stages/seeds.py
    study.metrics_json()                                 # the hook's entry of metrics/seeds.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..activations import load_activation_set
from ..cli import read_json, write_json
from ..config import CATEGORIES, Params
from ..features import encode_sparse
from ..kinds import model_kind
from ..measure import SAEMetrics, measure_sae
from ..models import load_model
from ..sae.io import load_sae, save_for_saelens
from ..sae.train import split_activation_set, train_on_split
from .results import HookAnalysis, SeedStudy
from .stats import STABLE_COSINE, auroc, best_match, mean_and_spread, pair_stability, unit_decoder

HEADLINE = ("explained_variance", "l0", "dead_frac")
"""Metrics reported as mean and spread over seeds (and the kind's fidelity)."""


def seed_study(params: Params, hook: str, out_dir: str | Path, acts: str | Path = "data/activations/corpus",
               eval_acts: str | Path = "data/activations/eval", sae_dir: str | Path = "data/saes",
               sae_metrics: str | Path = "metrics/sae", analysis: str | Path = "data/analysis") -> SeedStudy:
    """Train the hook's extra seeds into out_dir/<hook>/seed_<s>/; write
    out_dir/<hook>/stability.json (its details_json); return the SeedStudy, whose
    metrics_json() is the hook's entry of metrics/seeds.json (module docstring). The other arguments: where the pipeline's corpus and
    labelled-text activations, SAEs, SAE metrics and analyses are."""
    seeds = [params.seed + i for i in range(params.sae.seeds)]
    split = split_activation_set(acts, hook, params.sae.eval_frac, params.seed)
    x_eval = split.x_eval
    first = SAEMetrics.read(Path(sae_metrics) / f"{hook}.json")
    specs = HookAnalysis.from_json(read_json(Path(analysis) / f"{hook}.json")).specialists
    eval_table, eval_x = load_activation_set(eval_acts, hook)
    labels = np.array([t["category"] for t in eval_table.texts])
    heldout = np.array([t["split"] == "heldout" for t in eval_table.texts])
    kind, handle = model_kind(params.model), None

    saes, per_seed = {}, {}
    for s in seeds:
        if s == params.seed:
            sae, _ = load_sae(params.model, hook, sae_dir)
            m = first.to_json()
        else:
            result = train_on_split(split, params.sae, s, desc=f"seeds {hook} seed {s}")
            save_for_saelens(result.sae, result.scale, Path(out_dir) / hook / f"seed_{s}" / hook, hook, params.model.name)
            sae, _ = load_sae(params.model, hook, Path(out_dir) / hook / f"seed_{s}")
            n_fid = params.sae.fidelity_texts
            if n_fid:
                handle = handle or load_model(params.model)
            measured = measure_sae(sae, x_eval, hook, handle, kind, split.held_texts(n_fid) if n_fid else [], params.data.max_tokens)
            r = measured.reconstruction
            m = {"explained_variance": r["explained_variance"], "l0": r["l0"], "dead_frac": result.dead_frac}
            if n_fid:
                m["fidelity"] = measured.fidelity
        saes[s] = sae
        alive = np.zeros(int(sae.cfg.d_sae), dtype=bool)
        alive[np.unique(encode_sparse(sae, x_eval).feature)] = True
        ft = encode_sparse(sae, eval_x)
        per_seed[s] = {"metrics": m, "alive": alive, "strength": ft.per_text_max(eval_table.text_index, len(eval_table.texts))}

    headline = {k: mean_and_spread([per_seed[s]["metrics"][k] for s in seeds]) for k in HEADLINE}
    # every kind's fidelity dict has "fidelity" (its headline number); the headline names it as the kind does
    if all("fidelity" in (per_seed[s]["metrics"].get("fidelity") or {}) for s in seeds):
        headline[kind.fidelity_metric] = mean_and_spread([per_seed[s]["metrics"]["fidelity"]["fidelity"] for s in seeds])

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

    study = SeedStudy(hook=hook, seeds=seeds, headline=headline, stability={k: v for k, v in stability.items() if k != "pairs"},
                      pairs=pairs, specialists=specialists, per_seed={str(s): per_seed[s]["metrics"] for s in seeds})
    write_json(Path(out_dir) / hook / "stability.json", study.details_json())
    print(f"seeds {hook}: EV {headline['explained_variance']['mean']:.4f} ± {headline['explained_variance']['std']:.4f}, "
          f"stable features {stability['frac_stable']['mean']:.3f}, specialists matched in every seed "
          f"{study.matched_in_every_seed}/{len(specialists)}")
    return study
