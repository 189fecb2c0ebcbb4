"""L0 vs explained-variance frontier from a `dvc exp run` sweep, one curve per architecture.

$ dvc exp run --queue -S sae.architecture=topk -S 'sae.k=range(16,80,16)'    # etc., see README
$ dvc queue start && dvc queue status                                       # wait
$ python bench/frontier.py [--out bench]

Reads every experiment (and the workspace) from `dvc exp show --json`, takes
each hook's L0 and explained variance from metrics/sae/<hook>.json and the
architecture, k, L1 coefficient and width from its params, and writes
frontier.csv and frontier.html (plotly, offline) under --out. Points are
grouped per architecture, hook and epoch count; each curve joins that
group's points in order of L0.
"""

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import plotly.graph_objects as go

from sae_workbench.viz import figure_html, plotly_js_once


def flat_params(entry: dict) -> dict:
    return (entry.get("params") or {}).get("params.yaml", {}).get("data", {})


def rows_from_exp_show(data: list) -> list[dict]:
    rows = []
    for rev in data:
        runs = [rev] + [e for exp in (rev.get("experiments") or []) for e in (exp.get("revs") or [])]
        for run in runs:
            d = run.get("data") or {}
            p = flat_params(d)
            sae = p.get("sae", {})
            for path, m in (d.get("metrics") or {}).items():
                if not path.startswith("metrics/sae/") or "data" not in m:
                    continue
                md = m["data"]
                arch = md.get("architecture", sae.get("architecture"))
                if "l0" not in md or md.get("source") != "custom" or arch is None:
                    continue  # pre-trained SAEs, or runs from before architectures were recorded
                rows.append({
                    "experiment": run.get("name") or d.get("rev") or "workspace",
                    "hook": Path(path).stem,
                    "architecture": arch,
                    "k": sae.get("k"),
                    "l1_coefficient": sae.get("l1_coefficient"),
                    "expansion": sae.get("expansion"),
                    "epochs": sae.get("epochs"),
                    "l0": md["l0"],
                    "explained_variance": md["explained_variance"],
                })
    # the same run can appear twice (workspace and its commit): keep one
    uniq = {(r["hook"], r["architecture"], r["k"], r["l1_coefficient"], r["expansion"], r["epochs"], r["l0"]): r for r in rows}
    return sorted(uniq.values(), key=lambda r: (r["hook"], r["architecture"], r["l0"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench")
    a = ap.parse_args()
    r = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json", "-A"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"error: dvc exp show failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    rows = rows_from_exp_show(json.loads(r.stdout))
    if not rows:
        raise SystemExit("error: no experiment has custom-SAE metrics: run a sweep first (README: 'SAE sweeps')")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "frontier.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    fig = go.Figure()
    for key in sorted({(r["hook"], r["architecture"], r["epochs"]) for r in rows}):
        pts = [r for r in rows if (r["hook"], r["architecture"], r["epochs"]) == key]
        label = [f"k={p['k']}" if p["architecture"] != "relu" else f"l1={p['l1_coefficient']}" for p in pts]
        label = [f"{lab}, x{p['expansion']}" for lab, p in zip(label, pts)]
        fig.add_trace(go.Scatter(x=[p["l0"] for p in pts], y=[p["explained_variance"] for p in pts], mode="lines+markers",
                                 name=f"{key[1]} @ {key[0]} ({key[2]} epochs)", text=label))
    fig.update_layout(title="L0 vs explained variance (held-out corpus tokens)", xaxis_title="L0", yaxis_title="explained variance")
    (out / "frontier.html").write_text(f"<html><head><meta charset='utf-8'></head><body>{plotly_js_once()}{figure_html(fig)}</body></html>")
    print(f"{'hook':26s} {'arch':10s} {'k':>4s} {'l1':>5s} {'x':>3s} {'ep':>3s} {'L0':>7s} {'EV':>7s}  (k only acts for topk/batchtopk, l1 only for relu)")
    for p in rows:
        print(f"{p['hook']:26s} {p['architecture']:10s} {str(p['k']):>4s} {str(p['l1_coefficient']):>5s} {str(p['expansion']):>3s} "
              f"{str(p['epochs']):>3s} {p['l0']:7.1f} {p['explained_variance']:7.4f}")
    print(f"wrote {out / 'frontier.csv'} and {out / 'frontier.html'}")


if __name__ == "__main__":
    main()
