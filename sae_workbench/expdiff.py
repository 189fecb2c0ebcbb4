"""What did a parameter change do to the findings? A readable diff of two runs.

    dvc exp run -n k32 -S sae.k=32                      # an experiment
    python -m sae_workbench.expdiff HEAD k32            # baseline vs the experiment
    python -m sae_workbench.expdiff a1a6d94 HEAD --out docs/diff.md

A run is a git revision holding a pipeline's metrics (a commit, a branch, a tag),
the name of a DVC experiment (its `refs/exps/...` ref), or `workspace`. The diff
has four parts, all read from the metrics files DVC tracks (nothing recomputed):
- the params that differ (`dvc params diff`);
- headline metrics per hook side by side with their change: SAE explained
  variance, L0, dead share, CE-loss recovered; significant specialists and mean
  held-out AUROC;
- specialists that appeared (significant only in the new run) or vanished, and
  for each category and hook the held-out AUROC with its 95% bootstrap interval
  in both runs; a change is called a difference only when the intervals do not
  overlap (a conservative check; otherwise "within the intervals");
- the SAE training curves of both runs side by side (HTML: interactive plot).
Writes Markdown (and, with --html, a standalone HTML page with the curves).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from .config import CATEGORIES


class RunNotFound(ValueError):
    pass


def resolve(rev: str, root: Path) -> str | None:
    """The git revision of a run: None for the workspace; a DVC experiment name resolves to its ref."""
    if rev == "workspace":
        return None
    ok = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root, capture_output=True, text=True)
    if ok.returncode == 0:
        return ok.stdout.strip()
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/"], cwd=root, capture_output=True, text=True).stdout.split()
    match = [r for r in refs if r.rsplit("/", 1)[-1] == rev]
    if len(match) == 1:
        return match[0]
    raise RunNotFound(f"{rev!r} is neither a git revision nor a DVC experiment name (see `dvc exp show`)")


def read_at(rev: str | None, path: str, root: Path) -> str | None:
    """A file's text at a run (None: the workspace); None if the run has no such file."""
    if rev is None:
        p = root / path
        return p.read_text(encoding="utf-8") if p.exists() else None
    r = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True)
    return r.stdout.decode("utf-8") if r.returncode == 0 else None


def list_at(rev: str | None, folder: str, root: Path) -> list[str]:
    if rev is None:
        return sorted(p.relative_to(root).as_posix() for p in (root / folder).glob("*") if p.is_file())
    r = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:{folder}"], cwd=root, capture_output=True, text=True)
    return sorted(f"{folder}/{n}" for n in r.stdout.split()) if r.returncode == 0 else []


def load_run(rev: str | None, root: Path) -> dict:
    """{params, sae: {hook: metrics}, analysis: {hook: metrics}, curves: {hook: rows}} of one run."""
    import yaml

    def js(path):
        text = read_at(rev, path, root)
        return json.loads(text) if text else None

    hook = lambda p: Path(p).stem
    run = {"params": yaml.safe_load(read_at(rev, "params.yaml", root) or "{}") or {},
           "sae": {hook(p): js(p) for p in list_at(rev, "metrics/sae", root) if p.endswith(".json")},
           "analysis": {hook(p): js(p) for p in list_at(rev, "metrics/analysis", root) if p.endswith(".json")},
           "curves": {}}
    for p in list_at(rev, "metrics/sae_curves", root):
        if p.endswith(".csv"):
            run["curves"][p[len("metrics/sae_curves/"):-4]] = list(csv.DictReader(io.StringIO(read_at(rev, p, root))))
    if not run["sae"] and not run["analysis"]:
        raise RunNotFound(f"run {rev or 'workspace'} has no metrics/sae or metrics/analysis: run dvc repro there first")
    return run


def _flat(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def params_diff(a: dict, b: dict) -> list[tuple[str, object, object]]:
    fa, fb = _flat(a), _flat(b)
    return [(k, fa.get(k, "—"), fb.get(k, "—")) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k) and not k.startswith("profiles.")]


def _num(v, nd=3):
    return "—" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _delta(a, b, nd=3):
    return f"{b - a:+.{nd}f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "—"


def specialist_changes(a: dict, b: dict) -> list[dict]:
    """Per hook in both runs and category: both runs' specialist, AUROC interval, verdict."""
    rows = []
    for h in [h for h in b["analysis"] if h in a["analysis"]]:
        sa, sb = a["analysis"][h]["specialists"], b["analysis"][h]["specialists"]
        for c in CATEGORIES:
            x, y = sa.get(c), sb.get(c)
            if not x or not y:
                continue
            status = ("appeared" if y["significant"] and not x["significant"] else
                      "vanished" if x["significant"] and not y["significant"] else
                      "significant in both" if x["significant"] else "in neither")
            disjoint = y["auroc_ci_low"] > x["auroc_ci_high"] or x["auroc_ci_low"] > y["auroc_ci_high"]
            rows.append({"hook": h, "category": c, "a": x, "b": y, "status": status,
                         "auroc_change": ("higher" if y["heldout_auroc"] > x["heldout_auroc"] else "lower") if disjoint else "within the intervals"})
    return rows


