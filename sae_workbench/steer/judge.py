"""Judging a steered continuation, as AxBench does: a concept score and a
fluency score per continuation, combined by their harmonic mean (zero when
either is zero), each from a judge blind to the model's SAE.

Concept judge (`fit_classifier`): "is this text of category C?", as
    concept = P(C | text) * P(real | text)
P(C | text): TF-IDF over character 1-4-grams inside word boundaries (sublinear
tf), then multinomial logistic regression (scikit-learn, C=10, lbfgs), fitted
on the held-out split of the labelled set (the split the specialists were
*not* selected on). Fitted on clean text only, it has never seen a collapsed
continuation and reads `::::::` or `( str ( any ( (` as code. P(real | text):
a gradient-boosted classifier (scikit-learn) on four properties of the string
that collapse changes (share of distinct tokens, share of the commonest token,
zlib compression ratio, share of non-alphanumeric characters),
fitted on the same labelled texts, spans of them as short as a continuation
(`windows`) and the unsteered continuations, where given, against degenerate strings (`degenerate`: one token repeated,
punctuation runs, loops of a few words, word salad, symbols mixed with a few
words). Its calibration (`CategoryClassifier.calibration`) is measured on text
it was not fitted on: the labelled train split (category accuracy, and the
share the gate keeps as real) and a second, differently seeded set of
degenerate strings (per family, the largest concept score over categories
against chance = 1 / number of categories).

Fluency (`fluency`): how far the continuation stays as natural as the
unsteered ones, under the unsteered model,
    fluency = min(1, exp(-(nll - nll_ref))) * min(1, distinct / distinct_ref)
(0 when the perplexity exceeds steer.max_ppl_ratio x the unsteered one); nll: mean negative log-likelihood of the continuation's tokens; distinct: the
share of its tokens that are distinct (a loop of one token scores ~1/n, which
perplexity alone misses: repetition is easy to predict); *_ref: the means over
the unsteered continuations.

    combined = 2 * concept * fluency / (concept + fluency)   (0 when either is 0)
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

PUNCT = list(":;.,!?()[]{}<>=+-*/\\|_#@$%^&~'\"`")

FAMILIES = ("repeat_token", "punct_run", "phrase_loop", "word_salad", "symbol_word_mix")
"""Kinds of degenerate string `degenerate` makes."""


def _words(texts: list[str]) -> list[str]:
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t)})
    return words or ["the", "a", "of"]


def degenerate(texts: list[str], n: int, seed: int) -> list[tuple[str, str]]:
    """n degenerate strings (family, text), built from the words of `texts` (so
    they share the vocabulary of real text) and punctuation; `seed` fixes them.
    Families (FAMILIES): one token repeated; a punctuation run; a loop of a 2-4
    word phrase; word salad (words drawn at random from every text); symbols
    interleaved with a few words."""
    rng = np.random.default_rng(seed)
    words = _words(texts)
    out = []
    for i in range(n):
        fam = FAMILIES[i % len(FAMILIES)]
        length = int(rng.integers(6, 30))
        sep = " " if rng.random() < 0.6 else ""
        if fam == "repeat_token":
            w = words[rng.integers(len(words))]
            s = sep.join([w] * length)
        elif fam == "punct_run":
            chars = rng.choice(PUNCT, size=int(rng.integers(1, 3)))
            s = sep.join(chars[j % len(chars)] for j in range(length))
        elif fam == "phrase_loop":
            phrase = " ".join(words[k] for k in rng.integers(len(words), size=int(rng.integers(2, 5))))
            s = " ".join([phrase] * max(2, length // 3))
        elif fam == "word_salad":
            s = " ".join(words[k] for k in rng.integers(len(words), size=length))
        else:
            few = [words[k] for k in rng.integers(len(words), size=2)]
            sym = rng.choice(PUNCT, size=2)
            s = " ".join(str(sym[j % 2]) if rng.random() < 0.6 else few[j % 2] for j in range(length))
        out.append((fam, s))
    return out


def windows(texts: list[str], n: int, seed: int) -> list[str]:
    """n random spans of 6-30 consecutive words of `texts`: real text as short as a
    continuation (so the gate does not take shortness for collapse)."""
    rng = np.random.default_rng(seed)
    split = [t.split(" ") for t in texts if t.strip()]
    out = []
    for _ in range(n):
        words = split[rng.integers(len(split))]
        length = int(rng.integers(6, 31))
        start = int(rng.integers(max(1, len(words) - length + 1)))
        out.append(" ".join(words[start : start + length]))
    return out


def text_features(text: str) -> list[float]:
    """The string properties collapse changes (module docstring), for P(real | text)."""
    toks = re.findall(r"\w+|[^\w\s]", text) or [""]
    counts = Counter(toks)
    raw = text.encode("utf-8", "replace")
    visible = [ch for ch in text if not ch.isspace()] or [" "]
    return [len(counts) / len(toks), counts.most_common(1)[0][1] / len(toks), len(zlib.compress(raw)) / max(1, len(raw)),
            float(np.mean([not ch.isalnum() for ch in visible]))]


@dataclass
class CategoryClassifier:
    pipeline: object
    """P(category | text), fitted on clean labelled texts."""
    gate: object
    """P(real | text) against degenerate strings, on text_features."""
    categories: list[str]
    fitted_on: str
    n_fit: int
    accuracy: float | None
    """Category accuracy (argmax of P(C | text)) on the labelled texts not fitted on (None if there were none)."""
    calibration: dict | None = None
    """How the judge scores text it was not fitted on (module docstring)."""

    def real(self, texts: list[str]) -> np.ndarray:
        """P(real | text) for each text."""
        return self.gate.predict_proba(np.array([text_features(t) for t in texts]))[:, 1]

    def proba(self, texts: list[str], category: str) -> np.ndarray:
        """The concept score P(category | text) * P(real | text) of each text."""
        col = list(self.pipeline.classes_).index(category)
        return self.pipeline.predict_proba(list(texts))[:, col] * self.real(texts)

    def max_proba(self, texts: list[str]) -> np.ndarray:
        """For each text, its largest concept score over the categories."""
        return self.pipeline.predict_proba(list(texts)).max(1) * self.real(texts)


def fit_classifier(texts, fit_split: str = "heldout", seed: int = 0, real: list[str] = (), n_degenerate: int = 400) -> CategoryClassifier:
    """Fit the concept judge on the labelled `texts` (objects with .text, .category,
    .split) of `fit_split`; its gate also on the `real` texts (e.g. the unsteered
    continuations) against n_degenerate degenerate strings; calibrated on the other
    split and on degenerate strings of another seed (module docstring)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
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
    vocab = [t.text for t in texts]
    good = [t.text for t in fit] + windows([t.text for t in fit], n_degenerate, seed) + [t for t in real if t and t.strip()]
    bad = [s for _, s in degenerate(vocab, n_degenerate, seed)]
    gate = HistGradientBoostingClassifier(random_state=seed)
    gate.fit(np.array([text_features(t) for t in good + bad]), np.array([1] * len(good) + [0] * len(bad)))
    clf = CategoryClassifier(pipe, gate, cats, fit_split, len(fit), None)
    if rest:
        clf.accuracy = float(np.mean(pipe.predict([t.text for t in rest]) == np.array([t.category for t in rest])))
    clf.calibration = calibrate(clf, [t.text for t in rest], vocab, seed + 1)
    return clf


