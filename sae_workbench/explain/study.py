"""The explain stage's study: a one-line explanation for every specialist of one hook
and a seeded sample of other alive features, each scored on held-out contexts by
detection, fuzzing and embedding (`explain.scoring`), beside two controls that say what
a score means:

    shuffled     the explanation of another explained feature (a seeded derangement),
                 scored on this feature's contexts: what any fluent explanation gets
    top_tokens   'the tokens "a", "b", ...': the tokens this feature fires on most in the
                 train contexts, no description: what token identity alone gets

The judge is checked first on explanations planted where they are right (`judge_check`):
each category's description read with held-out texts of that category and of the others.
A judge at chance there cannot tell a right explanation from a wrong one, and its
detection and fuzzing scores say nothing about the features' explanations.

A feature is explained when it fires in at least MIN_TRAIN train texts and MIN_HELDOUT
held-out texts (alive on the texts it would be explained from and scored on).
Summary per scorer and condition: the mean AUROC over features with a bootstrap interval
over features, and the paired bootstrap over features of explanation minus each control
(analysis.stats.paired_difference; 'higher': the explanations carry more than the control).

    study = explain_study(ft, table, specialists, llm, embed, cfg, rng)
    study.models[profile] = explain_study(...)     the same of another model (cross_model.profiles)
    study.to_json() / ExplainStudy.from_json(d)   data/explain/results.json
    study.metrics_json()                           metrics/explain.json
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..analysis.stats import bootstrap_mean, paired_difference
from ..cli import read_json, rounded
from . import scoring
from .contexts import explainer_examples, quantile_sample, text_contexts, top_tokens

SCORERS = ("detection", "fuzzing", "embedding")
CONDITIONS = ("explanation", "shuffled", "top_tokens")
MIN_TRAIN, MIN_HELDOUT = 3, 2
PLANTED = {
    "python": "Python source code",
    "urls": "web addresses (URLs)",
    "math": "mathematics and equations",
    "non_english": "text in a language other than English",
    "social": "social media posts with hashtags and emoji",
    "formal": "formal, official language",
    "conversational": "casual conversation",
}
"""Planted explanations for the judge's check: a description of each category's texts."""
CHECK_TEXTS = 6
"""Held-out texts per category the judge's check reads (seeded)."""
EXPLAIN_BATCH = 8
"""Explanations asked of the llm at once (the local model generates them as one batch)."""


@dataclass
class FeatureExplanation:
    feature: int
    role: str
    """'specialist' or 'sample'."""
    categories: list[str]
    """The categories whose specialist it is (empty for a sampled feature)."""
    explanation: str
    top_tokens: list[str]
    examples: list[str]
    """The train contexts the explainer read, firing tokens marked."""
    n_train_active: int
    n_heldout_active: int
    shuffled_from: int | None
    """The feature whose explanation is this one's shuffled control."""
    scores: dict = field(default_factory=dict)
    """scores[scorer][condition] = {"auroc", ...} (scoring's dicts)."""

    def auroc(self, scorer: str, condition: str = "explanation") -> float:
        """NaN where it could not be computed (stored as None: no context on one side)."""
        v = self.scores[scorer][condition]["auroc"]
        return float("nan") if v is None else float(v)


@dataclass
class ExplainStudy:
    hook: str
    explainer: str
    """The llm that explained and judged (LocalLM / EndpointLM ident)."""
    features: list[FeatureExplanation]
    summary: dict
    """summary[scorer] = {"mean": {condition: bootstrap_mean}, "vs_shuffled": test, "vs_top_tokens": test}."""
    settings: dict
    judge_check: dict = field(default_factory=dict)
    """The judge on planted explanations (`judge_check`); {} when it was not run."""
    models: dict[str, ExplainStudy] = field(default_factory=dict)
    """The same study of each other model of cross_model.profiles at its matched hook, by profile
    (explained and judged by the same llm; no judge check of their own: the judge is the same)."""

    def to_json(self) -> dict:
        return rounded({"hook": self.hook, "explainer": self.explainer, "settings": self.settings, "summary": self.summary,
                        "judge_check": self.judge_check, "features": [asdict(f) for f in self.features],
                        "models": {k: m.to_json() for k, m in self.models.items()}})

    @classmethod
    def from_json(cls, d: dict) -> ExplainStudy:
        return cls(hook=d["hook"], explainer=d["explainer"], features=[FeatureExplanation(**f) for f in d["features"]],
                   summary=d["summary"], settings=d["settings"], judge_check=d["judge_check"],
                   models={k: cls.from_json(m) for k, m in d["models"].items()})

    @classmethod
    def read(cls, path: str | Path) -> ExplainStudy:
        return cls.from_json(read_json(path))

    def by_feature(self) -> dict[int, FeatureExplanation]:
        return {f.feature: f for f in self.features}

    def metrics_json(self) -> dict:
        out = {"hook": self.hook, "features": len(self.features),
               "specialists": sum(f.role == "specialist" for f in self.features)}
        if self.judge_check:
            out["judge_check"] = {k: self.judge_check["mean"][k] for k in ("mean", "ci_low", "ci_high")} | {"verdict": self.judge_check["verdict"]}
        for s, v in self.summary.items():
            out[s] = {c: v["mean"][c]["mean"] for c in CONDITIONS} | {
                f"vs_{c}": {k: v[f"vs_{c}"][k] for k in ("diff", "ci_low", "ci_high", "verdict")} for c in CONDITIONS[1:]}
        if self.models:
            out["models"] = {k: m.metrics_json() for k, m in self.models.items()}
        return rounded(out)