def markdown(name_a: str, name_b: str, a: dict, b: dict) -> str:
    out = [f"# What changed from `{name_a}` to `{name_b}`", ""]
    pd = params_diff(a["params"], b["params"])
    out += ["## Params", ""] + (["| param | " + name_a + " | " + name_b + " |", "|:--|:--|:--|"]
                                + [f"| `{k}` | {va} | {vb} |" for k, va, vb in pd] if pd else ["The params are the same."]) + [""]
    hooks = [h for h in b["sae"] if h in a["sae"]]
    only = sorted(set(a["sae"]) ^ set(b["sae"]))
    out += ["## SAE metrics per hook", "", f"| hook | EV {name_a} | EV {name_b} | Δ | L0 Δ | dead {name_a} | dead {name_b} | CE recovered {name_a} | CE recovered {name_b} | Δ |",
            "|:--|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for h in hooks:
        x, y = a["sae"][h], b["sae"][h]
        cx, cy = (x.get("fidelity") or {}).get("ce_loss_recovered"), (y.get("fidelity") or {}).get("ce_loss_recovered")
        out.append(f"| `{h}` | {_num(x['explained_variance'])} | {_num(y['explained_variance'])} | {_delta(x['explained_variance'], y['explained_variance'])} | "
                   f"{_delta(x['l0'], y['l0'], 1)} | {100 * x['dead_frac']:.1f}% | {100 * y['dead_frac']:.1f}% | {_num(cx)} | {_num(cy)} | {_delta(cx, cy)} |")
    if only:
        out += ["", "Hooks in one run only: " + ", ".join(f"`{h}`" for h in only) + "."]
    out += ["", "## Specialists", "", f"| hook | significant {name_a} | significant {name_b} | mean held-out AUROC {name_a} | {name_b} | Δ |", "|:--|---:|---:|---:|---:|---:|"]
    for h in [h for h in b["analysis"] if h in a["analysis"]]:
        x, y = a["analysis"][h], b["analysis"][h]
        out.append(f"| `{h}` | {x['specialists_significant']} | {y['specialists_significant']} | {_num(x['mean_heldout_auroc'])} | {_num(y['mean_heldout_auroc'])} | "
                   f"{_delta(x['mean_heldout_auroc'], y['mean_heldout_auroc'])} |")
    rows = specialist_changes(a, b)
    moved = [r for r in rows if r["status"] in ("appeared", "vanished")]
    out += ["", ("Appeared or vanished: " + "; ".join(f"{r['category']} at `{r['hook']}` {r['status']}" for r in moved) + ".") if moved
            else "No specialist appeared or vanished: every category keeps its verdict at every hook in both runs." if rows
            else "No hook has specialists in both runs.", ""]
    out += [f"| hook | category | feature {name_a} → {name_b} | held-out AUROC {name_a} (95% interval) | {name_b} (95% interval) | AUROC change | verdict |",
            "|:--|:--|:--|:--|:--|:--|:--|"]
    for r in rows:
        x, y = r["a"], r["b"]
        out.append(f"| `{r['hook']}` | {r['category']} | {x['feature']} → {y['feature']} | {x['heldout_auroc']:.3f} ({x['auroc_ci_low']:.3f}–{x['auroc_ci_high']:.3f}) | "
                   f"{y['heldout_auroc']:.3f} ({y['auroc_ci_low']:.3f}–{y['auroc_ci_high']:.3f}) | {r['auroc_change']} | {r['status']} |")
    out += ["", "A held-out AUROC change is called higher or lower only when the two 95% bootstrap intervals do not overlap; "
            "feature indices of two differently trained SAEs are unrelated numbers.", ""]
    return "\n".join(out)


def curves_html(name_a: str, name_b: str, a: dict, b: dict) -> str:
    import plotly.graph_objects as go
    import plotly.io as pio

    parts = []
    for h in [h for h in b["curves"] if h in a["curves"]]:
        fig = go.Figure()
        for name, run, dash in ((name_a, a, "dot"), (name_b, b, "solid")):
            rows = run["curves"][h]
            fig.add_scatter(x=[int(r["tokens"]) for r in rows], y=[float(r["mse"]) for r in rows], name=name, line=dict(dash=dash))
        fig.update_layout(title=f"{h}: training MSE", xaxis_title="training tokens", yaxis_title="MSE per dimension (normalised)", height=350)
        parts.append(pio.to_html(fig, include_plotlyjs="inline" if not parts else False, full_html=False))
    return "\n".join(parts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("baseline", help="git revision, DVC experiment name, or 'workspace'")
    ap.add_argument("other", nargs="?", default="workspace")
    ap.add_argument("--out", default=None, help="Markdown file (default: print)")
    ap.add_argument("--html", default=None, help="also a standalone HTML page with the tables and the training curves")
    a = ap.parse_args(argv)
    root = Path.cwd()
    try:
        ra, rb = resolve(a.baseline, root), resolve(a.other, root)
        run_a, run_b = load_run(ra, root), load_run(rb, root)
    except RunNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    text = markdown(a.baseline, a.other, run_a, run_b)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text, encoding="utf-8")
        print(f"expdiff: {a.out}")
    else:
        print(text)
    if a.html:
        import pypandoc

        body = pypandoc.convert_text(text, "html", format="gfm")
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{a.baseline} vs {a.other}</title>"
                "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
                f"</head><body>{body}<h2>Training curves</h2>{curves_html(a.baseline, a.other, run_a, run_b)}</body></html>")
        Path(a.html).parent.mkdir(parents=True, exist_ok=True)
        Path(a.html).write_text(page, encoding="utf-8")
        print(f"expdiff: {a.html}")


if __name__ == "__main__":
    main()
