"""The static feature browser of one hook: a page for every alive feature.

$ python stages/browser.py --hook blocks.9.hook_resid_post
Reads the evaluation texts' tokens, the hook's features, SAE and analysis, the
further seeds' SAEs (sae.seed_hooks) and the explain stage's explanations
(explain.hook); writes report/browser/<hook>/ (sae_workbench/browser: open
index.html from disk; the render stage copies it next to the report).
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from tqdm import tqdm

from sae_workbench.browser import build_browser, read_index
from sae_workbench.cli import stage


def args(p):
    p.add_argument("--hook", required=True)
    p.add_argument("--acts", default="data/activations/eval")
    p.add_argument("--features", default="data/features")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--analysis", default="data/analysis")
    p.add_argument("--seeds", default="data/seeds")
    p.add_argument("--explain", default="data/explain/results.json")
    p.add_argument("--out", default="report/browser")


@stage(args)
def main(args, params):
    """Write report/browser/<hook>/."""
    hook = params.require_hook(args.hook)
    site = build_browser(params, hook, acts=args.acts, features=args.features, saes=args.saes, analysis=args.analysis,
                         seeds=args.seeds, explain=args.explain, out=args.out,
                         progress=lambda xs: tqdm(xs, desc=f"browser {hook}", unit="feature", mininterval=5))
    meta, rows = read_index(site)
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    print(f"browser {hook}: {len(rows)} of {meta['d_sae']} features have a page, {size / 1e6:.1f} MB in {site}")


if __name__ == "__main__":
    main()