def alive_counts(ft, table) -> tuple[np.ndarray, np.ndarray]:
    """Per feature: the number of train texts and of held-out texts it fires in."""
    n = len(table.texts)
    fires = ft.per_text_max(np.asarray(table.text_index), n) > 0
    split = np.array([t["split"] for t in table.texts])
    return fires[split == "train"].sum(0), fires[split == "heldout"].sum(0)


def choose_features(specialists: dict, n_train: np.ndarray, n_held: np.ndarray, n_random: int, rng: np.random.Generator) -> list[tuple[int, str, list[str]]]:
    """(feature, role, categories): the specialists that are alive (one entry per feature), then
    n_random alive other features drawn without replacement (seeded)."""
    alive = (n_train >= MIN_TRAIN) & (n_held >= MIN_HELDOUT)
    spec: dict[int, list[str]] = {}
    for c, s in specialists.items():
        if alive[s.feature]:
            spec.setdefault(int(s.feature), []).append(c)
    others = np.flatnonzero(alive)
    others = others[~np.isin(others, list(spec))]
    pick = sorted(int(i) for i in rng.choice(others, size=min(n_random, len(others)), replace=False)) if len(others) else []
    return [(f, "specialist", cs) for f, cs in spec.items()] + [(f, "sample", []) for f in pick]


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded permutation with no fixed point (n >= 2): each feature gets another's explanation."""
    if n < 2:
        return np.arange(n)
    while True:
        p = rng.permutation(n)
        if not (p == np.arange(n)).any():
            return p


def explain_study(ft, table, specialists: dict, llm, embed, cfg, rng: np.random.Generator, hook: str,
                  n_boot: int = 1000, alpha: float = 0.05, check: bool = True) -> ExplainStudy:
    """The study (module docstring). ft: the hook's FeatureTable over the evaluation tokens;
    table: their TokenTable; specialists: HookAnalysis.specialists; llm: explain.llm (Cached);
    embed: list of str -> [n, d] unit vectors; cfg: ExplainConfig; check: run `judge_check`."""
    embed = scoring.memo_embed(embed)
    n_train, n_held = alive_counts(ft, table)
    chosen = choose_features(specialists, n_train, n_held, cfg.n_random, rng)
    if len(chosen) < 2:
        raise ValueError(f"fewer than 2 features of {hook} fire in {MIN_TRAIN}+ train and {MIN_HELDOUT}+ held-out texts: "
                         "nothing to explain and compare (more texts, or another hook)")
    feats, sets, shown = [], [], []
    for f, role, cats in chosen:
        ctx = text_contexts(ft.feature_values(f), table, cfg.window)
        train = [c for c in ctx if c.split == "train" and c.max_act > 0]
        held = [c for c in ctx if c.split == "heldout" and c.max_act > 0]
        quiet = [c for c in ctx if c.split == "heldout" and c.max_act <= 0]
        examples = explainer_examples(train, cfg.n_examples, rng)
        pos = quantile_sample(held, cfg.n_score, rng)
        neg = [quiet[i] for i in sorted(rng.choice(len(quiet), size=min(cfg.n_score, len(quiet)), replace=False))] if quiet else []
        feats.append(FeatureExplanation(
            feature=f, role=role, categories=cats, explanation="", top_tokens=top_tokens(train), examples=[c.marked() for c in examples],
            n_train_active=len(train), n_heldout_active=len(held), shuffled_from=None))
        sets.append((pos, neg))
        shown.append(examples)
    with tqdm(total=len(feats), desc=f"explain {hook}", unit="feature") as bar:
        for b in range(0, len(feats), EXPLAIN_BATCH):
            batch = feats[b : b + EXPLAIN_BATCH]
            for fe, text in zip(batch, scoring.explain_many(llm, shown[b : b + EXPLAIN_BATCH], cfg.max_explanation_tokens)):
                fe.explanation = text
            bar.update(len(batch))
    perm = derangement(len(feats), rng)
    for i, (fe, (pos, neg)) in enumerate(tqdm(list(zip(feats, sets)), desc=f"score explanations of {hook}", unit="feature")):
        fe.shuffled_from = feats[perm[i]].feature
        texts = {"explanation": fe.explanation, "shuffled": feats[perm[i]].explanation,
                 "top_tokens": scoring.top_tokens_explanation(fe.top_tokens)}
        expl = [texts[c] for c in CONDITIONS]  # the judge reads each context once for all three
        det = scoring.detection(llm, expl, pos, neg)
        fuzz = scoring.fuzzing(llm, expl, pos, np.random.default_rng([int(fe.feature), 1]))
        fe.scores = {"detection": dict(zip(CONDITIONS, det)), "fuzzing": dict(zip(CONDITIONS, fuzz)),
                     "embedding": {c: scoring.embedding(embed, texts[c], pos, neg) for c in CONDITIONS}}
    summary = summarize(feats, rng, n_boot, alpha)
    checked = judge_check(llm, table, cfg.window, rng, n_boot, alpha) if check else {}
    settings = {"n_random": cfg.n_random, "n_examples": cfg.n_examples, "n_score": cfg.n_score, "window": cfg.window,
                "max_explanation_tokens": cfg.max_explanation_tokens, "min_train_texts": MIN_TRAIN, "min_heldout_texts": MIN_HELDOUT,
                "n_boot": n_boot, "alpha": alpha}  # not the cache's hits: a re-run writes the same bytes
    return ExplainStudy(hook=hook, explainer=llm.ident, features=feats, summary=summary, settings=settings, judge_check=checked)


