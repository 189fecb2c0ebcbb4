"""steer/judge.py: the concept judge (category classifier gated by P(real)),
fluency and the combined score; shown first to fail, ungated, on text built to fool it."""

import math

import numpy as np
import pytest

from sae_workbench.config import CATEGORIES
from sae_workbench.data import read_texts
from sae_workbench.steer.judge import FAMILIES, combined, degenerate, distinct_frac, fit_classifier, fluency

from helpers import ROOT

# Collapsed continuations written by hand, not by judge.degenerate: the two the issue saw
# from the default run's python specialist, and more of the kinds steering produces.
COLLAPSED = [
    "::::::::::::::::::::",
    "( str ( any ( any ( ( ( (",
    "))))))))))))))))))))))))",
    "def def def def def def def def def def",
    "the the the the the the the the the the the the",
    "= = = = = = = = = = = = = = =",
    "################################",
    "import import import import import import",
    "....................................",
    "1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
    "http http http http http http http",
    "é é é é é é é é é é",
    "😂😂😂😂😂😂😂😂😂😂😂😂😂😂",
    "and the and the and the and the and the",
    "[ [ [ [ [ [ [ [ [ [ [ [",
]


@pytest.fixture(scope="module")
def texts():
    return read_texts(ROOT / "data/texts/labelled.jsonl")


@pytest.fixture(scope="module")
def clf(texts):
    return fit_classifier(texts)


def test_ungated_classifier_is_fooled_by_collapse(clf):
    """The control: P(category | text) alone, fitted on clean text, puts some category
    above chance on collapsed text (this is the judge the issue caught rewarding it)."""
    chance = 1 / len(clf.categories)
    ungated = clf.pipeline.predict_proba(COLLAPSED).max(1)
    assert np.mean(ungated > chance) > 0.8


def test_gated_judge_scores_collapse_at_or_below_chance(clf):
    chance = 1 / len(clf.categories)
    scores = clf.max_proba(COLLAPSED)
    assert (scores <= chance).all(), dict(zip(COLLAPSED, scores.round(3)))


def test_judge_keeps_clean_text_and_reports_its_calibration(clf, texts):
    assert clf.fitted_on == "heldout" and clf.n_fit == sum(t.split == "heldout" for t in texts)
    assert sorted(clf.categories) == sorted(CATEGORIES)
    cal = clf.calibration
    assert cal["clean_accuracy"] == clf.accuracy >= 0.8  # the train split it never saw
    assert cal["clean_kept_as_real"] >= 0.9 and cal["n_clean"] == sum(t.split == "train" for t in texts)
    assert set(cal["degenerate"]) == set(FAMILIES)
    for fam in ("repeat_token", "punct_run", "phrase_loop"):
        assert cal["degenerate"][fam]["frac_at_or_below_chance"] == 1.0
    code = "import os\n\ndef walk(root):\n    for name in os.listdir(root):\n        yield os.path.join(root, name)\n"
    probs = {c: float(clf.proba([code], c)[0]) for c in clf.categories}
    assert max(probs, key=probs.get) == "python" and probs["python"] > 0.5
    with pytest.raises(ValueError, match=">= 2 categories"):
        fit_classifier([t for t in texts if t.category == "python"])


def test_degenerate_strings_are_seeded_and_cover_every_family(texts):
    vocab = [t.text for t in texts]
    a, b = degenerate(vocab, 50, 0), degenerate(vocab, 50, 1)
    assert a == degenerate(vocab, 50, 0) and a != b
    assert {f for f, _ in a} == set(FAMILIES) and all(s.strip() for _, s in a)


def test_fluency_and_combined():
    ref_nll, ref_distinct = 3.0, 0.8
    assert fluency(3.0, 0.8, ref_nll, ref_distinct) == 1.0
    assert fluency(2.0, 0.9, ref_nll, ref_distinct) == 1.0  # more predictable and varied than unsteered: capped at 1
    assert fluency(4.0, 0.8, ref_nll, ref_distinct) == pytest.approx(math.exp(-1))
    loop = [7] * 20  # a loop of one token: easy to predict, so perplexity alone would call it fluent
    assert fluency(0.1, distinct_frac(loop), ref_nll, ref_distinct) == pytest.approx(1 / 20 / 0.8)
    assert fluency(float("nan"), 0.8, ref_nll, ref_distinct) == 0.0
    assert combined(0.5, 0.5) == pytest.approx(0.5) and combined(1.0, 0.0) == 0.0 and combined(0.0, 1.0) == 0.0
    assert combined(float("nan"), 1.0) == 0.0 and combined(0.9, 0.1) == pytest.approx(2 * 0.09 / 1.0)
