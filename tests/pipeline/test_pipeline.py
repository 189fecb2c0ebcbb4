"""End to end: `dvc repro` of a tiny profile in a temporary copy of the repository,
on the real MiniLM, real DVC, real papermill and the render stage's renderer
(real Quarto where `quarto` is on PATH, as in CI; else the pandoc fallback)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

pytestmark = pytest.mark.slow  # real dvc repro and stage processes

TINY = {
    "model": "minilm",
    "hooks": ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.1.hook_mlp_out"],
    "data": {"corpus_wiki_en": 60, "corpus_wiki_es": 20, "corpus_wiki_fr": 20, "corpus_code": 20, "max_tokens": 64, "batch_size": 16},
    "sae": {"architecture": "topk", "k": 16, "expansion": 2, "batch_tokens": 256, "epochs": 2, "buffer_tokens": 4096,
            "fidelity_texts": 8, "checkpoint_every": 20, "seeds": 2, "seed_hooks": ["blocks.2.hook_resid_pre"]},
    "steer": {"hook": "blocks.2.hook_resid_pre", "coefficients": [-2.0, 0.0, 2.0, 4.0], "n_texts": 10},
    "control": {"hook": "blocks.2.hook_resid_pre", "corpus_texts": 60},
    "explain": {"hook": "blocks.2.hook_resid_pre", "n_random": 3, "n_random_models": 2, "n_examples": 4, "n_score": 3, "window": 12,
                "max_explanation_tokens": 10},
    "cross_model": {"hook": "blocks.2.hook_resid_pre", "profiles": ["gemma"], "corpus_texts": 20},
}
SAE_KEYS = {"l0", "explained_variance", "mse", "dead_frac", "dense_frac", "d_sae", "eval_tokens", "fidelity", "architecture"}
ANALYSIS_KEYS = {
    "l0_per_token", "l0_per_text", "frac_nonzero_raw", "frac_nonzero_sae", "specialists", "specialists_heldout_positive",
    "specialists_heldout_positive_ci_low", "specialists_heldout_positive_ci_high", "specialists_significant", "mean_heldout_auroc", "top_coactivation_jaccard",
    "coverage_top_frequent", "top_strongest_act", "top_frequency",
}
SPECIALIST_KEYS = {"feature", "train_score", "heldout_score", "ci_low", "ci_high", "heldout_auroc", "auroc_ci_low", "auroc_ci_high",
                   "p_value", "significant", "register_holdout_auroc", "register_holdout_min_auroc"}
STEER_KEYS = {"feature", "target_similarity", "target_similarity_slope", "nearest_target_frac", "drift_at_max_coef"}


def _copy_repo(dst: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file() and not f.startswith(("metrics/", "report/executed", "report/_output")) and f != "dvc.lock":
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)


def _deep_update(base: dict, new: dict) -> dict:
    for k, v in new.items():
        base[k] = _deep_update(base.get(k, {}), v) if isinstance(v, dict) else v
    return base


def _dvc(args, cwd):
    # stage commands call `python`: make it this interpreter even without an activated venv
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # the whole tiny pipeline: on a new machine the explain stage asks the embedded Gemma some 370 questions (no
    # answer cache yet); that run stopped at 1200 s on two cores shared with another run (.ci/clean-machine)
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    _copy_repo(repo)
    p = repo / "params.yaml"
    p.write_text(yaml.safe_dump(_deep_update(yaml.safe_load(p.read_text()), TINY), sort_keys=False))
    r = _dvc(["repro"], repo)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return repo


def test_every_declared_metric_exists_with_its_keys(tiny_run):
    shown = json.loads(_dvc(["metrics", "show", "--json"], tiny_run).stdout)
    files = next(iter(shown.values()))["data"]
    for h in TINY["hooks"]:
        assert SAE_KEYS <= set(files[f"metrics/sae/{h}.json"]["data"])
        assert ANALYSIS_KEYS <= set(files[f"metrics/analysis/{h}.json"]["data"])
        sae = json.loads((tiny_run / f"metrics/sae/{h}.json").read_text())
        assert sae["l0"] == pytest.approx(16, abs=0.01) and sae["explained_variance"] > 0
        assert set(sae["fidelity"]) == {"cos_recon", "cos_zero", "fidelity"} and sae["fidelity"]["cos_recon"] > sae["fidelity"]["cos_zero"]
        an = json.loads((tiny_run / f"metrics/analysis/{h}.json").read_text())
        assert set(an["specialists"]) == {"python", "urls", "math", "non_english", "social", "formal", "conversational"}
        for v in an["specialists"].values():
            assert set(v) == SPECIALIST_KEYS and v["ci_low"] <= v["heldout_score"] <= v["ci_high"] and 0 < v["p_value"] <= 1
            assert 0 <= v["register_holdout_min_auroc"] <= v["register_holdout_auroc"] <= 1 and v["auroc_ci_low"] <= v["auroc_ci_high"]
        details = json.loads((tiny_run / f"data/analysis/{h}.json").read_text())
        assert details["coactivation"] and details["cards"]
    assert STEER_KEYS <= set(files["metrics/steer.json"]["data"])
    comp = files["metrics/compare.json"]["data"]
    assert set(comp["significant_by_hook"]) == set(TINY["hooks"])
    # seeds: the first seed is train_sae's SAE, the second trained by the seeds stage
    assert {"metrics/seeds.json", "metrics/control.json", "metrics/pretrained.json", "metrics/cross_model.json"} <= set(files)  # declared metrics DVC reads
    read = lambda rel: json.loads((tiny_run / rel).read_text())  # whole files: dvc metrics show keeps numbers only
    seeds = read("metrics/seeds.json")["blocks.2.hook_resid_pre"]
    first = json.loads((tiny_run / "metrics/sae/blocks.2.hook_resid_pre.json").read_text())
    ev = seeds["headline"]["explained_variance"]
    assert seeds["seeds"] == [0, 1] and ev["values"][0] == first["explained_variance"] and ev["min"] <= ev["mean"] <= ev["max"]
    assert 0 <= seeds["stability"]["frac_stable"]["mean"] <= 1 and -1 <= seeds["stability"]["median_best_cosine"]["mean"] <= 1
    assert set(seeds["specialists"]) == set(an["specialists"])
    fid = seeds["headline"]["embedding_cosine"]  # the encoder's fidelity, as mean and spread over seeds
    assert fid["values"][0] == first["fidelity"]["fidelity"] and fid["min"] <= fid["mean"] <= fid["max"]
    pre = read("metrics/pretrained.json")
    assert pre["available"] is False and pre["release"] is None  # MiniLM has no pre-trained SAEs
    # the random-model control: same statistics, a different model
    ctl = read("metrics/control.json")
    assert ctl["hook"] == "blocks.2.hook_resid_pre" and set(ctl["specialists"]) == set(an["specialists"])
    assert 0 < ctl["train_tokens"] < ctl["real_train_tokens"] and 0 <= ctl["specialists_significant"] <= 7
    real = json.loads((tiny_run / "metrics/analysis/blocks.2.hook_resid_pre.json").read_text())
    assert ctl["real"]["mean_heldout_auroc"] == real["mean_heldout_auroc"] and ctl["mean_heldout_auroc"] != real["mean_heldout_auroc"]
    assert comp["components_vs_resid"]["blocks.1.hook_mlp_out"]["resid_hook"] == "blocks.2.hook_resid_pre"
    # the cross-model study: MiniLM (chosen) at blocks.2 of 6 layers, Gemma at blocks.8 of 18 (both half-way), the control
    cm = read("metrics/cross_model.json")
    rows = {r["profile"]: r for r in cm["rows"]}
    assert list(rows) == ["minilm", "gemma", "random"] and rows["gemma"]["hook"] == "blocks.8.hook_resid_pre"
    assert rows["minilm"]["mean_heldout_auroc"] == real["mean_heldout_auroc"] and rows["random"]["mean_heldout_auroc"] == ctl["mean_heldout_auroc"]
    g = rows["gemma"]
    assert g["kind"] == "causal_lm" and set(g["fidelity"]) >= {"ce_clean", "ce_sae", "kl_sae"} and g["l0"] == pytest.approx(16, abs=0.01)
    assert 0 < g["train_tokens"] and 0 <= g["specialists_significant"] <= 7 and set(g["specialists"]) == set(an["specialists"])
    assert sum(g["specialist_vs_diffmean"].values()) == 7 and g["diffmean_gap"] == pytest.approx(g["mean_heldout_auroc"] - g["mean_diffmean_auroc"], abs=2e-6)
    assert set(cm["versus"]) == {"gemma", "random"} and cm["versus"]["random"] == ctl["trained_vs_random"]
    assert cm["versus"]["gemma"]["verdict"] in {"stronger", "weaker", "no_difference"} and cm["versus"]["gemma"]["n_texts"] == ctl["trained_vs_random"]["n_texts"]
    # the other model's features explained by the same judge, at its matched hook: its specialists and n_random_models others
    ex = read("metrics/explain.json")
    assert ex["hook"] == "blocks.2.hook_resid_pre" and "judge_check" in ex and set(ex["models"]) == {"gemma"}
    other = ex["models"]["gemma"]
    assert other["hook"] == "blocks.8.hook_resid_pre" and "judge_check" not in other
    assert 1 <= other["specialists"] <= 7 and other["features"] == other["specialists"] + 2
    assert {"detection", "fuzzing", "embedding"} <= set(other) and 0 <= other["detection"]["explanation"] <= 1
    spec_g = {v["feature"] for v in g["specialists"].values()}
    explained = json.loads((tiny_run / "data/explain/results.json").read_text())["models"]["gemma"]["features"]
    assert {f["feature"] for f in explained if f["role"] == "specialist"} <= spec_g


def test_every_result_reads_back_through_the_type_that_wrote_it(tiny_run):
    """What a later stage, notebook or tool reads is read through the type that wrote it:
    from_json then to_json gives the file back exactly, for every typed output of the run."""
    from sae_workbench.analysis.results import HookAnalysis, HookComparison, SeedStudy
    from sae_workbench.browser import read_index, read_page
    from sae_workbench.browser.site import _read_js
    from sae_workbench.control import ControlStudy
    from sae_workbench.cross_model import CrossModelStudy
    from sae_workbench.explain.study import ExplainStudy
    from sae_workbench.measure import PretrainedComparison, SAEMetrics
    from sae_workbench.steer.study import SteerStudy

    read = lambda rel: json.loads((tiny_run / rel).read_text())
    checked = 0
    for h in TINY["hooks"]:
        sm = read(f"metrics/sae/{h}.json")
        assert SAEMetrics.from_json(sm).to_json() == sm
        d, m = read(f"data/analysis/{h}.json"), read(f"metrics/analysis/{h}.json")
        a = HookAnalysis.from_json(d, m)
        assert a.metrics_json() == m and a.to_json() == {k: v for k, v in d.items() if k != "hook"}
        checked += 2
    cmp_d, cmp_m = read("data/compare.json"), read("metrics/compare.json")
    c = HookComparison.from_json(cmp_d, cmp_m)
    assert c.to_json() == cmp_d and c.metrics_json() == cmp_m
    for h, entry in read("metrics/seeds.json").items():
        details = read(f"data/seeds/{h}/stability.json")
        st = SeedStudy.from_json(entry, details)
        assert st.metrics_json() == entry and st.details_json() == details
        checked += 1
    for rel, typ in (("metrics/control.json", ControlStudy), ("metrics/pretrained.json", PretrainedComparison),
                     ("metrics/cross_model.json", CrossModelStudy)):
        assert typ.from_json(read(rel)).to_json() == read(rel)
    for h in TINY["hooks"]:  # the feature browser's data files
        site = tiny_run / "report/browser" / h
        for f in sorted((site / "data").iterdir()):
            raw = _read_js(f)["features"]
            assert {k: read_page(site, int(k)).to_json() for k in raw} == raw
        assert [r.to_json() for r in read_index(site)[1]] == _read_js(site / "index.js")["rows"]
    ex = ExplainStudy.read(tiny_run / "data/explain/results.json")
    assert ex.to_json() == read("data/explain/results.json") and ex.metrics_json() == read("metrics/explain.json") and ex.models
    steer = SteerStudy.from_json(read("data/steer/results.json"), read("metrics/steer.json"))
    assert steer.to_json() == read("data/steer/results.json") and steer.metrics_json() == read("metrics/steer.json")
    assert checked == 2 * len(TINY["hooks"]) + len(TINY["sae"]["seed_hooks"])


def test_concept_search_command(tiny_run):
    out = tiny_run / "concept.json"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "sae_workbench.concept", "--hook", "blocks.2.hook_resid_pre"]
    r = subprocess.run([*cmd, "def f(x):\n    return x", "import os", "--json", str(out)], cwd=tiny_run, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    ranking = json.loads(out.read_text())["ranking"]
    assert len(ranking) == 10 and ranking[0]["score"] >= ranking[-1]["score"] > 0
    bad = subprocess.run([*cmd[:-1], "blocks.7.hook_resid_pre", "x"], cwd=tiny_run, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "not in hooks" in bad.stderr


def _headline_numbers(repo: Path) -> list[str]:
    """Numbers the abstract states, formatted as the report formats them, read from the metrics JSON."""
    ev = [json.loads((repo / f"metrics/sae/{h}.json").read_text())["explained_variance"] for h in TINY["hooks"]]
    best = json.loads((repo / "metrics/compare.json").read_text())["best_hook"]
    an = json.loads((repo / f"metrics/analysis/{best}.json").read_text())
    return [f"{min(ev):.3f}", f"{max(ev):.3f}", f"{an['specialists_significant']} of 7"]


def _html_pages(repo: Path) -> dict[str, str]:
    """The report's HTML pages: Quarto's book (index.html, executed/*.html) or the fallback's one index.html."""
    out = repo / "report/_output"
    return {p.relative_to(out).as_posix(): p.read_text(encoding="utf-8") for p in sorted(out.rglob("*.html"))
            if "site_libs" not in p.parts and "browser" not in p.parts}


def _caption_numbers(page: str, kind: str) -> list[str]:
    return re.findall(kind + r"(?:\xa0|&nbsp;| )(\d+(?:\.\d+)?):", page)


def test_report_html_has_figures_highlights_and_metric_values(tiny_run):
    pages = _html_pages(tiny_run)
    html = "\n".join(pages.values())
    spans = re.findall(r'<span class="tok" style="background:rgba\([^"]+\)" title="([0-9.]+)" data-act="([0-9.]+)">', html)
    assert len(spans) > 100
    assert any(float(v) > 0 for _, v in spans)
    assert all(abs(float(t) - float(v)) < 1e-3 for t, v in spans)  # hover value = data value
    assert "<script" in html and "Plotly.newPlot" in html
    for name, page in pages.items():  # the bundle once per page that has figures, on no other
        assert page.count("plotly.js (inline, once per notebook)") == (1 if "Plotly.newPlot" in page else 0), name
    figures = tables = 0
    for name, page in pages.items():  # Quarto: "Figure C.k" per chapter C; the fallback: 1..n over its one page
        for kind in ("Figure", "Table"):
            nums = _caption_numbers(page, kind)
            if len(pages) == 1:
                assert [int(n) for n in nums] == list(range(1, len(nums) + 1)), (name, kind, nums)
            elif nums:
                chapter = {n.split(".")[0] for n in nums}
                assert len(chapter) == 1 and [int(n.split(".")[1]) for n in nums] == list(range(1, len(nums) + 1)), (name, kind, nums)
            figures, tables = (figures + len(nums), tables) if kind == "Figure" else (figures, tables + len(nums))
    assert figures >= 10 and tables >= 10
    assert "?@" not in html and 'class="quarto-xref">Figure' in html and 'class="quarto-xref">Table' in html  # every cross-reference resolved
    assert "#box(" not in html  # no Typst leaks into the HTML
    for h in TINY["hooks"]:
        ev = json.loads((tiny_run / f"metrics/sae/{h}.json").read_text())["explained_variance"]
        assert f"{ev:.3f}" in html
        an = json.loads((tiny_run / f"metrics/analysis/{h}.json").read_text())
        for v in an["specialists"].values():
            assert f"{v['p_value']:.4f}" in html and f"{v['heldout_auroc']:.3f}" in html
    for num in _headline_numbers(tiny_run):
        assert num in html
    assert "<code>seed</code>" in html  # the params table


def test_every_hook_chapter_links_its_feature_browser_and_the_links_resolve(tiny_run):
    """Issue 20: the browser stage's pages sit beside the rendered report; each hook chapter links
    its index and its specialists' pages, and every such link opens a file that exists."""
    from sae_workbench.browser import read_index, read_page

    out = tiny_run / "report/_output"
    pages = _html_pages(tiny_run)
    for h in TINY["hooks"]:
        site = out / "browser" / h
        meta, rows = read_index(site)
        ft_alive = json.loads((tiny_run / f"metrics/analysis/{h}.json").read_text())["alive_features"]
        assert len(rows) == ft_alive and meta["d_sae"] >= ft_alive
        page = next(text for name, text in pages.items() if f"{h}/index.html" in text)
        for c, v in json.loads((tiny_run / f"metrics/analysis/{h}.json").read_text())["specialists"].items():
            assert f"../browser/{h}/feature.html#{v['feature']}" in page, (h, c)
            assert read_page(site, v["feature"]) is not None
    for name, text in pages.items():
        for link in set(re.findall(r'href="(\.\./browser/[^"#]+)', text)):
            assert ((out / name).parent / link).resolve().is_file(), (name, link)


def test_abstract_is_short_and_each_key_finding_links_its_evidence(tiny_run):
    """Issue 25: the abstract is at most 200 words, then a list of key findings, each citing the
    figure or table its statistic comes from (cross-references Quarto resolves: no '?@' in the HTML)."""
    nb = json.loads((tiny_run / "report/executed/abstract.ipynb").read_text())
    shown = ["".join(o["data"]["text/markdown"]) for c in nb["cells"] if c["cell_type"] == "code"
             for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
    abstract, findings = shown[0], shown[1]
    assert 50 <= len(abstract.split()) <= 200, len(abstract.split())
    items = [line for line in findings.splitlines() if line.startswith("- ")]
    assert findings.startswith("**Key findings**") and len(items) >= 4
    assert all(re.search(r"@(fig|tbl)-[a-z0-9-]+", line) for line in items), items
    assert any("Steering" in line for line in items) and any("Ablation" in line for line in items)


def test_report_pdf_has_pages_and_headline_numbers(tiny_run):
    from pypdf import PdfReader

    pdf = PdfReader(tiny_run / "report/_output/report.pdf")
    assert len(pdf.pages) > 1
    text = " ".join(p.extract_text() for p in pdf.pages)
    flat = re.sub(r"\s+", " ", text)
    for num in _headline_numbers(tiny_run):
        assert num in flat, num
    assert re.search(r"Figure (1|\d\.1)\b", flat) and "<span" not in flat and "<div" not in flat and "Plotly" not in flat


def test_second_repro_does_nothing(tiny_run):
    r = _dvc(["repro"], tiny_run)
    assert r.returncode == 0
    assert "Running stage" not in r.stdout and "up to date" in r.stdout


def _out_hashes(repo: Path) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o.get("md5") for st in lock["stages"].values() for o in st.get("outs", [])}


def test_a_param_changed_and_back_restores_activations_from_the_cache(tiny_run):
    """The activations are DVC-cached by hardlink (.dvc/config cache.type): after a run the workspace
    file is the cache file (no second copy on disk), and after a param change and its undo `dvc repro`
    checks the previous activations out of the cache instead of extracting again. (A forced re-run
    whose outputs are already cached leaves copies; `dvc checkout --relink` links them again.)"""
    acts_dir = tiny_run / "data/activations/corpus"
    files = sorted(acts_dir.glob("*.safetensors"))
    cache_inodes = {f.stat().st_ino for f in (tiny_run / ".dvc/cache").rglob("*") if f.is_file()}
    assert files and all(f.stat().st_nlink >= 2 and f.stat().st_ino in cache_inodes for f in files)
    before = {f.name: f.read_bytes() for f in files}
    params = tiny_run / "params.yaml"
    good = params.read_text()
    raw = yaml.safe_load(good)
    raw["data"]["max_tokens"] = raw["data"]["max_tokens"] // 2
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        r = _dvc(["repro", "extract@corpus"], tiny_run)
        assert r.returncode == 0 and "Running stage 'extract@corpus'" in r.stdout, (r.stdout + r.stderr)[-3000:]
        assert {f.name: f.read_bytes() for f in sorted(acts_dir.glob("*.safetensors"))} != before
    finally:
        params.write_text(good)
    r = _dvc(["repro", "extract@corpus"], tiny_run)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "Running stage 'extract@corpus'" not in r.stdout  # restored, not re-run
    assert {f.name: f.read_bytes() for f in sorted(acts_dir.glob("*.safetensors"))} == before
    assert "up to date" in _dvc(["status"], tiny_run).stdout


def test_forced_rerun_is_byte_identical(tiny_run):
    before = _out_hashes(tiny_run)
    metrics = {p: p.read_text() for p in sorted((tiny_run / "metrics").rglob("*.json"))}
    r = _dvc(["repro", "-f"], tiny_run)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert {p: p.read_text() for p in sorted((tiny_run / "metrics").rglob("*.json"))} == metrics
    assert _out_hashes(tiny_run) == before  # activations, SAEs, features, notebooks, report


def _tree_state(repo: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under data/, metrics/ and report/_output."""
    return {str(f.relative_to(repo)): (f.stat().st_size, f.stat().st_mtime_ns)
            for d in ("data", "metrics", "report/_output") for f in sorted((repo / d).rglob("*")) if f.is_file()}


@pytest.mark.parametrize("key, value, message", [
    ("model", "gpt3", "model: 'gpt3' is not a profile in params.yaml (did you mean 'gpt2'?)"),
    ("sae.epochs", 1.5, "sae.epochs must be an integer, got 1.5"),
    ("sae.lr", "0.004", "sae.lr must be a number, got '0.004' (a quoted string: remove the quotes)"),
    ("steer.coeficients", [1.0], "unknown key 'steer.coeficients' in params.yaml; did you mean 'steer.coefficients'?"),
    ("data.max_tokens", 4, "data.max_tokens must be an integer in [8, 512], got 4 (params.yaml)"),
    ("sae.aux_coefficient", float("nan"), "sae.aux_coefficient must be a number in [0, 100], got nan (params.yaml)"),
    ("data.corpus_wiki_en", 99999, "data.corpus_wiki_en must be an integer in [0, "),  # more than the offline pool holds
    ("steer.attribution_text", "no-such-id", "steer.attribution_text 'no-such-id' is not a text id in data/texts/labelled.jsonl"),
    ("sae.k", 5000, "sae.k must be an integer in [1, 768] (the SAE's width"),  # TINY: expansion 2 x MiniLM's d_model 384
])
def test_bad_param_under_dvc_repro_loses_nothing(tiny_run, key, value, message):
    """DVC deletes a stage's outputs before running it: the check stage runs first and
    stops `dvc repro` with one line, so every previous output stays as it was."""
    params = tiny_run / "params.yaml"
    good = params.read_text()
    before = _tree_state(tiny_run)
    assert any(k.startswith("data/activations/corpus/") for k in before) and any(k.startswith("data/saes/") for k in before)
    raw = yaml.safe_load(good)
    node, *path = raw, *key.split(".")
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        r = _dvc(["repro"], tiny_run)
    finally:
        params.write_text(good)
    assert r.returncode != 0
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), r.stdout + r.stderr
    assert "Running stage 'check'" in r.stdout and "Running stage 'prepare'" not in r.stdout
    assert _tree_state(tiny_run) == before
    assert "up to date" in _dvc(["status"], tiny_run).stdout


def test_experiment_diff_names_what_a_param_change_did(tiny_run):
    """dvc exp run -S analysis.alpha=... analyze on the committed tiny run, then the diff page: the param, the
    specialists whose verdict moved, and the unchanged SAE metrics, all read from what DVC tracked."""
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=tiny_run, capture_output=True, text=True, check=True)
    git("add", "-A")
    git("commit", "-qm", "tiny baseline")
    base = json.loads((tiny_run / "metrics/analysis/blocks.2.hook_resid_pre.json").read_text())
    # p >= 1/1001 always: nothing stays significant. The diff reads metrics/sae, metrics/analysis and the params,
    # so the experiment runs the analyze stages alone (the report's stages would add some 10 min of CI)
    r = _dvc(["exp", "run", "-n", "strict", "-S", "analysis.alpha=0.0005", "analyze"], tiny_run)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    git("checkout", "--", ".")  # the workspace back to the baseline (the experiment left it half-run)
    assert _dvc(["checkout", "--force"], tiny_run).returncode == 0 and "up to date" in _dvc(["status"], tiny_run).stdout
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run([sys.executable, "-m", "sae_workbench.expdiff", "HEAD", "strict", "--out", "diff.md", "--html", "diff.html"],
                         cwd=tiny_run, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    md = (tiny_run / "diff.md").read_text()
    assert "| `analysis.alpha` | 0.05 | 0.0005 |" in md
    vanished = [c for c, v in base["specialists"].items() if v["significant"]]
    assert vanished and all(f"{c} at `blocks.2.hook_resid_pre` vanished" in md for c in vanished)
    ev = json.loads((tiny_run / "metrics/sae/blocks.2.hook_resid_pre.json").read_text())["explained_variance"]
    assert f"| `blocks.2.hook_resid_pre` | {ev:.3f} | {ev:.3f} | +0.000 |" in md  # alpha does not touch the SAEs
    assert "plotly" in (tiny_run / "diff.html").read_text()
    bad = subprocess.run([sys.executable, "-m", "sae_workbench.expdiff", "HEAD", "no-such-exp"], cwd=tiny_run, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: 'no-such-exp' is neither") and bad.stderr.count("\n") == 1


def test_a_dvc_remote_restores_the_run_in_a_fresh_clone(tiny_run, tmp_path):
    """Issue 19 (shared artifacts): `dvc push` to a remote (a local path here; S3, GCS or SSH the
    same way, README), then in a fresh `git clone` `dvc pull` restores activations, SAEs, features and
    the report byte for byte, and `dvc repro` has nothing to do."""
    git = lambda *a, cwd=tiny_run: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a], cwd=cwd,
                                                  capture_output=True, text=True, check=True)
    remote = tmp_path / "remote"
    assert _dvc(["remote", "add", "--force", "-d", "shared", str(remote)], tiny_run).returncode == 0
    git("add", "-A")
    git("commit", "-qm", "tiny run with a remote", "--allow-empty")
    r = _dvc(["push"], tiny_run)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    clone = tmp_path / "clone"
    git("clone", "-q", str(tiny_run), str(clone), cwd=tmp_path)
    assert not list((clone / "data/saes").rglob("*.safetensors")) and not (clone / "report/_output").exists()  # git has none of it
    r = _dvc(["pull"], clone)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    for rel in ("data/activations/eval", "data/saes", "data/features", "report/_output", "report/browser"):
        mine = {p.relative_to(tiny_run): p.read_bytes() for p in sorted((tiny_run / rel).rglob("*")) if p.is_file()}
        theirs = {p.relative_to(clone): p.read_bytes() for p in sorted((clone / rel).rglob("*")) if p.is_file()}
        assert mine and theirs == mine, rel
    r = _dvc(["repro"], clone)
    assert r.returncode == 0 and "Running stage" not in r.stdout, (r.stdout + r.stderr)[-3000:]
    assert "up to date" in _dvc(["status"], clone).stdout


# ---------------------------------------------------------------- the default profile (Gemma), up to the SAE metrics

GEMMA_TINY = {
    "data": {"corpus_wiki_en": 16, "corpus_wiki_es": 4, "corpus_wiki_fr": 4, "corpus_code": 4, "max_tokens": 32, "batch_size": 8},
    "sae": {"architecture": "topk", "k": 8, "expansion": 1, "batch_tokens": 128, "epochs": 1, "buffer_tokens": 1024,
            "fidelity_texts": 3, "checkpoint_every": 0, "eval_frac": 0.2},
}
GEMMA_HOOK = "blocks.9.hook_resid_post"


def test_gemma_default_trains_and_measures_an_sae(tmp_path):
    """`dvc repro train_sae@<hook>` on the default profile: the cached GGUF conversion is
    used inside the pipeline, and the SAE metrics carry CE-loss recovered and KL."""
    _copy_repo(tmp_path)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(_deep_update(yaml.safe_load(p.read_text()), GEMMA_TINY), sort_keys=False))
    r = _dvc(["repro", f"train_sae@{GEMMA_HOOK}"], tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    tokens = json.loads((tmp_path / "data/activations/corpus/tokens.json").read_text())
    assert all(t["special"][0] == 1 and t["tokens"][0] == "<bos>" for t in tokens["texts"])  # BOS kept for display, masked
    m = json.loads((tmp_path / f"metrics/sae/{GEMMA_HOOK}.json").read_text())
    assert m["d_in"] == 640 and m["d_sae"] == 640 and m["l0"] == pytest.approx(8, abs=0.01)
    fid = m["fidelity"]
    assert {"ce_clean", "ce_sae", "ce_zero", "ce_loss_recovered", "kl_sae", "kl_zero", "fidelity"} <= set(fid)
    assert fid["ce_clean"] < fid["ce_sae"] < fid["ce_zero"] and 0 < fid["ce_loss_recovered"] < 1 and 0 < fid["kl_sae"] < fid["kl_zero"]
