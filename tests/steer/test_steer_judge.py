"""steer/judge.py: the independent text classifier."""

import pytest

from sae_workbench.config import CATEGORIES


def test_text_classifier_is_an_independent_judge():
    from conftest import ROOT
    from sae_workbench.data import read_texts
    from sae_workbench.steer.judge import fit_classifier

    texts = read_texts(ROOT / "data/texts/labelled.jsonl")
    clf = fit_classifier(texts)
    assert clf.fitted_on == "heldout" and clf.n_fit == sum(t.split == "heldout" for t in texts)
    assert clf.accuracy >= 0.8  # on the train split it never saw
    assert sorted(clf.categories) == sorted(CATEGORIES)
    code = "import os\n\ndef walk(root):\n    for name in os.listdir(root):\n        yield os.path.join(root, name)\n"
    probs = {c: float(clf.proba([code], c)[0]) for c in clf.categories}
    assert max(probs, key=probs.get) == "python" and abs(sum(probs.values()) - 1) < 1e-6
    with pytest.raises(ValueError, match=">= 2 categories"):
        fit_classifier([t for t in texts if t.category == "python"])
