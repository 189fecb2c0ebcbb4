"""Custom SAEs against the profile's pre-trained release, on the same tokens.

$ python stages/pretrained.py
For every hook the release covers (Gemma 3 270M: Gemma Scope 2's residual-stream
and MLP-out SAEs), loads the pre-trained SAE through SAELens and measures it
exactly as train_sae measured ours: explained variance, L0 and dead share on the
same held-out corpus tokens, and the kind's fidelity (CE-loss recovered and KL
for a causal LM) on the same texts. Writes metrics/pretrained.json: per hook the
two sets of numbers side by side, or, where the release cannot be loaded (no
internet here, no release for the profile), `available: false` and the reason in
one line. Nothing is invented: an absent SAE has no numbers.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

import dataclasses
from pathlib import Path


from sae_workbench.cli import stage, write_json
from sae_workbench.kinds import model_kind
from sae_workbench.measure import PretrainedComparison, SAEMetrics, measure_sae
from sae_workbench.models import load_model
from sae_workbench.offline import ModelUnavailable
from sae_workbench.sae.io import load_sae
from sae_workbench.sae.train import split_activation_set

KEYS = ("explained_variance", "l0", "dead_frac")


def args(p):
    p.add_argument("--acts", default="data/activations/corpus")
    p.add_argument("--sae-metrics", default="metrics/sae")
    p.add_argument("--metrics", default="metrics/pretrained.json")


@stage(args)
def main(args, params):
    """Side-by-side metrics of the custom and the pre-trained SAE of each covered hook."""
    if not params.model.sae_release:
        why = f"the {params.model_key} profile names no pre-trained SAE release (profiles.{params.model_key}.sae_release)"
        write_json(args.metrics, PretrainedComparison(None, None, {h: {"available": False, "reason": why} for h in params.hooks},
                                                      False, why).to_json())
        print(f"pretrained: {why}")
        return
    profile = dataclasses.replace(params.model, sae_source="pretrained")
    out = {"release": profile.sae_release, "sae_id": profile.sae_id, "hooks": {}}
    covered = []
    for h in params.hooks:
        try:
            covered.append((h, *profile.pretrained_sae(h)))
        except ValueError as e:
            out["hooks"][h] = {"available": False, "reason": str(e)}
    handle, unreachable = None, {}
    for h, release, sae_id in covered:
        custom = SAEMetrics.read(Path(args.sae_metrics) / f"{h}.json")
        row = {"release": release, "sae_id": sae_id, "custom": {k: getattr(custom, k) for k in KEYS} | {"fidelity": custom.fidelity}}
        if release not in unreachable:
            try:
                sae, neuronpedia = load_sae(profile, h, "unused")
            except ModelUnavailable:  # offline: the same for every SAE of the release
                unreachable[release] = (f"SAELens release {release!r} is downloaded from the Hugging Face hub, which is unreachable here, "
                                        "and is not in the local cache; with internet access this stage measures it")
        if release in unreachable:
            out["hooks"][h] = {**row, "available": False, "reason": unreachable[release]}
            continue
        split = split_activation_set(args.acts, h, params.sae.eval_frac, params.seed)
        n_fid = params.sae.fidelity_texts
        if n_fid:
            handle = handle or load_model(params.model)
        measured = measure_sae(sae, split.x_eval, h, handle, model_kind(params.model), split.held_texts(n_fid) if n_fid else [],
                               params.data.max_tokens)
        m = measured.reconstruction
        pre = {"explained_variance": m["explained_variance"], "l0": m["l0"], "never_fired_frac": m["never_fired_frac"], "d_sae": measured.d_sae}
        if n_fid:
            pre["fidelity"] = measured.fidelity
        out["hooks"][h] = {**row, "available": True, "neuronpedia": neuronpedia, "pretrained": pre}
    out["available"] = any(v.get("available") for v in out["hooks"].values())
    write_json(args.metrics, PretrainedComparison(**out).to_json())
    shown = "; ".join(unreachable.values()) or ", ".join(f"{h}: {v['pretrained']['explained_variance']:.3f} vs {v['custom']['explained_variance']:.3f} EV"
                                for h, v in out["hooks"].items() if v.get("available"))
    print(f"pretrained: {shown or 'no release covers these hooks'}")


if __name__ == "__main__":
    main()
