"""Speed cost of the pinned numerics (sae_workbench/determinism.py), measured side by side.

$ python bench/determinism_cost.py [--reps 4] [--texts-every 3] [--steps 10]

Runs the determinism probe (extraction of labelled texts at every hook after one
warm-up pass; then SAE training steps with the params.yaml SAE config on CPU) in
fresh processes, in turn: pinned (the model's GEMMs on oneDNN under its AVX2 cap,
models.linear); "pinned, GEMMs on MKL COMPATIBLE" (SAE_WORKBENCH_MKL_GEMM=1: the
pinning as it was before, MKL's one vendor-neutral CNR branch); unpinned
(SAE_WORKBENCH_UNPINNED=1: torch's defaults, MKL AUTO); and, to apportion the cost,
"pinned but MKL AUTO" (the pinned environment with MKL's CNR branch left to MKL,
set before start with the pinning itself switched off: not machine-independent).
Writes best and median timings and every run to bench/results/determinism_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_model  # bench/machine.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sae_workbench import determinism  # noqa: E402  (pins this process; the probes get their own environment)

PROBE = "from sae_workbench.determinism_probe import main; main()"


def run(mode: str, texts: Path, out: Path, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in determinism.ENV and k != determinism.OPT_OUT}
    env["HF_HUB_OFFLINE"] = "1"
    if mode == "unpinned":
        env[determinism.OPT_OUT] = "1"
    elif mode == "pinned, GEMMs on MKL COMPATIBLE":
        env[determinism.MKL_GEMM] = "1"
    elif mode == "pinned but MKL AUTO":
        env.update({k: v for k, v in determinism.ENV.items() if k != "MKL_CBWR"}, **{determinism.OPT_OUT: "1"})
    r = subprocess.run(
        [sys.executable, "-c", PROBE, "--probe", str(texts), "--out", str(out), "--steps", str(steps), "--warmup"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--texts-every", type=int, default=3, help="every n-th labelled text")
    p.add_argument("--steps", type=int, default=10, help="SAE training steps per run")
    p.add_argument("--out", default=str(ROOT / "bench/results/determinism_cost.json"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lines = (ROOT / "data/texts/labelled.jsonl").read_text(encoding="utf-8").splitlines()
        texts = tmp / "texts.jsonl"
        texts.write_text("\n".join(lines[:: a.texts_every]) + "\n", encoding="utf-8")
        modes = ("pinned", "pinned, GEMMs on MKL COMPATIBLE", "unpinned", "pinned but MKL AUTO")
        runs = {m: [] for m in modes}
        for rep in range(a.reps):
            for mode in modes[rep % len(modes):] + modes[: rep % len(modes)]:  # each mode first in turn
                r = run(mode, texts, tmp / f"{mode}{rep}", a.steps)
                runs[mode].append({k: r[k] for k in ("extract_tokens_per_s", "train_step_s", "tokens", "train_batch_tokens")}
                                  | {"effective": r["effective"]})
                print(f"{mode:31s} rep {rep}: extract {r['extract_tokens_per_s']:.0f} tok/s, "
                      f"SAE step {r['train_step_s'] * 1000:.0f} ms", flush=True)

    # the machine may be shared: the best run of each mode is the least disturbed one
    def stat(mode, key, f):
        return f(x[key] for x in runs[mode])

    summary = {
        mode: {
            "extract_tokens_per_s": {"best": round(stat(mode, "extract_tokens_per_s", max), 1),
                                     "median": round(stat(mode, "extract_tokens_per_s", statistics.median), 1)},
            "sae_step_ms": {"best": round(1000 * stat(mode, "train_step_s", min), 1),
                            "median": round(1000 * stat(mode, "train_step_s", statistics.median), 1)},
        }
        for mode in runs
    }
    for mode in modes[0], modes[1], modes[3]:
        summary[f"{mode} / unpinned, time"] = {
            f"{what}, {s}": round(r, 2)
            for s in ("best", "median")
            for what, r in (
                ("extract", summary["unpinned"]["extract_tokens_per_s"][s] / summary[mode]["extract_tokens_per_s"][s]),
                ("sae_step", summary[mode]["sae_step_ms"][s] / summary["unpinned"]["sae_step_ms"][s]),
            )
        }
    result = {
        "what": "determinism probe: extraction at every params.yaml hook (after a warm-up pass) and SAE training "
                "steps (params.yaml sae config, CPU); best and median over reps, modes in turn",
        "cpu": cpu_model(),
        "cpus_visible": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": __import__("torch").__version__,
        "pinned_env": determinism.ENV,
        "pinned_threads": determinism.THREADS,
        "reps": a.reps,
        "texts": len(lines[:: a.texts_every]),
        "tokens": runs["pinned"][0]["tokens"],
        "sae_steps": a.steps,
        "sae_batch_tokens": runs["pinned"][0]["train_batch_tokens"],
        "summary": summary,
        "runs": runs,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
