"""Where the time of one steering request of the app goes (`app.workbench.Workbench.steer`,
a prompt's first run: steered and unsteered continuations of 20 tokens in one batch of 2).

$ python bench/steer_breakdown.py [--reps 7] [--threads 2]

Loads what `python -m sae_workbench serve` loads (the model, the SAE and analysis of
steer.hook, the judge), steers `--reps` prompts it has not seen, each once, and times
in the same run, by wrapping the functions the request calls:
    generation         greedy_continuation: 20 steps with the key-value cache
      unembedding      its per-step log_probs (final norm, x @ W_U over the 262k vocabulary, log-softmax)
      blocks           the rest of the steps: the 18 blocks for one new token per row, hooks, Python
    steered pass       the feature read back on prompt + continuation (blocks up to the hook)
    clean pass         the unsteered model on prompt + continuation (final_residual)
    nll                target_logprobs: 262k-vocabulary log-probabilities of the generated tokens
    rest               judge, SAE encodes, decoding, bookkeeping
and, as the floor of a generation step, the time to read the weights a step multiplies
by once (every block's matrices and W_U: sum() over each, 2 threads, the same run).
Writes bench/results/steer_breakdown.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sae_workbench  # noqa: E402,F401  first: pins the numerics

import torch  # noqa: E402

from machine import cpu_model  # noqa: E402  bench/machine.py

PROMPTS = ["The river behind the mill", "My favourite book", "In the morning the market", "The train to the city",
           "She opened the letter and", "Our garden in spring", "The last time I saw him", "On the radio they said",
           "The children ran down to", "At the top of the hill"]
"""As bench/app_latency.py's FIRST_RUN_PROMPTS: none is a steer.prompts prompt."""


class Timer:
    def __init__(self):
        self.t: dict[str, float] = {}

    def wrap(self, module, name: str, key: str):
        fn = getattr(module, name)

        def timed(*a, **k):
            s = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[key] = self.t.get(key, 0.0) + time.perf_counter() - s

        setattr(module, name, timed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default=str(ROOT / "params.yaml"))
    p.add_argument("--saes", default=str(ROOT / "data/saes"))
    p.add_argument("--analysis", default=str(ROOT / "data/analysis"))
    p.add_argument("--texts", default=str(ROOT / "data/texts/labelled.jsonl"))
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench/results/steer_breakdown.json"))
    args = p.parse_args()

    from sae_workbench.app.workbench import Workbench
    from sae_workbench.cli import seed_everything
    from sae_workbench.config import load_params
    import sae_workbench.steer.generation as G

    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    seed_everything(params.seed)
    hook = params.steer.hook
    wb = Workbench.load(params, args.saes, args.analysis, args.texts, [hook])
    feature = wb.info()["steer"]["feature"]
    model = wb.handle.model
    wb.steer(hook, feature, 2.0, "add", params.steer.prompts[0], 20)  # warm-up

    timer = Timer()
    in_generation = {"on": False}
    lp = G.log_probs

    def log_probs(m, x):
        s = time.perf_counter()
        try:
            return lp(m, x)
        finally:
            if in_generation["on"]:
                timer.t["unembedding"] = timer.t.get("unembedding", 0.0) + time.perf_counter() - s

    G.log_probs = log_probs
    gc = G.greedy_continuation

    def greedy(*a, **k):
        in_generation["on"] = True
        s = time.perf_counter()
        try:
            return gc(*a, **k)
        finally:
            in_generation["on"] = False
            timer.t["generation"] = timer.t.get("generation", 0.0) + time.perf_counter() - s

    G.greedy_continuation = greedy
    timer.wrap(G, "final_residual", "clean pass")
    timer.wrap(G, "target_logprobs", "nll")
    run = model.run_with_hooks

    def steered_pass(*a, **k):  # the only direct call of steer_generation with stop_at_layer below the last block
        s = time.perf_counter()
        try:
            return run(*a, **k)
        finally:
            if not in_generation["on"] and k.get("stop_at_layer") is not None and k["stop_at_layer"] < wb.handle.n_layers:
                timer.t["steered pass"] = timer.t.get("steered pass", 0.0) + time.perf_counter() - s

    model.run_with_hooks = steered_pass

    runs = []
    for i in range(args.reps):
        timer.t = {}
        s = time.perf_counter()
        wb.steer(hook, feature, 2.0, "add", PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)), 20)
        total = time.perf_counter() - s
        t = dict(timer.t)
        t["blocks"] = t["generation"] - t.get("unembedding", 0.0)
        t["rest"] = total - t["generation"] - t.get("steered pass", 0.0) - t.get("clean pass", 0.0) - t.get("nll", 0.0)
        runs.append({"total": total, **t})

    # the floor: reading each weight a generation step multiplies by, once
    blocks = [p for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() >= 2]
    w_u = model.W_U.detach()
    with torch.no_grad():
        for _ in range(2):
            s = time.perf_counter()
            for w in blocks:
                w.sum()
            read_blocks = time.perf_counter() - s
            s = time.perf_counter()
            w_u.sum()
            read_wu = time.perf_counter() - s
    mb = lambda ts: round(sum(t.numel() * t.element_size() for t in ts) / 1e6, 1)  # noqa: E731
    keys = ["total", "generation", "unembedding", "blocks", "steered pass", "clean pass", "nll", "rest"]
    med = {k: round(1000 * statistics.median(r.get(k, 0.0) for r in runs), 1) for k in keys}
    steps = 20
    out = {
        "what": "one steering request of the app, a prompt's first run (steered + unsteered, 20 new tokens, batch of 2), "
                "timed by part in one process; medians over the runs (ms)",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "cpu": cpu_model(), "cpus_visible": os.cpu_count(),
        "threads": args.threads, "torch": version("torch"), "python": platform.python_version(), "hook": hook, "feature": feature,
        "load_average": list(os.getloadavg()), "median_ms": med,
        "per_step_ms": {"unembedding": round(med["unembedding"] / steps, 1), "blocks": round(med["blocks"] / steps, 1)},
        "weights_read_once_ms": {"blocks": round(1000 * read_blocks, 1), "W_U": round(1000 * read_wu, 1)},
        "weights_mb": {"blocks": mb(blocks), "W_U": mb([w_u])},
        "runs_ms": [{k: round(1000 * v, 1) for k, v in r.items()} for r in runs],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("median_ms", "per_step_ms", "weights_read_once_ms", "weights_mb")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
