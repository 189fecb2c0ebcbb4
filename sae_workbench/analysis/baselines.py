"""Supervised baselines beside every specialist (issue 21): can a direction fitted
with the labels find each category better than the SAE's specialist does?

Every method sees the texts as the specialist does: the same labelled texts, the
same train / held-out split, and the same per-text pooling, the strongest value
of each dimension over the text's kept tokens (FeatureTable.per_text_max for the
SAE latents, pool_text_max below for the raw activations). For each category c
(one against the rest), fitted on the train texts only:

    diffmean          AxBench's DiffMean: w = mean over the train texts of c of each
                      text's mean raw activation over its kept tokens, minus the same
                      mean over the other train texts (each text counts once, as in
                      stats.specialist_scores); score(t) = the strongest projection
                      h . w over the text's kept tokens h (the specialist's pooling,
                      applied to the projection). Given only pooled rows (one row per
                      text, as in the synthetic tests), the row stands for the text's
                      single token. The directions fitted on all train texts are kept
                      (Baselines.directions, save_directions): the steer stage steers with them
    diffmean_mean     the same direction w, the text scored by its mean projection over its kept
                      tokens (mean pooling; with token activations only). On Gemma a few
                      large-norm tokens dominate the max over tokens, and mean pooling is
                      DiffMean's better reading there, so it is tested against too
    probe             L2 logistic regression on the pooled raw activations,
                      standardised with the mean and spread of the train texts only
                      (StandardScaler inside the fitted pipeline), balanced class
                      weights, lbfgs; C = 1 (PROBE_C), or with C=None chosen among
                      C_GRID by stratified 5-fold cross-validation (AUROC) inside the
                      fitting texts only; score(t) = the fitted logit
    sparse_probe_k<k> SAEBench's k-sparse probe, k in (1, 2, 5): the k SAE latents with
                      the largest |mean strength of c - mean strength of the rest| on
                      the train texts (ties: lower index), then the probe above on
                      those k pooled strengths only
    heldout_auroc     stats.auroc of the score: held-out texts of c against the other
                      held-out texts (NaN without held-out texts of c)
    register_holdout  leave-one-register-out, as stats.leave_one_register_out does it
                      for the specialist: for each register r of c, the method is
                      re-fitted (latents re-selected) on the train texts without c's
                      texts of register r, then scored by AUROC on all of c's texts of
                      register r (train and held-out: none was seen) against the
                      held-out texts of the other categories;
                      {"by_register": {r: {"auroc", "n"[, "features"]}}, "mean_auroc", "min_auroc"}
    vs_diffmean       is the specialist better than DiffMean on the same held-out texts?
                      stats.paired_auroc_test of the specialist's held-out strengths
                      against DiffMean's held-out scores: d = AUROC(specialist) -
                      AUROC(DiffMean), texts resampled with replacement within c and
                      within the rest (the same resample for both), (1 - alpha)
                      percentile interval; verdict 'stronger' (the specialist is better:
                      interval above 0), 'weaker' (below 0) or 'no_difference'.
                      overall_vs_diffmean: the same test on the mean over categories;
                      vs_diffmean_mean, overall_vs_diffmean_mean: both against diffmean_mean.

supervised_baselines works on pooled arrays (and, for DiffMean, the token
activations: TokenActivations); hook_baselines takes what the analyze stage holds
(the feature table, the token activations, the token table, the specialists) and
pools both itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..cli import rounded
from ..config import CATEGORIES
from .results import Specialist
from .stats import auroc, paired_auroc_test, specialist_scores

PROBE_C = 1.0
"""Inverse L2 strength of the probes on standardised inputs (scikit-learn's default)."""
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
"""Candidate C with C=None: cross-validated inside the fitting texts (ties: the smaller C)."""
SPARSE_KS = (1, 2, 5)
"""SAEBench's k of the sparse probes."""
SPARSE = "sparse_probe_k"


def pool_text_max(acts: np.ndarray, text_index: np.ndarray, n_texts: int) -> np.ndarray:
    """[n_texts, d]: each dimension's strongest value over each text's kept tokens, the
    pooling FeatureTable.per_text_max gives the SAE latents (a text without kept
    tokens gets 0, as it does there). acts: [n_kept, d], rows of text_index's texts."""
    acts, text_index = np.asarray(acts), np.asarray(text_index)
    if acts.ndim != 2 or len(acts) != len(text_index):
        raise ValueError(f"activations {acts.shape} and text_index ({len(text_index)} rows) differ: re-run dvc repro")
    out = np.full((n_texts, acts.shape[1]), -np.inf, dtype=acts.dtype)
    np.maximum.at(out, text_index, acts)
    out[np.isneginf(out).all(1)] = 0.0
    return out


@dataclass
class TokenActivations:
    """The raw activations per token, for DiffMean: acts [n_kept, d], text_index [n_kept]."""

    acts: np.ndarray
    text_index: np.ndarray
    n_texts: int

    def __post_init__(self):
        self.acts, self.text_index = np.asarray(self.acts), np.asarray(self.text_index)
        if self.acts.ndim != 2 or len(self.acts) != len(self.text_index):
            raise ValueError(f"activations {self.acts.shape} and text_index ({len(self.text_index)} rows) differ: re-run dvc repro")
        counts = np.bincount(self.text_index, minlength=self.n_texts).astype(np.float64)
        sums = np.zeros((self.n_texts, self.acts.shape[1]))
        np.add.at(sums, self.text_index, self.acts)
        self.means = sums / np.maximum(counts, 1)[:, None]
        """[n_texts, d]: each text's mean activation over its kept tokens (0 without any)."""

    def max_projection(self, w: np.ndarray) -> np.ndarray:
        """[n_texts]: the strongest h . w over each text's kept tokens (0 without any)."""
        proj = self.acts.astype(np.float64) @ w
        out = np.full(self.n_texts, -np.inf)
        np.maximum.at(out, self.text_index, proj)
        out[np.isneginf(out)] = 0.0
        return out


def diffmean_direction(means: np.ndarray, labels: np.ndarray, rows: np.ndarray, category: str) -> np.ndarray:
    """DiffMean of `category` over the texts `rows`: mean of its texts' rows minus the others' mean."""
    return specialist_scores(means[rows], list(labels[rows]), category)


def top_mean_diff_latents(strength: np.ndarray, labels: list[str], category: str, k: int) -> np.ndarray:
    """The k latents with the largest |mean strength inside category - outside| (ties: lower index)."""
    diff = np.abs(specialist_scores(strength, labels, category))
    return np.argsort(-diff, kind="stable")[:k]


def fit_probe(X: np.ndarray, y: np.ndarray, C: float | None = PROBE_C, seed: int = 0):
    """Standardise (on X's rows only) then L2 logistic regression; C=None: C chosen
    among C_GRID by seeded stratified k-fold AUROC inside X. A fitted sklearn Pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C if C is None else C, class_weight="balanced", max_iter=2000))
    if C is not None:
        return pipe.fit(X, y)
    folds = int(min(5, y.sum(), (~y).sum()))
    if folds < 2:
        raise ValueError(f"choosing C by cross-validation needs at least 2 fitting texts on each side, got {int(y.sum())} inside")
    grid = GridSearchCV(pipe, {"logisticregression__C": list(C_GRID)}, scoring="roc_auc",
                        cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return grid.fit(X, y).best_estimator_


def fit_scores(method: str, raw: np.ndarray, strength: np.ndarray, labels: np.ndarray, rows: np.ndarray,
               category: str, C: float | None = PROBE_C, seed: int = 0,
               tokens: TokenActivations | None = None) -> tuple[np.ndarray, dict]:
    """Fit `method` for `category` on the texts `rows` (bool mask) and score every text.
    Returns (scores [n_texts], what was fitted: {"direction"} for DiffMean, {"features"}
    for sparse probes, {"C"} for probes). tokens: DiffMean from the token activations
    (module docstring); None: from the pooled rows `raw`."""
    lab = labels[rows]
    y = lab == category
    if y.all() or not y.any():
        raise ValueError(f"category {category!r} needs train texts both inside and outside it")
    if method in ("diffmean", "diffmean_mean"):
        w = diffmean_direction(raw if tokens is None else tokens.means, labels, rows, category)
        if tokens is None:
            return raw @ w, {"direction": w}
        return (tokens.max_projection(w) if method == "diffmean" else tokens.means @ w), {"direction": w}
    if method == "probe":
        m = fit_probe(raw[rows], y, C, seed)
        return m.decision_function(raw), {"C": float(m[-1].C)}
    if not method.startswith(SPARSE):
        raise ValueError(f"unknown baseline {method!r}: diffmean, probe or {SPARSE}<k>")
    feats = top_mean_diff_latents(strength[rows], list(lab), category, int(method.removeprefix(SPARSE)))
    m = fit_probe(strength[rows][:, feats], y, C, seed)
    return m.decision_function(strength[:, feats]), {"features": [int(f) for f in feats], "C": float(m[-1].C)}


@dataclass
class BaselineScore:
    """One method on one category."""

    heldout_auroc: float
    register_holdout: dict | None = None
    """As Specialist.register_holdout (the method re-fitted without each register); None without registers."""
    features: list[int] | None = None
    """Sparse probes: the SAE latents selected on the train texts."""
    C: float | None = None
    """Probes: the C of the train fit (fixed or cross-validated)."""

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, d: dict) -> BaselineScore:
        return cls(**d)


@dataclass
class Baselines:
    """supervised_baselines' result for one hook: `to_json()` is what a stage writes,
    `metrics_json()` the numbers for `dvc metrics`, `from_json` reads to_json back."""

    scores: dict[str, dict[str, BaselineScore]]
    """scores[category][method]: methods diffmean, probe, sparse_probe_k<k>."""
    vs_diffmean: dict[str, dict | None]
    """Per category: stats.paired_auroc_test of the specialist against DiffMean (None without held-out texts of c)."""
    overall_vs_diffmean: dict | None
    """The same test on the mean AUROC over categories."""
    settings: dict
    """pooling, C, ks, n_boot, alpha."""
    vs_diffmean_mean: dict[str, dict | None] | None = None
    """As vs_diffmean, against mean-pooled DiffMean (None without token activations)."""
    overall_vs_diffmean_mean: dict | None = None
    directions: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    """DiffMean's direction per category, fitted on the train texts [d_model] (not in to_json:
    save_directions / load_directions, for the steer stage)."""

    def verdicts(self, against: str = "diffmean") -> dict[str, int]:
        """How many categories' specialists are stronger than, tie with, or are weaker than
        DiffMean (against 'diffmean': max-pooled, as the specialist; 'diffmean_mean': mean-pooled)."""
        out = {"stronger": 0, "no_difference": 0, "weaker": 0}
        tests = self.vs_diffmean if against == "diffmean" else (self.vs_diffmean_mean or {})
        for t in tests.values():
            if t is not None:
                out[t["verdict"]] += 1
        return out

    def to_json(self) -> dict:
        return {
            "scores": {c: {m: s.to_json() for m, s in ms.items()} for c, ms in self.scores.items()},
            "vs_diffmean": self.vs_diffmean,
            "overall_vs_diffmean": self.overall_vs_diffmean,
            **({"vs_diffmean_mean": self.vs_diffmean_mean, "overall_vs_diffmean_mean": self.overall_vs_diffmean_mean}
               if self.vs_diffmean_mean is not None else {}),
            "settings": self.settings,
        }

    @classmethod
    def from_json(cls, d: dict) -> Baselines:
        return cls(
            scores={c: {m: BaselineScore.from_json(s) for m, s in ms.items()} for c, ms in d["scores"].items()},
            vs_diffmean=d["vs_diffmean"],
            overall_vs_diffmean=d["overall_vs_diffmean"],
            settings=d["settings"],
            vs_diffmean_mean=d.get("vs_diffmean_mean"),
            overall_vs_diffmean_mean=d.get("overall_vs_diffmean_mean"),
        )

    def metrics_json(self) -> dict:
        loro = lambda s: {"register_holdout_min_auroc": rounded(s.register_holdout["min_auroc"])} if s.register_holdout else {}  # noqa: E731
        return {
            "specialist_vs_diffmean": self.verdicts(),
            "overall_vs_diffmean": self.overall_vs_diffmean,
            **({"specialist_vs_diffmean_mean": self.verdicts("diffmean_mean"), "overall_vs_diffmean_mean": self.overall_vs_diffmean_mean}
               if self.vs_diffmean_mean is not None else {}),
            "heldout_auroc": {c: {m: {"heldout_auroc": rounded(s.heldout_auroc), **loro(s)} for m, s in ms.items()}
                              for c, ms in self.scores.items()},
        }


def _check(name: str, x: np.ndarray, n_texts: int, stage: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) != n_texts:
        raise ValueError(f"{name} have shape {x.shape}, expected one row per text ({n_texts})")
    bad = ~np.isfinite(x).all(1)
    if bad.any():
        raise ValueError(f"{name} have {int(bad.sum())} texts with NaN or infinite values (first: text {int(bad.argmax())}); "
                         f"re-run dvc repro (stage {stage})")
    return x


def supervised_baselines(
    raw: np.ndarray,
    strength: np.ndarray,
    labels: list[str],
    splits: list[str],
    specialists: dict[str, Specialist],
    rng: np.random.Generator,
    n_boot: int = 1000,
    alpha: float = 0.05,
    registers: list[str] | None = None,
    C: float | None = PROBE_C,
    ks=SPARSE_KS,
    categories=CATEGORIES,
    tokens: TokenActivations | None = None,
) -> Baselines:
    """DiffMean, the probe and the sparse probes of every category, fitted on the train
    texts; their held-out and (given registers) leave-one-register-out AUROC; the
    specialist against DiffMean (module docstring).

    raw: [n_texts, d_model] pooled raw activations (pool_text_max); strength:
    [n_texts, d_sae] pooled SAE strengths (FeatureTable.per_text_max), the specialist's
    input; specialists: specialist_statistics' result on the same texts; tokens: the
    raw activations per token, for DiffMean (None: DiffMean on the rows of raw)."""
    cats = list(categories)
    lab, sp = np.asarray(labels), np.asarray(splits)
    raw = _check("raw activations", raw, len(lab), "extract")
    strength = _check("SAE strengths", strength, len(lab), "encode")
    train, ho = sp == "train", sp == "heldout"
    for c in cats:
        if (lab[train] == c).all() or not (lab[train] == c).any():
            raise ValueError(f"category {c!r} needs train texts both inside and outside it")
    if train.any() and (np.ptp(raw[train], axis=0) == 0).all():
        raise ValueError("raw activations are the same for every train text: no direction to fit; "
                         "delete the activations and re-run dvc repro (stage extract)")
    reg = np.asarray(registers) if registers is not None else None
    seed = int(rng.integers(2**31 - 1))  # cross-validation folds
    methods = ["diffmean"] + (["diffmean_mean"] if tokens is not None else []) + ["probe"] + [f"{SPARSE}{k}" for k in ks]

    scores, dm_ho, dmm_ho, directions = {}, {}, {}, {}
    for c in cats:
        scores[c] = {}
        for m in methods:
            s, fitted = fit_scores(m, raw, strength, lab, train, c, C, seed, tokens)
            if m == "diffmean":
                dm_ho[c], directions[c] = s[ho], fitted.pop("direction")
            elif m == "diffmean_mean":
                dmm_ho[c] = s[ho]
                fitted.pop("direction")
            scores[c][m] = BaselineScore(
                heldout_auroc=auroc(s[ho & (lab == c)], s[ho & (lab != c)]),
                register_holdout=_register_holdout(m, raw, strength, lab, sp, reg, c, C, seed, tokens) if reg is not None else None,
                **fitted,
            )

    # the specialist against DiffMean, on the held-out texts
    lab_ho = lab[ho]
    spec_ho = {c: strength[ho, specialists[c].feature] for c in cats}
    vs, overall = _versus(spec_ho, dm_ho, lab_ho, cats, rng, n_boot, alpha)
    vs_mean = overall_mean = None
    if dmm_ho:
        vs_mean, overall_mean = _versus(spec_ho, dmm_ho, lab_ho, cats, rng, n_boot, alpha)
    settings = {"pooling": "max over the text's kept tokens", "C": C if C is not None else "cv", "ks": [int(k) for k in ks],
                "n_boot": int(n_boot), "alpha": alpha,
                "diffmean": "token means per text" if tokens is not None else "one row per text"}
    return Baselines(scores=scores, vs_diffmean=vs, overall_vs_diffmean=overall, settings=settings, directions=directions,
                     vs_diffmean_mean=vs_mean, overall_vs_diffmean_mean=overall_mean)


def _versus(spec_ho: dict, other_ho: dict, lab_ho: np.ndarray, cats: list[str], rng, n_boot: int, alpha: float):
    """Per category and over all: stats.paired_auroc_test of the specialist's held-out strengths
    against another method's held-out scores (per category None without texts on both sides)."""
    vs = {}
    for c in cats:
        if not (lab_ho == c).any() or (lab_ho == c).all():
            vs[c] = None
            continue
        binary = np.where(lab_ho == c, c, "not " + c)
        # two "categories", c and the rest, scored by s and -s: their mean AUROC is c's AUROC of s,
        # and the texts are resampled within c and within the rest
        two = lambda s: np.stack([s, -s], 1)  # noqa: E731
        vs[c] = paired_auroc_test(two(spec_ho[c]), two(other_ho[c]), binary, rng, n_boot, alpha, categories=(c, "not " + c))
    overall = None
    if all(v is not None for v in vs.values()):
        overall = paired_auroc_test(np.stack([spec_ho[c] for c in cats], 1), np.stack([other_ho[c] for c in cats], 1),
                                    lab_ho, rng, n_boot, alpha, categories=cats)
    return vs, overall


