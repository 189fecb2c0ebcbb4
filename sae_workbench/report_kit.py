"""What every report notebook needs, in one place: the run's params, its
outputs, and Markdown/figure output that Quarto and the pandoc fallback both read.

A chapter notebook's set-up cell is

    from sae_workbench.report_kit import CATEGORIES, fnum, md, read, setup, show, slug
    params, kind, hooks = setup(params_path)

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
from pathlib import Path
from typing import NamedTuple

from IPython.display import Markdown, display

from . import viz
from .config import CATEGORIES, Params, load_params
from .data import read_texts
from .kinds.wording import CausalLM, Encoder, worded

__all__ = ["CATEGORIES", "VERDICT", "Chapter", "fnum", "labelled_counts", "md", "pval", "read", "setup", "show", "slug"]

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
