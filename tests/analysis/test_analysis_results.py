"""analysis/results.py: typed results read themselves back from their JSON."""

import dataclasses
import json

import numpy as np

from sae_workbench.activations import TokenTable
from sae_workbench.analysis.hook import analyze_hook
from sae_workbench.analysis.results import HookAnalysis, Specialist, SpecialistCount
from sae_workbench.analysis.stats import find_specialists
from sae_workbench.config import AnalysisConfig

from helpers import _planted_table


def _through_json(d):
    """What a stage writes and a reader gets back (NaN kept: json writes it as NaN)."""
    return json.loads(json.dumps(d))


def test_specialist_with_nan_fields_round_trips_through_json():
    ft, ti, texts, _ = _planted_table()
    strength = ft.per_text_max(ti, len(texts))
    spec = find_specialists(strength, [t["category"] for t in texts], [t["split"] for t in texts])["math"]
    assert np.isnan(spec.p_value) and spec.register_holdout is None and spec.max_act is None  # not measured yet
    back = Specialist.from_json(_through_json(spec.to_json()))
    nan = lambda s: {k for k, v in dataclasses.asdict(s).items() if isinstance(v, float) and np.isnan(v)}  # noqa: E731
    rest = lambda s: {k: v for k, v in dataclasses.asdict(s).items() if k not in nan(s)}  # noqa: E731
    assert nan(back) == nan(spec) == {"heldout_auroc", "auroc_ci_low", "auroc_ci_high", "ci_low", "ci_high", "p_value"}
    assert rest(back) == rest(spec) and back.register_holdout is None and back.max_act is None  # NaN != NaN: the rest equal
    assert json.dumps(back.to_json()) == json.dumps(spec.to_json())
    count = SpecialistCount(positive=3, significant=1, positive_ci=[2.0, 5.0])
    assert SpecialistCount.from_json(_through_json(count.to_json())) == count


def test_hook_analysis_round_trips_through_json():
    ft, ti, texts, pos = _planted_table()
    texts = [{**t, "register": "prose" if i % 2 else "list"} for i, t in enumerate(texts)]  # register_holdout filled in
    rng = np.random.default_rng(1)
    unembed = (rng.normal(size=(ft.d_sae, 8)), rng.normal(size=(8, 30)), [f"t{i}" for i in range(30)])  # cards with logit effects
    cfg = AnalysisConfig(top_k=5, n_bootstrap=100, n_permutations=100)
    x = analyze_hook(ft, rng.normal(size=(ft.n_rows, 8)), TokenTable(texts, ti, pos), cfg, np.random.default_rng(0), unembed)
    assert x.specialists["python"].register_holdout and "logit_effects" in x.cards[str(x.specialists["python"].feature)]
    data, metrics = _through_json({**x.to_json(), "hook": "blocks.0.hook_resid_pre"}), _through_json(x.metrics_json())  # as the analyze stage writes them
    back = HookAnalysis.from_json(data, metrics)
    assert back == x
    assert json.dumps(back.to_json()) == json.dumps(x.to_json()) and json.dumps(back.metrics_json()) == json.dumps(x.metrics_json())
    without = HookAnalysis.from_json(data)  # data/analysis/<hook>.json alone: everything but the summary
    assert without == dataclasses.replace(x, summary={}) and without.to_json() == x.to_json()
