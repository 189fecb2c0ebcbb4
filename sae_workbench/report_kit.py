"""What every report notebook needs, in one place: the run's params, its
outputs, and Markdown/figure output that Quarto and the pandoc fallback both read.

A chapter notebook's set-up cell is

    from sae_workbench.report_kit import CATEGORIES, fnum, md, outputs, setup, show, slug
    params, kind, hooks = setup(params_path)
    results = outputs(hooks)

and it reads the run's outputs as the types that wrote them, each file read on
first use (paths relative to the working directory, the repository root):

    results.sae[h]         # SAEMetrics            metrics/sae/<h>.json
    results.analysis[h]    # HookAnalysis          data/analysis/<h>.json (+ .summary: metrics/analysis/<h>.json)
    results.baselines[h]   # Baselines             data/baselines/<h>.json (DiffMean and probes beside the specialists)
    results.compare        # HookComparison        data/compare.json + metrics/compare.json
    results.steer          # SteerStudy            data/steer/results.json + metrics/steer.json
    results.explain        # ExplainStudy | None   data/explain/results.json
    results.seeds[h]       # SeedStudy             metrics/seeds.json[h] + data/seeds/<h>/stability.json;
                           #                       only the hooks of metrics/seeds.json ({} without the file)
    results.control        # ControlStudy          metrics/control.json, None without it
    results.cross_model    # CrossModelStudy       metrics/cross_model.json, None without it
    results.pretrained     # PretrainedComparison  metrics/pretrained.json, None without it

`read` is left for outputs that have no type.

What differs between model kinds is worded beside the kinds
(`kind.description`, `kind.fidelity_label`, ...: `sae_workbench/kinds/wording.py`),
so chapters never branch on a kind's name.

The first `show` of a notebook emits the plotly.js bundle, as HTML-only
Markdown (`::: {.content-visible when-format="html"}`), so the PDF shows
nothing for it (a bare `display(HTML(...))` prints its Python repr there),
and chapters without figures carry no bundle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import NamedTuple, TypeVar

from IPython.display import Markdown, display

from . import viz
from .analysis.baselines import Baselines
from .analysis.results import HookAnalysis, HookComparison, SeedStudy
from .config import CATEGORIES, Params, load_params
from .control import ControlStudy
from .cross_model import CrossModelStudy
from .explain.study import ExplainStudy
from .data import read_texts
from .kinds.wording import CausalLM, Encoder, worded
from .measure import PretrainedComparison, SAEMetrics
from .steer.study import SteerStudy

__all__ = ["CATEGORIES", "VERDICT", "Chapter", "fnum", "labelled_counts", "md", "outputs", "pval", "read", "setup", "show", "slug"]

VERDICT = {
    "stronger": "stronger specialists than",
    "weaker": "weaker specialists than",
    "no_difference": "specialists not significantly different from",
}
"""How a component-vs-residual verdict reads in a sentence."""


_plotly_loaded = False


class Chapter(NamedTuple):
    """What every chapter needs."""

    params: Params
    """The run's params.yaml, typed."""
    kind: CausalLM | Encoder
    """The model's kind, with the report's wording of it (`kinds.wording`)."""
    hooks: list[str]
    """The hooks, in book order."""


def setup(params_path: str | Path) -> Chapter:
    """params, kind, hooks = setup(params_path): the one set-up call of every chapter."""
    params = load_params(params_path)
    return Chapter(params, worded(params.model), list(params.hooks))


def read(path: str | Path):
    """A JSON output of the pipeline."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


T = TypeVar("T")


class PerHook(Mapping[str, T]):
    """hook -> result, each hook's files read on its first look-up."""

    def __init__(self, hooks: list[str], load: Callable[[str], T]):
        self._hooks, self._load, self._read = list(hooks), load, {}

    def __getitem__(self, hook: str) -> T:
        if hook not in self._hooks:
            raise KeyError(f"{hook} is not one of the hooks {self._hooks}")
        if hook not in self._read:
            self._read[hook] = self._load(hook)
        return self._read[hook]

    def __iter__(self) -> Iterator[str]:
        return iter(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)


