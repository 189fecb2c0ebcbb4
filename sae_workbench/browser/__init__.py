"""The feature browser: a static page for every alive feature of a hook
(`pages`: what each page shows; `site`: the files), written by the browser stage
next to the report and opened from local disk.

    build_browser(params, hook, ...) -> the site's directory
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..activations import load_token_table
from ..analysis.results import HookAnalysis
from ..cli import read_json
from ..features import load_features
from ..viz.markup import neuronpedia_url
from .pages import FeaturePage, IndexRow, feature_pages, logit_effects
from .site import read_index, read_page, write_site

__all__ = ["build_browser", "FeaturePage", "IndexRow", "read_index", "read_page"]


def _explanations(path: Path, hook: str) -> dict[int, dict]:
    from ..explain.study import SCORERS, ExplainStudy

    if not path.exists():
        return {}
    study = ExplainStudy.read(path)
    if study.hook != hook:
        return {}
    def auroc(f, s):  # as the study stores it: None where it could not be computed (JSON has no NaN)
        v = f.scores[s]["explanation"]["auroc"]
        return None if v is None else round(v, 3)

    return {f.feature: {"text": f.explanation, "scores": {s: auroc(f, s) for s in SCORERS if s in f.scores}}
            for f in study.features}


def _seed_decoders(params, hook: str, seeds_dir: Path) -> dict[int, np.ndarray]:
    from ..sae.io import load_sae

    if hook not in params.sae.seed_hooks:
        return {}
    out = {}
    for s in range(params.seed + 1, params.seed + params.sae.seeds):
        d = seeds_dir / hook / f"seed_{s}"
        if (d / hook / "cfg.json").exists():
            sae, _ = load_sae(params.model, hook, d)
            out[s] = sae.W_dec.detach().float().numpy()
    return out


def build_browser(params, hook: str, *, acts: str | Path, features: str | Path, saes: str | Path,
                  analysis: str | Path, seeds: str | Path, explain: str | Path, out: str | Path, progress=None) -> Path:
    """Compute every alive feature's page of `hook` from the pipeline's outputs and write the site to <out>/<hook>."""
    from ..kinds import model_kind
    from ..sae.io import load_sae

    table = load_token_table(acts)
    ft = load_features(Path(features) / f"{hook}.safetensors")
    if ft.n_rows != table.n_kept:
        raise ValueError(f"features of {hook} cover {ft.n_rows} tokens, the evaluation texts {table.n_kept}: re-run dvc repro")
    sae, _ = load_sae(params.model, hook, saes)
    W_dec = sae.W_dec.detach().float().numpy()
    logits = None
    if model_kind(params.model).logit_lens:
        from ..models import load_model

        handle = load_model(params.model)
        W_U = handle.model.W_U.detach().float()
        logits = logit_effects(W_dec, W_U, lambda ids: handle.tokenizer.batch_decode([[i] for i in ids]))
    spec = HookAnalysis.from_json(read_json(Path(analysis) / f"{hook}.json")).specialists
    rng = np.random.default_rng(params.seed)
    pages, index = feature_pages(
        ft, table, W_dec, rng, logits=logits, seeds=_seed_decoders(params, hook, Path(seeds)),
        specialists={c: s.feature for c, s in spec.items()}, explanations=_explanations(Path(explain), hook),
        neuronpedia_url=(lambda f: neuronpedia_url(ft.neuronpedia, f)) if ft.neuronpedia else None, progress=progress)
    meta = {"model": params.model.name, "sae_source": params.model.sae_source, "d_sae": ft.d_sae, "n_tokens": ft.n_rows,
            "n_texts": len(table.texts)}
    return write_site(out, hook, pages, index, table.texts, meta)
