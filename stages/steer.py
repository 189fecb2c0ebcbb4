"""Amplify and suppress one category specialist and measure the effect.

$ python stages/steer.py
Reads the specialist of steer.category at steer.hook from data/analysis/<hook>.json.
MiniLM: cosine of pooled sentence embeddings to each category centroid vs
coefficient. GPT-2: greedy continuations and the feature's activation vs coefficient.
"""

from pathlib import Path

import numpy as np
import torch

from sae_workbench.cli import read_json, stage, write_json
from sae_workbench.config import CATEGORIES
from sae_workbench.data import read_texts
from sae_workbench.models import load_model
from sae_workbench.sae import load_sae
from sae_workbench.steering import slope, steer_generation, steer_sentence_embeddings


def args(p):
    p.add_argument("--texts", default="data/prepared/eval.jsonl")
    p.add_argument("--analysis", default="data/analysis")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--metrics", default="metrics/steer.json")
    p.add_argument("--out", default="data/steer/results.json")


@stage(args)
def main(args, params):
    """Steer the specialist feature over params' coefficients."""
    cfg = params.steer
    details = read_json(Path(args.analysis) / f"{cfg.hook}.json")
    spec = details["specialists"][cfg.category]
    feature = int(spec["feature"])
    max_act = float(spec["max_act"])
    if max_act <= 0:
        raise ValueError(f"the {cfg.category} specialist at {cfg.hook} never fires on the evaluation texts: nothing to steer")
    handle = load_model(params.model)
    sae, _ = load_sae(params.model, cfg.hook, args.saes)
    direction = sae.W_dec[feature].detach().float()
    coefs = sorted(cfg.coefficients)
    result = {"hook": cfg.hook, "category": cfg.category, "feature": feature, "max_act": max_act, "coefficients": coefs}
    if params.model.has_lm_head:
        prompts = []
        for p in cfg.prompts:
            tt = handle.tokenize(p, params.data.max_tokens)
            prompts.append(torch.tensor([tt.ids]))
        rows = steer_generation(handle, sae, feature, cfg.hook, max_act, coefs, prompts, cfg.max_new_tokens)
        per_coef = [float(np.mean([r["feature_activation"] for r in rows if r["coefficient"] == c])) for c in coefs]
        result["generations"] = rows
        result["feature_activation"] = per_coef
        metrics = {
            "feature": feature,
            "feature_activation": {str(c): round(v, 6) for c, v in zip(coefs, per_coef)},
            "activation_slope": round(slope(coefs, per_coef), 6),
        }
    else:
        texts = read_texts(args.texts)
        toks = {c: [handle.tokenize(t.text, params.data.max_tokens) for t in texts if t.category == c and t.split == "train"] for c in CATEGORIES}
        held = [t for t in texts if t.split == "heldout" and t.category != cfg.category][: cfg.n_texts]
        steered = [handle.tokenize(t.text, params.data.max_tokens) for t in held]
        r = steer_sentence_embeddings(handle, cfg.hook, direction, max_act, coefs, toks, steered, cfg.category)
        result.update(similarity=r.similarity, nearest_target_frac=r.nearest_target_frac, drift=r.drift, steered_texts=[t.id for t in held])
        target = r.similarity[cfg.category]
        metrics = {
            "feature": feature,
            "target_similarity": {str(c): round(v, 6) for c, v in zip(coefs, target)},
            "target_similarity_slope": round(slope(coefs, target), 6),
            "nearest_target_frac": {str(c): round(v, 6) for c, v in zip(coefs, r.nearest_target_frac)},
            "drift_at_max_coef": round(r.drift[-1], 6),
        }
    write_json(args.out, result)
    write_json(args.metrics, metrics)
    print(f"steer {cfg.hook} feature {feature} ({cfg.category}): {metrics}")


if __name__ == "__main__":
    main()
