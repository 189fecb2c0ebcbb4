"""Typed results of the analyses: what a stage writes is their `to_json()` (and
`metrics_json()` for `dvc metrics`); `from_json` reads them back."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..activations import TokenTable, load_token_table
from ..cli import read_json, rounded, write_json
from ..features import FeatureTable, load_features, save_features

NAN = float("nan")


@dataclass
class Specialist:
    """One category's specialist feature: selected on the train texts
    (find_specialists), measured on the held-out texts (specialist_statistics)."""

    feature: int
    train_score: float
    train_auroc: float
    heldout_score: float
    mean_in_heldout: float
    heldout_auroc: float = NAN
    auroc_ci_low: float = NAN
    auroc_ci_high: float = NAN
    ci_low: float = NAN
    """Bootstrap 95% interval of the held-out score (ci_low, ci_high)."""
    ci_high: float = NAN
    p_value: float = NAN
    """Permutation p-value of the held-out AUROC, the null repeating the whole search."""
    significant: bool = False
    """p_value < alpha and auroc_ci_low > 0.5."""
    register_holdout: dict | None = None
    """leave_one_register_out's entry for the category, when texts have registers."""
    max_act: float | None = None
    """Strongest activation of the feature on any evaluation token (analyze_hook)."""

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, d: dict) -> Specialist:
        """Inverse of to_json (the fields it leaves out, being None, come back as None)."""
        return cls(**d)


@dataclass
class SpecialistCount:
    """How many of the categories' specialists are positive / significant on the held-out texts."""

    positive: int
    significant: int
    positive_ci: list[float]
    """Bootstrap 95% interval of the number positive."""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> SpecialistCount:
        return cls(**d)


@dataclass
class HookAnalysis:
    """Everything analyze_hook measures on one hook: `to_json()` is the report's
    data/analysis/<hook>.json, `metrics_json()` the numbers for `dvc metrics`."""

    rankings: dict[str, list[dict]]
    specialists: dict[str, Specialist]
    count: SpecialistCount
    score_matrix: dict[str, list[float]]
    """score_matrix[c][j]: held-out score for category c of category j's specialist."""
    coactivation: list[dict]
    cards: dict[str, dict]
    neuronpedia: str | None
    summary: dict = field(default_factory=dict)
    """Token-level numbers: n_tokens, L0, alive features, coverage, ..."""

    def to_json(self) -> dict:
        return {
            "rankings": self.rankings,
            "specialists": {c: s.to_json() for c, s in self.specialists.items()},
            "specialist_count": self.count.to_json(),
            "specialist_score_matrix": self.score_matrix,
            "coactivation": self.coactivation,
            "cards": self.cards,
            "neuronpedia": self.neuronpedia,
        }

    @classmethod
    def from_json(cls, d: dict, metrics: dict | None = None) -> HookAnalysis:
        """Inverse of to_json: d is data/analysis/<hook>.json (whose "hook" key, added by
        the analyze stage, is not part of the result). The summary is not in d: given
        metrics, the hook's metrics_json() (metrics/analysis/<hook>.json), it is read
        from there, else left empty."""
        a = cls(
            rankings=d["rankings"],
            specialists={c: Specialist.from_json(s) for c, s in d["specialists"].items()},
            count=SpecialistCount.from_json(d["specialist_count"]),
            score_matrix=d["specialist_score_matrix"],
            coactivation=d["coactivation"],
            cards=d["cards"],
            neuronpedia=d["neuronpedia"],
        )
        if metrics is not None:
            derived = a.metrics_json()  # with an empty summary: only the keys derived from the specialists
            a.summary = {k: v for k, v in metrics.items() if k not in derived}
        return a

    def metrics_json(self) -> dict:
        spec = self.specialists
        return {
            **self.summary,
            "specialists_heldout_positive": self.count.positive,
            "specialists_heldout_positive_ci_low": self.count.positive_ci[0],
            "specialists_heldout_positive_ci_high": self.count.positive_ci[1],
            "specialists_significant": self.count.significant,
            "mean_heldout_auroc": rounded(np.mean([v.heldout_auroc for v in spec.values()])),
            "specialists": {
                c: {
                    "feature": v.feature,
                    "train_score": rounded(v.train_score),
                    "heldout_score": rounded(v.heldout_score),
                    "ci_low": rounded(v.ci_low),
                    "ci_high": rounded(v.ci_high),
                    "heldout_auroc": rounded(v.heldout_auroc),
                    "auroc_ci_low": rounded(v.auroc_ci_low),
                    "auroc_ci_high": rounded(v.auroc_ci_high),
                    "p_value": rounded(v.p_value),
                    "significant": v.significant,
                    **({"register_holdout_auroc": rounded(v.register_holdout["mean_auroc"]),
                        "register_holdout_min_auroc": rounded(v.register_holdout["min_auroc"])} if v.register_holdout else {}),
                }
                for c, v in spec.items()
            },
        }


