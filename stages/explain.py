"""Explain the specialists and a sample of other features of explain.hook, and score the explanations.

$ python stages/explain.py
Reads the evaluation texts' tokens (data/activations/eval/tokens.json), the hook's
features (data/features/<hook>.safetensors) and specialists (data/analysis/<hook>.json);
the explainer and judge are explain.endpoint or the embedded explain.explainer
(sae_workbench/explain/llm.py: answers cached under the workbench cache), the
embedding scorer all-MiniLM-L6-v2. Each other model of cross_model.profiles is
explained alike at its matched hook (explain.n_random_models sampled features beside its
specialists), from what the cross_model stage kept of its labelled texts
(data/cross_model/<profile>/labelled/). Writes data/explain/results.json (every
explanation, its examples and scores: sae_workbench/explain/study.py) and
metrics/explain.json (means and tests per scorer, per model).
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from dataclasses import replace
from pathlib import Path

import numpy as np

from sae_workbench.activations import load_token_table
from sae_workbench.analysis.results import HookAnalysis, load_labelled
from sae_workbench.cli import read_json, stage, write_json
from sae_workbench.config import matched_hook
from sae_workbench.explain.llm import make_llm
from sae_workbench.explain.study import ExplainStudy, explain_study
from sae_workbench.features import load_features

EMBEDDER = "minilm"
"""The profile whose pooled sentence embeddings the embedding scorer compares."""


def args(p):
    p.add_argument("--acts", default="data/activations/eval")
    p.add_argument("--features", default="data/features")
    p.add_argument("--analysis", default="data/analysis")
    p.add_argument("--cross-model", default="data/cross_model", help="the cross_model stage's runs (other models' labelled features)")
    p.add_argument("--out", default="data/explain/results.json")
    p.add_argument("--metrics", default="metrics/explain.json")


def embedder(params):
    from sae_workbench.kinds.encoder import pooled_embeddings
    from sae_workbench.models import load_model

    if EMBEDDER not in params.profiles:
        raise ValueError(f"params.yaml has no profile {EMBEDDER!r}: the embedding scorer needs all-MiniLM-L6-v2")
    handle = load_model(params.profiles[EMBEDDER])
    return lambda texts: pooled_embeddings(handle, [handle.tokenize(t, 128) for t in texts]).numpy()


def other_models(params, hook: str) -> list[tuple[str, str]]:
    """(profile, matched hook) of each other model explained: those of cross_model.profiles when
    the cross-model study sits at explain.hook and explain.n_random_models > 0."""
    cm = params.cross_model
    if not params.explain.n_random_models or cm.hook != hook or params.model.sae_source != "custom":
        return []
    return [(name, matched_hook(hook, params.model.n_layers, params.profiles[name].n_layers)) for name in cm.profiles]


@stage(args)
def main(args, params):
    """Explanations of one hook's features, scored against controls."""
    cfg = params.explain
    if not cfg.hook:
        study = ExplainStudy(hook="", explainer="", features=[], summary={}, settings={"skipped": "explain.hook is ''"})
    else:
        hook = params.require_hook(cfg.hook)
        table = load_token_table(args.acts)
        ft = load_features(Path(args.features) / f"{hook}.safetensors")
        if ft.n_rows != table.n_kept:
            raise ValueError(f"features of {hook} cover {ft.n_rows} tokens, the token table {table.n_kept}: re-run dvc repro")
        specs = HookAnalysis.from_json(read_json(Path(args.analysis) / f"{hook}.json")).specialists
        llm = make_llm(cfg, params.profiles)
        embed = embedder(params)
        a = params.analysis
        study = explain_study(ft, table, specs, llm, embed, cfg, np.random.default_rng(params.seed), hook, a.n_bootstrap, a.alpha)
        other = replace(cfg, n_random=cfg.n_random_models)
        for name, other_hook in other_models(params, hook):
            o_table, o_ft, o_specs = load_labelled(Path(args.cross_model) / name, other_hook)
            study.models[name] = explain_study(o_ft, o_table, o_specs, llm, embed, other, np.random.default_rng(params.seed),
                                               other_hook, a.n_bootstrap, a.alpha, check=False)
    write_json(args.out, study.to_json())
    write_json(args.metrics, study.metrics_json())
    cache = f"; {llm.hits} of {llm.calls} answers from the cache ({llm.path})" if cfg.hook else ""
    for name, m in [(cfg.hook or "(skipped)", study), *((f"{k} {m.hook}", m) for k, m in study.models.items())]:
        det = m.summary.get("detection", {}).get("mean", {})
        print(f"explain {name}: {len(m.features)} features; detection AUROC " + ", ".join(f"{c} {v['mean']:.3f}" for c, v in det.items())
              + (cache if m is study else ""))


if __name__ == "__main__":
    main()