def _register_holdout(method, raw, strength, lab, sp, reg, c, C, seed, tokens) -> dict | None:
    """stats.leave_one_register_out for one method and category."""
    by_reg = {}
    for r in sorted(set(reg[lab == c]) - {""}):
        left_out = (lab == c) & (reg == r)
        rows = (sp == "train") & ~left_out
        if not (lab[rows] == c).any():
            continue
        s, fitted = fit_scores(method, raw, strength, lab, rows, c, C, seed, tokens)
        neg = (sp == "heldout") & (lab != c)
        by_reg[r] = {"auroc": auroc(s[left_out], s[neg]), "n": int(left_out.sum()),
                     **({"features": fitted["features"]} if "features" in fitted else {})}
    if not by_reg:
        return None
    vals = [v["auroc"] for v in by_reg.values()]
    return {"by_register": by_reg, "mean_auroc": float(np.mean(vals)), "min_auroc": float(np.min(vals))}


def hook_baselines(ft, raw_acts: np.ndarray, table, specialists: dict[str, Specialist], rng: np.random.Generator,
                   cfg, C: float | None = PROBE_C) -> Baselines:
    """supervised_baselines from what analyze_hook is given: ft the hook's FeatureTable,
    raw_acts [n_kept, d_model] its token activations, table the TokenTable, cfg the
    AnalysisConfig (n_bootstrap, alpha), specialists analyze_hook's."""
    n = len(table.texts)
    registers = [t.get("register", "") for t in table.texts]
    return supervised_baselines(
        pool_text_max(raw_acts, table.text_index, n), ft.per_text_max(table.text_index, n),
        [t["category"] for t in table.texts], [t["split"] for t in table.texts], specialists, rng,
        cfg.n_bootstrap, cfg.alpha, registers=registers if any(registers) else None, C=C,
        tokens=TokenActivations(raw_acts, table.text_index, n),
    )


def save_directions(path, directions: dict[str, np.ndarray], hook: str) -> None:
    """DiffMean's directions of one hook, one float32 tensor per category (safetensors, atomically;
    activations.save_tensors: the same bytes on every run)."""
    from pathlib import Path

    import torch

    from ..activations import save_tensors

    save_tensors(Path(path), {c: torch.tensor(np.asarray(w), dtype=torch.float32) for c, w in sorted(directions.items())},
                 {"hook": hook, "what": "DiffMean direction per category (analysis/baselines.py)"})


def load_directions(path) -> dict[str, np.ndarray]:
    """save_directions' file read back: {category: [d_model] float32}."""
    from pathlib import Path

    from safetensors.numpy import load_file

    if not Path(path).exists():
        raise FileNotFoundError(f"{path} is missing: run dvc repro (stage analyze writes the DiffMean directions)")
    return load_file(str(path))
