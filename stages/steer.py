"""Does the steer.category specialist cause what it detects? Steering, ablation, attribution.

$ python stages/steer.py
Reads the specialists of steer.hook from data/analysis/<hook>.json, the SAE, the
evaluation texts and the features' firing frequencies (data/features/<hook>.safetensors).
Definitions of every measure: sae_workbench/causal_lm.py (causal LMs), sae_workbench/encoder.py
(encoders), sae_workbench/steering.py (ablation, attribution); the profile's kind (sae_workbench/kinds.py) picks.
- steering sweep of steer.coefficients (x the feature's max activation) in
  steer.mode (and the other mode too if steer.both_modes);
- ablation of every category's specialist and of a frequency-matched random control;
- act x grad attribution of one text's output metric to the SAE features.
Writes metrics/steer.json (headline numbers) and data/steer/results.json (everything).
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sae_workbench.cli import read_json, stage, write_json
from sae_workbench.config import CATEGORIES
from sae_workbench.data import read_texts
from sae_workbench.features import load_features
from sae_workbench.interventions import MODES, slope
from sae_workbench.kinds import model_kind
from sae_workbench.models import load_model
from sae_workbench.sae.io import load_sae
from sae_workbench.steering import ablation_roles, ablation_study, ablation_subsets, feature_attribution


def args(p):
    p.add_argument("--texts", default="data/prepared/eval.jsonl")
    p.add_argument("--analysis", default="data/analysis")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--features", default="data/features")
    p.add_argument("--metrics", default="metrics/steer.json")
    p.add_argument("--out", default="data/steer/results.json")


def rounded(obj, nd=6):
    """Floats rounded to nd decimals, recursively (stable, readable JSON)."""
    if isinstance(obj, float):
        return round(obj, nd)
    if isinstance(obj, dict):
        return {k: rounded(v, nd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, nd) for v in obj]
    return obj


@stage(args)
def main(args, params):
    """Steer, ablate and attribute the steer.category specialist."""
    cfg = params.steer
    kind = model_kind(params.model)
    specs = read_json(Path(args.analysis) / f"{cfg.hook}.json")["specialists"]
    if cfg.category not in specs:
        raise ValueError(f"data/analysis/{cfg.hook}.json has no {cfg.category} specialist: re-run dvc repro")
    feature, max_act = int(specs[cfg.category]["feature"]), float(specs[cfg.category]["max_act"])
    if max_act <= 0:
        raise ValueError(f"the {cfg.category} specialist at {cfg.hook} never fires on the evaluation texts: nothing to steer")
    handle = load_model(params.model)
    sae, _ = load_sae(params.model, cfg.hook, args.saes)
    texts = read_texts(args.texts)
    coefs = sorted(cfg.coefficients)
    modes = [cfg.mode] + ([m for m in MODES if m != cfg.mode] if cfg.both_modes else [])
    result = {"hook": cfg.hook, "category": cfg.category, "feature": feature, "max_act": max_act, "mode": cfg.mode, "coefficients": coefs}
    metrics = {"feature": feature, "mode": cfg.mode}

    # steering, as the model's kind does it (generation or embedding drift)
    ctx = kind.steering_context(handle, texts, cfg, params.data.max_tokens)
    tok, held = ctx.tokenize, ctx.held
    sweeps = {m: kind.sweep(handle, sae, feature, cfg.hook, max_act, coefs, ctx, cfg.category, m, cfg)
              for m in tqdm(modes, desc=f"steer {cfg.category} feature {feature}", unit="mode")}
    g = sweeps[cfg.mode]
    res_fields, met_fields = kind.headline(g, coefs, ctx, cfg.category, cfg)
    result.update(res_fields)
    metrics.update(met_fields)
    result.update(best_coefficient=g.best_coefficient, best_rule=g.best_rule, sweeps={m: asdict(s) for m, s in sweeps.items()})
    metrics["best_coefficient"] = g.best_coefficient

    def judged(r):
        """Slope of the independent classifier's P(category) over coefficients, where the kind has one."""
        probs = getattr(r, "classifier_prob", None)
        return {"classifier_slope": slope(coefs, probs)} if probs and not any(np.isnan(probs)) else {}

    # one curve per feature: every other category's specialist, towards its own category
    if cfg.all_specialists:
        per_feature = {}
        for c in tqdm(CATEGORIES, desc="steer every specialist", unit="feature"):
            f, m = int(specs[c]["feature"]), float(specs[c]["max_act"])
            if c == cfg.category or m <= 0:
                continue
            r = kind.sweep(handle, sae, f, cfg.hook, m, coefs, ctx, c, cfg.mode, cfg)
            per_feature[c] = {"feature": f, "max_act": m, "significant": specs[c].get("significant"), **asdict(r)}
            metrics.setdefault("per_feature", {})[c] = {"feature": f, "slope": slope(coefs, kind.curve(r, c)), **judged(r), "best_coefficient": r.best_coefficient}
        per_feature[cfg.category] = {"feature": feature, "max_act": max_act, "significant": specs[cfg.category].get("significant"), **asdict(g)}
        own = kind.curve(g, cfg.category)
        metrics.setdefault("per_feature", {})[cfg.category] = {"feature": feature, "slope": slope(coefs, own), **judged(g), "best_coefficient": g.best_coefficient}
        result["per_feature"] = {c: per_feature[c] for c in CATEGORIES if c in per_feature}
        metrics["per_feature"] = {c: metrics["per_feature"][c] for c in CATEGORIES if c in metrics["per_feature"]}

    # ablation: every specialist of the hook, and a frequency-matched random control
    labels = [t.category for t in held]
    if cfg.ablation:
        ft = load_features(Path(args.features) / f"{cfg.hook}.safetensors")
        if ft.d_sae != int(sae.cfg.d_sae):
            raise ValueError(f"data/features/{cfg.hook}.safetensors has d_sae {ft.d_sae} but the SAE has {sae.cfg.d_sae}: re-run dvc repro")
        freq = np.bincount(ft.feature, minlength=ft.d_sae) / max(1, ft.n_rows)
        rng = np.random.default_rng(params.seed)
        chosen = {c: int(specs[c]["feature"]) for c in CATEGORIES if c in specs}
        roles = ablation_roles(chosen, freq, rng, cfg.control_candidates)
        scores = kind.ablation_scores(handle, [tok(t) for t in held], labels, ctx)
        abl = ablation_study(scores, sae, cfg.hook, roles, labels, accuracy=kind.ablation_accuracy,
                             subsets=ablation_subsets(labels, cfg.ablation_texts))
        for c, r in abl.items():
            for role in r.values():
                role["frequency"] = float(freq[role["feature"]])
            r["specialist"]["significant"] = specs[c].get("significant")
        result["ablation"] = {"score": kind.ablation_score, "drop": "mean over the category's scored held-out texts of score(clean) - score(ablated)",
                              "texts_per_category": cfg.ablation_texts,
                              "texts": [t.id for t in held], "categories": abl}
        metrics["ablation"] = {c: {"specialist_drop": r["specialist"]["drop"], "control_drop": r["control"]["drop"]} for c, r in abl.items()}

    # attribution
    pick = cfg.attribution_text or next((t.id for t in held if t.category == cfg.category), "")
    text = next((t for t in texts if t.id == pick), None)
    if text is None:
        raise ValueError(f"steer.attribution_text {pick!r} is not a text id in {args.texts}")
    metric, metric_name = kind.attribution_metric(ctx, text.category)
    att = feature_attribution(handle, sae, cfg.hook, tok(text), metric, cfg.attribution_top, 3, (feature,))
    att.update(text_id=text.id, category=text.category, text=text.text, metric_name=metric_name)
    result["attribution"] = att
    metrics["attribution_specialist_rank"] = next(p["rank"] for p in att["per_token"] if p["feature"] == feature)

    write_json(args.out, rounded(result))
    write_json(args.metrics, rounded(metrics))
    print(f"steer {cfg.hook} feature {feature} ({cfg.category}, {cfg.mode}): best coefficient {g.best_coefficient}, "
          f"specialist attribution rank {metrics['attribution_specialist_rank']}")


if __name__ == "__main__":
    main()
