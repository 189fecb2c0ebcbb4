"""How fast the embedded judge reads its grid (`explain.llm.LocalLM.yes_no_grid`): texts per
batch, and the tails of a batch run one by one or all in one forward.

$ python bench/judge_grid.py [--texts 40] [--reps 2]

The grid the explain stage asks per feature: `--texts` contexts (the first 30 words of
held-out labelled texts, every category in turn) read by the detection judge with three
explanations (three planted descriptions, `explain.study.PLANTED`). Ways, in one run, each
timed best of `--reps` after a warm-up:
    batch_8, batch_16, batch_32   yes_no_grid as committed, grid_batch texts a batch: each
                                  batch's texts run once, then each tail over them in turn
    tails_together_16             16 texts a batch, then all tails in one forward (the
                                  batch's key-value cache repeated once per tail, tails
                                  right-padded): fewer, larger forward passes
and each way's largest difference from batch_8's margins (log P(Yes) - log P(No)).
Writes bench/results/judge_grid.json.
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

from machine import cpu_model, memory_read_gb_s  # noqa: E402  bench/machine.py


def tails_together(llm, head: str, texts: list[str], tails: list[str], batch: int) -> list[list[float]]:
    """The grid with each batch's tails in one forward pass (tried; not what the stage runs)."""
    import torch

    from sae_workbench.explain.llm import _repeated
    from sae_workbench.kinds.causal_lm import token_logits
    from sae_workbench.models import pad_batch

    tok, model, n = llm.handle.tokenizer, llm.handle.model, llm.handle.n_layers
    tail_ids = [tok.encode(t, add_special_tokens=False) for t in tails]
    base, _ = llm._head(head)
    text_ids = [tok.encode(t, add_special_tokens=False) or [llm.handle.pad_id] for t in texts]
    out = [[0.0] * len(tails) for _ in texts]
    k = len(tails)
    order = sorted(range(len(texts)), key=lambda i: (len(text_ids[i]), i))
    with torch.no_grad():
        for b in range(0, len(order), batch):
            rows = order[b : b + batch]
            ids, mask = pad_batch([text_ids[i] for i in rows], llm.handle.pad_id)
            cache = _repeated(base, len(rows), frozen=False)
            model.run_with_hooks(ids, attention_mask=mask, past_kv_cache=cache, stop_at_layer=n)
            for e in cache.entries:
                e.past_keys, e.past_values = e.past_keys.repeat_interleave(k, 0), e.past_values.repeat_interleave(k, 0)
            cache.previous_attention_mask = cache.previous_attention_mask.repeat_interleave(k, 0)
            cache.freeze()
            tids, tmask = pad_batch([t for _ in rows for t in tail_ids], llm.handle.pad_id)
            resid = model.run_with_hooks(tids, attention_mask=tmask, past_kv_cache=cache, stop_at_layer=n)
            yn = token_logits(model, resid[torch.arange(len(tids)), tmask.sum(1) - 1], [llm.yes, llm.no])
            for r, i in enumerate(rows):
                for j in range(k):
                    out[i][j] = float(yn[r * k + j, 0] - yn[r * k + j, 1])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=40)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench/results/judge_grid.json"))
    args = p.parse_args()

    import torch

    from sae_workbench.config import load_params
    from sae_workbench.data import read_texts
    from sae_workbench.explain import scoring
    from sae_workbench.explain.llm import LocalLM
    from sae_workbench.explain.study import PLANTED
    from sae_workbench.models import load_model

    params = load_params(ROOT / "params.yaml")
    llm = LocalLM(load_model(params.profiles[params.explain.explainer]))
    held = [t for t in read_texts(ROOT / "data/texts/labelled.jsonl") if t.split == "heldout"]
    cats = list(PLANTED)
    by = {c: [t for t in held if t.category == c] for c in cats}
    picked = [by[cats[i % len(cats)]][i // len(cats)] for i in range(args.texts)]
    texts = [scoring.TEXT.format(text=" ".join(t.text.split()[:30])) for t in picked]
    tails = [scoring.TAIL.format(explanation=PLANTED[c]) for c in cats[:3]]
    head = scoring.DETECTION_HEAD

    def committed(batch):
        def run():
            llm.grid_batch = batch
            return llm.yes_no_grid(head, texts, tails)
        return run

    ways = {"batch_8": committed(8), "batch_16": committed(16), "batch_32": committed(32),
            "tails_together_16": lambda: tails_together(llm, head, texts, tails, 16)}
    committed(8)()  # warm-up: the head's cache, the packed weights
    bandwidth = memory_read_gb_s()
    out = {"ways": {}}
    ref = None
    for name, fn in ways.items():
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            g = np.asarray(fn(), dtype=float)
            times.append(time.perf_counter() - t)
        ref = g if ref is None else ref
        out["ways"][name] = {"seconds_best": round(min(times), 2), "seconds": [round(x, 2) for x in times],
                             "max_abs_diff_vs_batch_8": float(np.abs(g - ref).max())}
        print(f"{name}: {min(times):.2f} s (best of {args.reps}), max |diff| vs batch_8 {np.abs(g - ref).max():.2e}")
    out |= {"what": __doc__.split("\n\n")[0].strip(), "judge": llm.ident, "n_texts": len(texts), "n_tails": len(tails),
            "machine": {"cpu": cpu_model(), "python": platform.python_version(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "memory_read_gb_s_before": bandwidth},
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