@dataclass
class HookComparison:
    """What compare_hooks measures across hooks: `to_json()` is the report's
    data/compare.json, `metrics_json()` the numbers for `dvc metrics`
    (metrics/compare.json)."""

    hooks: list[str]
    per_hook: dict[str, dict]
    """Per hook: significant, positive, positive_ci, mean_heldout_auroc (from its metrics)."""
    specialist_table: dict[str, dict[str, dict]]
    """specialist_table[c][hook]: the hook's specialist of category c (feature, held-out score, AUROC, p, ...)."""
    heldout_score_matrix: dict[str, dict[str, list[float]]]
    """Per hook, its HookAnalysis.score_matrix."""
    top5_strongest: dict[str, list[dict]]
    coverage: dict[str, dict[str, float]]
    components_vs_resid: list[dict]
    """Each mlp_out / attn_out hook against the residual stream it writes into, with the paired test."""
    best_hook: str
    best_hook_vs_runner_up: dict | None
    """The paired test of the best hook against the runner-up (None with one hook)."""

    def to_json(self) -> dict:
        return {
            "hooks": self.hooks,
            "per_hook": self.per_hook,
            "specialist_table": self.specialist_table,
            "heldout_score_matrix": self.heldout_score_matrix,
            "top5_strongest": self.top5_strongest,
            "coverage": self.coverage,
            "components_vs_resid": self.components_vs_resid,
        }

    @classmethod
    def from_json(cls, d: dict, metrics: dict) -> HookComparison:
        """Inverse of to_json and metrics_json: d is data/compare.json, metrics is
        metrics/compare.json (the best hook and its test against the runner-up are only there)."""
        return cls(**d, best_hook=metrics["best_hook"], best_hook_vs_runner_up=metrics["best_hook_vs_runner_up"])

    def metrics_json(self) -> dict:
        return {
            "significant_by_hook": {h: v["significant"] for h, v in self.per_hook.items()},
            "mean_auroc_by_hook": {h: v["mean_heldout_auroc"] for h, v in self.per_hook.items()},
            "best_hook": self.best_hook,
            "best_hook_vs_runner_up": self.best_hook_vs_runner_up,
            "components_vs_resid": {c["hook"]: {k: v for k, v in c.items() if k != "hook"} for c in self.components_vs_resid},
        }


@dataclass
class SeedStudy:
    """What seed_study measured on one hook: `metrics_json()` is its entry of
    metrics/seeds.json, `details_json()` data/seeds/<hook>/stability.json;
    `from_json(entry, details)` reads both back."""

    hook: str
    seeds: list[int]
    headline: dict[str, dict]
    """Per metric (explained_variance, l0, dead_frac, the kind's fidelity): mean and spread over seeds."""
    stability: dict
    """threshold, frac_stable and median_best_cosine (mean and spread over ordered seed pairs)."""
    pairs: list[dict]
    """Per ordered pair of seeds: frac_stable, median_best_cosine."""
    specialists: dict[str, dict]
    """Per category: the first seed's specialist, its best match in every other seed (matches), matched_in of other_seeds."""
    per_seed: dict[str, dict]
    """Per seed (as a string): its metrics."""

    @property
    def matched_in_every_seed(self) -> int:
        return sum(v["matched_in"] == v["other_seeds"] for v in self.specialists.values())

    def metrics_json(self) -> dict:
        return {
            "hook": self.hook,
            "seeds": self.seeds,
            "headline": self.headline,
            "stability": self.stability,
            "specialists_matched_in_every_seed": self.matched_in_every_seed,
            "specialists": {c: {k: v[k] for k in ("feature", "matched_in", "other_seeds")} for c, v in self.specialists.items()},
        }

    def details_json(self) -> dict:
        return json.loads(json.dumps({"pairs": self.pairs, "specialists": self.specialists, "per_seed": self.per_seed}, default=float))

    @classmethod
    def from_json(cls, entry: dict, details: dict) -> SeedStudy:
        """Inverse of metrics_json (entry: metrics/seeds.json[hook]) and details_json (details: stability.json)."""
        return cls(hook=entry["hook"], seeds=entry["seeds"], headline=entry["headline"], stability=entry["stability"],
                   pairs=details["pairs"], specialists=details["specialists"], per_seed=details["per_seed"])


LABELLED = "labelled"
"""Subdirectory of a model run's directory holding its labelled texts' tokens, features and specialists."""


def save_labelled(run_dir: str | Path, tokens_json: str | Path, ft: FeatureTable, hook: str, specialists: dict[str, Specialist]) -> None:
    """What a model's run keeps of the labelled texts (model_run.run_model(keep_labelled=True)) in
    run_dir/labelled/: their tokens.json (copied from the extraction), their features at `hook`
    (`features.save_features`) and the specialists (specialists.json, Specialist.to_json per category)."""
    d = Path(run_dir) / LABELLED
    d.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokens_json, d / "tokens.json")
    save_features(d / f"{hook}.safetensors", ft, hook, "custom")
    write_json(d / "specialists.json", {c: s.to_json() for c, s in specialists.items()})


def load_labelled(run_dir: str | Path, hook: str) -> tuple[TokenTable, FeatureTable, dict[str, Specialist]]:
    """Inverse of save_labelled: (token table, features at `hook`, specialists by category);
    a one-line ValueError when the run kept nothing or its files disagree."""
    d = Path(run_dir) / LABELLED
    if not (d / "specialists.json").exists():
        raise ValueError(f"{d} holds no labelled-text features: re-run the cross_model stage (dvc repro cross_model)")
    table, ft = load_token_table(d), load_features(d / f"{hook}.safetensors")
    if ft.n_rows != table.n_kept:
        raise ValueError(f"{d}: features of {hook} cover {ft.n_rows} tokens, the token table {table.n_kept}: re-run dvc repro cross_model")
    return table, ft, {c: Specialist.from_json(v) for c, v in read_json(d / "specialists.json").items()}
