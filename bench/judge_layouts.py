"""Does the embedded judge find planted explanations, with the text before the explanation
(the explain stage's layout) or after it (the layout before), and what does each cost?

$ python bench/judge_layouts.py [--texts 10]

Each of the 7 categories' planted description (`explain.study.PLANTED`) is read by the
detection judge (the embedded Gemma 3 270M, `explain.llm.LocalLM`) with the first 30
words of `--texts` held-out labelled texts of every category. For 14 pairs (each
category against two others), the AUROC of the description on its category's texts
against the other's: 0.5 is chance. Layouts, in one run:
    text_first         HEAD + " text\\n" + "Explanation: E\\nAnswer:" (scoring.DETECTION_HEAD,
                       TEXT, TAIL): one grid, every text run once for all 7 descriptions
    explanation_first  the previous prompt: the same instructions and examples with the
                       explanation before the text ("Explanation: E\\nText: text\\nAnswer:"):
                       the head with E runs once per description, every text once per description
Writes bench/results/judge_layouts.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sae_workbench  # noqa: E402,F401  first: pins the numerics

import numpy as np  # noqa: E402

from machine import cpu_model  # noqa: E402  bench/machine.py

EXPLANATION_FIRST_HEAD = """A feature of a language model is described by an explanation. Answer Yes if the text contains what the explanation describes, and No if it does not.

Explanation: numbers written with digits
Text: The train leaves at 7:45 from platform 3.
Answer: Yes

Explanation: numbers written with digits
Text: She walked slowly along the quiet river.
Answer: No

Explanation: {explanation}
Text:"""
"""The detection prompt before the grid (commit 23fd0fb's scoring.DETECTION_PROMPT), split where the text goes."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "bench/results/judge_layouts.json"))
    args = p.parse_args()

    from sae_workbench.analysis.stats import auroc
    from sae_workbench.config import load_params
    from sae_workbench.data import read_texts
    from sae_workbench.explain import scoring
    from sae_workbench.explain.llm import LocalLM
    from sae_workbench.explain.study import PLANTED
    from sae_workbench.models import load_model

    import torch

    params = load_params(ROOT / "params.yaml")
    llm = LocalLM(load_model(params.profiles[params.explain.explainer]))
    cats = list(PLANTED)
    texts, label = [], []
    for c in cats:
        pool = [t for t in read_texts(ROOT / "data/texts/labelled.jsonl") if t.category == c and t.split == "heldout"][: args.texts]
        texts += [" ".join(t.text.split()[:30]) for t in pool]
        label += [c] * len(pool)
    label = np.array(label)
    grids, seconds = {}, {}
    t = time.perf_counter()
    grids["text_first"] = scoring.margins(llm, scoring.DETECTION_HEAD, texts, [PLANTED[c] for c in cats])
    seconds["text_first"] = time.perf_counter() - t
    t = time.perf_counter()
    cols = [llm.yes_no_grid(EXPLANATION_FIRST_HEAD.format(explanation=PLANTED[c]), [f" {x}\n" for x in texts], ["Answer:"]) for c in cats]
    grids["explanation_first"] = np.concatenate([np.asarray(g, dtype=float) for g in cols], axis=1)
    seconds["explanation_first"] = time.perf_counter() - t
    pairs = [(c, cats[(i + k) % len(cats)]) for i, c in enumerate(cats) for k in (2, 4)]
    out = {"layouts": {}}
    for name, g in grids.items():
        per = {f"{a} vs {b}": float(auroc(g[label == a, cats.index(a)], g[label == b, cats.index(a)])) for a, b in pairs}
        vs_rest = {c: float(auroc(g[label == c, j], g[label != c, j])) for j, c in enumerate(cats)}
        out["layouts"][name] = {"pairs": per, "pairs_mean": float(np.mean(list(per.values()))),
                                "pairs_at_least_0.75": int(sum(v >= 0.75 for v in per.values())),
                                "category_vs_rest": vs_rest, "category_vs_rest_mean": float(np.mean(list(vs_rest.values()))),
                                "seconds": round(seconds[name], 1)}
        print(f"{name}: pair AUROC mean {out['layouts'][name]['pairs_mean']:.3f} ({out['layouts'][name]['pairs_at_least_0.75']} of "
              f"{len(pairs)} >= 0.75), category vs rest mean {out['layouts'][name]['category_vs_rest_mean']:.3f}, {seconds[name]:.1f} s")
    out |= {"what": __doc__.split("\n\n")[0].strip(), "judge": llm.ident, "texts_per_category": args.texts, "n_texts": len(texts),
            "descriptions": PLANTED, "machine": {"cpu": cpu_model(), "python": platform.python_version(), "torch": torch.__version__,
                                                 "threads": torch.get_num_threads()},
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
