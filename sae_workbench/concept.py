"""Concept search: which SAE features stand for what a handful of examples share?

    python -m sae_workbench.concept --hook blocks.5.hook_resid_pre "def f(x):" "import numpy as np"
    python -m sae_workbench.concept --hook blocks.5.hook_resid_pre --category math

The examples (texts given on the command line, or the labelled texts of one
category) are encoded with the hook's SAE and ranked against the labelled
evaluation texts (minus the examples) by `analysis.hook.concept_search`: mean
strongest activation in the examples minus the same mean in the rest.
Needs a finished `dvc repro` (activations, SAEs and features on disk).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .activations import load_token_table
from .analysis.hook import concept_search
from .extraction import token_activations
from .cli import stage, write_json
from .features import load_features
from .viz import neuronpedia_url


def example_strength(params, hook: str, texts: list[str], saes: str) -> tuple[np.ndarray, str | None]:
    """[n_examples, d_sae]: each feature's strongest activation on each example text."""
    from .models import load_model
    from .sae.io import load_sae

    if not texts:
        raise ValueError("give at least one example text (or --category)")
    handle = load_model(params.model)
    handle.check_hooks([hook])
    sae, np_id = load_sae(params.model, hook, saes)
    toks = [handle.tokenize(t, params.data.max_tokens) for t in texts]
    per_text = token_activations(handle, toks, [hook], params.data.batch_size, desc="concept")[hook]
    with torch.no_grad():
        rows = [sae.encode(a.to(sae.W_enc.dtype)).float().amax(0) if len(a) else torch.zeros(sae.cfg.d_sae) for a in per_text]
    return torch.stack(rows).clamp(min=0).numpy(), np_id


def args(p):
    p.add_argument("--hook", required=True)
    p.add_argument("texts", nargs="*", help="example texts sharing the concept")
    p.add_argument("--category", help="use the labelled texts of this category as the examples instead")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--acts", default="data/activations/eval")
    p.add_argument("--features", default="data/features")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--json", help="also write the ranking to this JSON file")


@stage(args)
def main(args, params):
    """Rank the hook's SAE features for example texts against the labelled evaluation texts."""
    hook = params.require_hook(args.hook)
    table = load_token_table(args.acts)
    ft = load_features(Path(args.features) / f"{hook}.safetensors")
    ref = ft.per_text_max(table.text_index, len(table.texts))
    if args.category:
        inside = np.array([t["category"] == args.category for t in table.texts])
        if not inside.any():
            raise ValueError(f"no labelled texts of category {args.category!r}")
        examples, rest, np_id = ref[inside], ref[~inside], ft.neuronpedia
    else:
        examples, np_id = example_strength(params, hook, args.texts, args.saes)
        given = {t.strip() for t in args.texts}
        rest = ref[[t["text"].strip() not in given for t in table.texts]]
    ranked = concept_search(examples, rest, args.top)
    print(f"concept search at {hook}: {len(examples)} example(s) against {len(rest)} labelled texts")
    print(f"{'feature':>8} {'score':>8} {'in ex.':>8} {'in rest':>8} {'fires':>6}  link")
    for r in ranked:
        url = neuronpedia_url(np_id, r["feature"]) or ""
        print(f"{r['feature']:>8} {r['score']:>8.3f} {r['mean_in_examples']:>8.3f} {r['mean_in_rest']:>8.3f} {r['fires_in_examples']:>6.2f}  {url}")
    if args.json:
        write_json(args.json, {"hook": hook, "examples": args.texts or args.category, "ranking": ranked})


if __name__ == "__main__":
    main()
