"""report_kit.outputs: chapters read the run's outputs as the types that wrote them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sae_workbench.analysis.results import HookAnalysis, HookComparison, SeedStudy, Specialist, SpecialistCount
from sae_workbench.cli import write_json
from sae_workbench.control import ControlStudy
from sae_workbench.cross_model import CrossModelStudy
from sae_workbench.measure import PretrainedComparison, SAEMetrics
from sae_workbench.report_kit import outputs
from sae_workbench.steer.embedding import SteerResult
from sae_workbench.steer.study import SteerStudy

from helpers import ROOT

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]
COVERED = ("metrics/sae/", "metrics/analysis/", "data/analysis/", "metrics/compare.json", "data/compare.json", "metrics/steer.json",
           "data/steer/results.json", "metrics/seeds.json", "data/seeds/", "metrics/control.json", "metrics/pretrained.json")
"""The files `outputs` reads: no chapter reads them any other way."""


def _sae(h: str) -> SAEMetrics:
    return SAEMetrics(source="custom", d_in=8, d_sae=32, l0=4.0, explained_variance=0.9, mse=0.01, dead_frac=0.0, dense_frac=0.0,
                      eval_tokens=100, fidelity={"fidelity": 0.8}, architecture="topk", train_tokens=1000, steps=10)


def _analysis(h: str) -> HookAnalysis:
    spec = Specialist(feature=3, train_score=1.0, train_auroc=0.9, heldout_score=0.5, mean_in_heldout=1.2, heldout_auroc=0.8,
                      auroc_ci_low=0.7, auroc_ci_high=0.9, ci_low=0.1, ci_high=0.9, p_value=0.01, significant=True, max_act=2.0)
    return HookAnalysis(rankings={"strongest": [{"feature": 3, "max_act": 2.0}]}, specialists={"math": spec},
                        count=SpecialistCount(positive=1, significant=1, positive_ci=[1.0, 1.0]), score_matrix={"math": [0.5]},
                        coactivation=[], cards={"3": {"n_active": 5}}, neuronpedia=None, summary={"n_texts": 7, "l0_per_token": 4.0})


def _steer() -> SteerStudy:
    sweep = SteerResult(mode="add", coefficients=[0.0, 1.0], similarity={"math": [0.1, 0.3]}, nearest_target_frac=[0.0, 0.5],
                        drift=[0.0, 0.1], feature_activation=[0.0, 2.0], unsteered={"nearest_target_frac": 0.0}, best_coefficient=1.0, best_rule="rule")
    return SteerStudy(hook=HOOKS[0], category="math", feature=3, max_act=2.0, mode="add", coefficients=[0.0, 1.0],
                      headline={"nearest_target_frac": [0.0, 0.5]}, headline_metrics={"nearest_target_frac": {"0.0": 0.0, "1.0": 0.5}},
                      best_coefficient=1.0, best_rule="rule", sweeps={"add": sweep}, attribution={"per_token": [{"feature": 3, "rank": 1}]})


def _seeds(h: str) -> SeedStudy:
    return SeedStudy(hook=h, seeds=[0, 1], headline={"explained_variance": {"mean": 0.9, "std": 0.01}},
                     stability={"threshold": 0.7, "frac_stable": {"mean": 0.5, "std": 0.1}}, pairs=[{"frac_stable": 0.5}],
                     specialists={"math": {"feature": 3, "matched_in": 1, "other_seeds": 1, "matches": []}}, per_seed={"0": {"l0": 4.0}})


def _write_run(root: Path) -> dict:
    """A small run's typed outputs, written as the stages write them; returns them."""
    run = {"sae": {h: _sae(h) for h in HOOKS}, "analysis": {h: _analysis(h) for h in HOOKS}, "steer": _steer(),
           "seeds": {HOOKS[0]: _seeds(HOOKS[0])},
           "compare": HookComparison(hooks=HOOKS, per_hook={h: {"significant": 1, "mean_heldout_auroc": 0.8} for h in HOOKS},
                                     specialist_table={}, heldout_score_matrix={}, top5_strongest={}, coverage={}, components_vs_resid=[],
                                     best_hook=HOOKS[0], best_hook_vs_runner_up=None),
           "control": ControlStudy(hook=HOOKS[0], model="random weights", train_tokens=1000, real_train_tokens=1000, specialists={},
                                   trained_vs_random={}, real={}),
           "pretrained": PretrainedComparison(release=None, sae_id=None, hooks={}, available=False, reason="no release")}
    for h in HOOKS:
        write_json(root / f"metrics/sae/{h}.json", run["sae"][h].to_json())
        write_json(root / f"data/analysis/{h}.json", {**run["analysis"][h].to_json(), "hook": h})
        write_json(root / f"metrics/analysis/{h}.json", run["analysis"][h].metrics_json())
    write_json(root / "data/compare.json", run["compare"].to_json())
    write_json(root / "metrics/compare.json", run["compare"].metrics_json())
    write_json(root / "data/steer/results.json", run["steer"].to_json())
    write_json(root / "metrics/steer.json", run["steer"].metrics_json())
    write_json(root / "metrics/seeds.json", {h: s.metrics_json() for h, s in run["seeds"].items()})
    for h, s in run["seeds"].items():
        write_json(root / f"data/seeds/{h}/stability.json", s.details_json())
    write_json(root / "metrics/control.json", run["control"].to_json())
    write_json(root / "metrics/pretrained.json", run["pretrained"].to_json())
    return run


