"""An independent judge of "is this text of category C?": a character n-gram
classifier fitted on labelled texts, blind to the model and its SAEs.

Steering a feature should make generated text *become* its category; the
feature's own activation on that text is one measure (`steer.generation`), but it is
the steered feature judging itself. This classifier is the second, independent
measure: TF-IDF over character 1-4-grams inside word boundaries (sublinear tf),
then multinomial logistic regression (scikit-learn, C=10, lbfgs), fitted on the
held-out split of the labelled set (the split the specialists were *not*
selected on). `held_out_accuracy` reports how well it separates the train split,
so the report can say how far to trust it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CategoryClassifier:
    pipeline: object
    categories: list[str]
    fitted_on: str
    n_fit: int
    accuracy: float | None
    """Accuracy on the texts not fitted on (None if there were none)."""

    def proba(self, texts: list[str], category: str) -> np.ndarray:
        """P(category | text) for each text."""
        col = list(self.pipeline.classes_).index(category)
        return self.pipeline.predict_proba(list(texts))[:, col]


def fit_classifier(texts, fit_split: str = "heldout", seed: int = 0) -> CategoryClassifier:
    """Fit on the labelled `texts` (objects with .text, .category, .split) of `fit_split`;
    accuracy on the others."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    fit = [t for t in texts if t.split == fit_split]
    rest = [t for t in texts if t.split != fit_split]
    cats = sorted({t.category for t in fit})
    if len(cats) < 2:
        raise ValueError(f"the classifier needs labelled texts of >= 2 categories in split {fit_split!r}")
    pipe = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, min_df=2),
        LogisticRegression(C=10.0, max_iter=2000, random_state=seed),
    )
    pipe.fit([t.text for t in fit], [t.category for t in fit])
    acc = None
    if rest:
        acc = float(np.mean(pipe.predict([t.text for t in rest]) == np.array([t.category for t in rest])))
    return CategoryClassifier(pipe, cats, fit_split, len(fit), acc)