def calibrate(clf: CategoryClassifier, clean: list[str], vocab: list[str], seed: int, n: int = 400) -> dict:
    """The judge on texts it was not fitted on: on the `clean` labelled texts its category
    accuracy and the share the gate keeps as real (P(real) >= 0.5); on n degenerate strings
    of `seed`, per family the mean and largest concept score (the largest over categories)
    and the share at or below chance = 1 / number of categories."""
    chance = 1 / len(clf.categories)
    held = degenerate(vocab, n, seed)
    top = clf.max_proba([s for _, s in held])
    fams = {}
    for f in FAMILIES:
        v = top[[i for i, (g, _) in enumerate(held) if g == f]]
        fams[f] = {"n": int(len(v)), "mean": float(v.mean()), "max": float(v.max()), "frac_at_or_below_chance": float(np.mean(v <= chance))}
    return {"chance": chance, "clean_accuracy": clf.accuracy, "n_clean": len(clean),
            "clean_kept_as_real": float(np.mean(clf.real(clean) >= 0.5)) if clean else None,
            "degenerate": fams, "degenerate_at_or_below_chance": float(np.mean(top <= chance))}


def distinct_frac(ids) -> float:
    """Share of a continuation's tokens that are distinct (1.0 for an empty one)."""
    ids = list(ids)
    return len(set(ids)) / len(ids) if ids else 1.0


def fluency(nll: float, distinct: float, nll_ref: float, distinct_ref: float, max_ppl_ratio: float = math.inf) -> float:
    """Fluency of a continuation against the unsteered ones (module docstring), in [0, 1];
    0 when its perplexity exceeds max_ppl_ratio x theirs (nll - nll_ref > log max_ppl_ratio)."""
    if not (math.isfinite(nll) and math.isfinite(nll_ref)) or nll - nll_ref > math.log(max_ppl_ratio):
        return 0.0
    return min(1.0, math.exp(-(nll - nll_ref))) * min(1.0, distinct / max(distinct_ref, 1e-9))


def combined(concept: float, fluent: float) -> float:
    """Harmonic mean of the concept and fluency scores; 0 when either is 0 (or NaN)."""
    if not (concept > 0 and fluent > 0):
        return 0.0
    return 2 * concept * fluent / (concept + fluent)