def test_outputs_reads_each_output_as_its_type(tmp_path):
    run = _write_run(tmp_path)
    results = outputs(HOOKS, tmp_path)
    assert list(results.sae) == list(results.analysis) == HOOKS
    for h in HOOKS:
        assert isinstance(results.sae[h], SAEMetrics) and results.sae[h] == run["sae"][h]
        assert isinstance(results.analysis[h], HookAnalysis) and results.analysis[h] == run["analysis"][h]
    assert results.analysis[HOOKS[0]].summary == {"n_texts": 7, "l0_per_token": 4.0}  # from metrics/analysis
    assert isinstance(results.compare, HookComparison) and results.compare == run["compare"]
    assert isinstance(results.steer, SteerStudy) and results.steer == run["steer"]
    assert isinstance(results.steer.sweeps["add"], SteerResult)
    assert list(results.seeds) == [HOOKS[0]] and results.seeds[HOOKS[0]] == run["seeds"][HOOKS[0]]  # only the hooks of metrics/seeds.json
    assert isinstance(results.control, ControlStudy) and results.control == run["control"]
    assert isinstance(results.pretrained, PretrainedComparison) and results.pretrained == run["pretrained"]
    with pytest.raises(KeyError, match="not one of the hooks"):
        results.sae["blocks.7.hook_resid_post"]


def test_outputs_reads_lazily_and_optional_outputs_may_be_absent(tmp_path):
    results = outputs(HOOKS, tmp_path)  # nothing written: nothing read yet
    assert results.control is None and results.pretrained is None and results.cross_model is None and dict(results.seeds) == {}
    with pytest.raises(FileNotFoundError):
        results.sae[HOOKS[0]]
    write_json(tmp_path / f"metrics/sae/{HOOKS[1]}.json", _sae(HOOKS[1]).to_json())
    assert results.sae[HOOKS[1]] == _sae(HOOKS[1])  # one hook's file is enough for that hook
    write_json(tmp_path / "metrics/control.json", ControlStudy(hook=None, skipped="control.hook is empty").to_json())
    assert outputs(HOOKS, tmp_path).control.skipped == "control.hook is empty"
    write_json(tmp_path / "metrics/cross_model.json", CrossModelStudy(hook=None, skipped="cross_model.profiles is empty").to_json())
    assert outputs(HOOKS, tmp_path).cross_model.skipped == "cross_model.profiles is empty"


def _code(notebook: Path) -> str:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def test_chapters_read_typed_outputs_only_through_outputs():
    notebooks = sorted((ROOT / "report").glob("*.ipynb"))
    assert len(notebooks) == 9
    read_call = re.compile(r"""\bread\(\s*f?["']([^"']*)""")
    for nb in notebooks:
        paths = read_call.findall(_code(nb))
        assert not [p for p in paths if p.startswith(COVERED)], f"{nb.name} reads {paths}: use report_kit.outputs"