def judge_check(llm, table, window: int, rng: np.random.Generator, n_boot: int, alpha: float, n_texts: int = CHECK_TEXTS) -> dict:
    """The judge on planted explanations: CHECK_TEXTS held-out texts of each category (their
    first `window` tokens, seeded), each read by detection with every category's PLANTED
    description. Per category, the AUROC of its description on its own texts against the
    other categories' texts; their mean with a bootstrap interval over categories, and the
    verdict 'above_chance' only when that interval lies above 0.5 ('at_chance' otherwise).
    {} with fewer than two categories."""
    ctx = text_contexts(np.zeros(table.n_kept, dtype=np.float32), table, window)  # each text's first window
    by = {c: [x for x in ctx if x.split == "heldout" and x.category == c and x.plain()] for c in PLANTED}
    picked = {c: [v[i] for i in sorted(rng.choice(len(v), size=min(n_texts, len(v)), replace=False))] for c, v in by.items() if v}
    cats = list(picked)
    if len(cats) < 2:
        return {}
    texts = [x for c in cats for x in picked[c]]
    label = np.array([x.category for x in texts])
    m = scoring.margins(llm, scoring.DETECTION_HEAD, [scoring._one_line(x.plain()) for x in texts], [PLANTED[c] for c in cats])
    per = {c: scoring._auroc_and_accuracy(m[label == c, j].tolist(), m[label != c, j].tolist()) for j, c in enumerate(cats)}
    vals = [v["auroc"] for v in per.values() if v["auroc"] is not None]
    mean = bootstrap_mean(vals, rng, n_boot, alpha)
    return {"planted": {c: PLANTED[c] for c in cats}, "texts_per_category": n_texts, "per_category": per, "mean": mean,
            "alpha": alpha, "verdict": "above_chance" if mean["ci_low"] > 0.5 else "at_chance"}


def summarize(feats: list[FeatureExplanation], rng: np.random.Generator, n_boot: int, alpha: float) -> dict:
    """Per scorer: mean AUROC per condition over the features scored (bootstrap interval over
    features) and explanation minus each control, paired over the same features."""
    out = {}
    for s in SCORERS:
        rows = [f for f in feats if all(np.isfinite(f.auroc(s, c)) for c in CONDITIONS)]
        if len(rows) < 2:
            continue
        vals = {c: [f.auroc(s, c) for f in rows] for c in CONDITIONS}
        out[s] = {"n_features": len(rows), "mean": {c: bootstrap_mean(v, rng, n_boot, alpha) for c, v in vals.items()},
                  **{f"vs_{c}": paired_difference(vals["explanation"], vals[c], rng, n_boot, alpha) for c in CONDITIONS[1:]}}
    return out