class Outputs:
    """The run's outputs as typed results (module docstring), each read on first use."""

    def __init__(self, hooks: list[str], root: str | Path = "."):
        self.hooks, self.root = list(hooks), Path(root)

    def _read(self, rel: str):
        return read(self.root / rel)

    def _read_if_there(self, rel: str):
        return self._read(rel) if (self.root / rel).exists() else None

    @cached_property
    def sae(self) -> PerHook[SAEMetrics]:
        return PerHook(self.hooks, lambda h: SAEMetrics.from_json(self._read(f"metrics/sae/{h}.json")))

    @cached_property
    def analysis(self) -> PerHook[HookAnalysis]:
        return PerHook(self.hooks, lambda h: HookAnalysis.from_json(self._read(f"data/analysis/{h}.json"),
                                                                    self._read(f"metrics/analysis/{h}.json")))

    @cached_property
    def baselines(self) -> PerHook[Baselines]:
        return PerHook(self.hooks, lambda h: Baselines.from_json(self._read(f"data/baselines/{h}.json")))

    @cached_property
    def compare(self) -> HookComparison:
        return HookComparison.from_json(self._read("data/compare.json"), self._read("metrics/compare.json"))

    @cached_property
    def steer(self) -> SteerStudy:
        return SteerStudy.from_json(self._read("data/steer/results.json"), self._read("metrics/steer.json"))

    @cached_property
    def explain(self) -> ExplainStudy | None:
        d = self._read_if_there("data/explain/results.json")
        return None if d is None else ExplainStudy.from_json(d)

    @cached_property
    def seeds(self) -> PerHook[SeedStudy]:
        entries = self._read_if_there("metrics/seeds.json") or {}
        return PerHook(list(entries), lambda h: SeedStudy.from_json(entries[h], self._read(f"data/seeds/{h}/stability.json")))

    @cached_property
    def control(self) -> ControlStudy | None:
        d = self._read_if_there("metrics/control.json")
        return None if d is None else ControlStudy.from_json(d)

    @cached_property
    def cross_model(self) -> CrossModelStudy | None:
        d = self._read_if_there("metrics/cross_model.json")
        return None if d is None else CrossModelStudy.from_json(d)

    @cached_property
    def pretrained(self) -> PretrainedComparison | None:
        d = self._read_if_there("metrics/pretrained.json")
        return None if d is None else PretrainedComparison.from_json(d)


def outputs(hooks: list[str], root: str | Path = ".") -> Outputs:
    """results = outputs(hooks): the run's outputs, typed, read lazily (module docstring)."""
    return Outputs(hooks, root)


def md(text: str) -> None:
    """Show Markdown (the renderers read it as Markdown, not as HTML)."""
    display(Markdown(text))


def show(fig, label: str, caption: str) -> None:
    """An interactive figure (HTML) / static image (PDF) with a numbered caption;
    the first one of a notebook brings the plotly.js bundle (HTML only)."""
    global _plotly_loaded
    if not _plotly_loaded:
        md(viz.html_only(viz.plotly_js_once()))
        _plotly_loaded = True
    md(viz.figure_md(fig, label, caption))


def slug(hook: str) -> str:
    """A hook name as a label fragment (blocks.3.hook_resid_pre -> blocks-3-hook-resid-pre)."""
    return hook.replace(".", "-").replace("_", "-")


def fnum(x, nd: int = 3) -> str:
    """A number with nd decimals, 'n/a' for None or NaN."""
    return "n/a" if x is None or (isinstance(x, float) and x != x) else f"{x:.{nd}f}"


def pval(test: dict) -> str:
    """A bootstrap test's p-value for a sentence: with n resamples, 0 means none crossed
    zero, which is p < 1/n, not p = 0."""
    p, n = test["p_value"], test.get("n_boot", 1000)
    return f"< {1 / n:.2g}" if p == 0 else f"= {p:.3g}"


class LabelledCounts(NamedTuple):
    """Texts per category in each split of the labelled set."""

    train: dict[str, int]
    heldout: dict[str, int]

    @property
    def summary(self) -> str:
        """E.g. '30 texts per category (20 train, 10 held out)', ranges where categories differ."""

        def span(values) -> str:
            lo, hi = min(values), max(values)
            return f"{lo}" if lo == hi else f"{lo}–{hi}"

        total = [self.train[c] + self.heldout[c] for c in CATEGORIES]
        return (f"{span(total)} texts per category ({span(self.train.values())} train, "
                f"{span(self.heldout.values())} held out)")


def labelled_counts(path: str | Path = "data/prepared/eval.jsonl") -> LabelledCounts:
    """Count the labelled texts the pipeline used (prepare's validated copy)."""
    texts = read_texts(path)
    count = {s: {c: sum(t.category == c and t.split == s for t in texts) for c in CATEGORIES} for s in ("train", "heldout")}
    return LabelledCounts(count["train"], count["heldout"])
