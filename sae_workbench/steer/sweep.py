"""What every steering method shares: the interface a model kind's steering
implements (`Steering`: generation for causal LMs, embedding drift for
encoders), the context it is given, and how a sweep of coefficients is read
(`best_coefficient`, `slope`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import SteerConfig
from ..models import ModelHandle, TokenizedText


def best_coefficient(coefficients: list[float], score: list[float], cost: list[float], max_cost: float) -> float | None:
    """The coefficient with the highest score among those with cost <= max_cost
    (ties: the smaller |coefficient|); None when none qualifies."""
    ok = [i for i, c in enumerate(cost) if c <= max_cost]
    if not ok:
        return None
    return coefficients[max(ok, key=lambda i: (score[i], -abs(coefficients[i])))]


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of y on x."""
    return float(np.polyfit(np.asarray(x, dtype=float), np.asarray(y, dtype=float), 1)[0])


@dataclass
class SteeringContext:
    """What one study's steering, ablation and attribution share across features."""

    tokenize: object
    """text -> TokenizedText."""
    held: list = field(default_factory=list)
    """The held-out evaluation texts (data.Text)."""
    prompts: list[torch.Tensor] = field(default_factory=list)
    """causal_lm: the prompts as [1, pos] id tensors starting with BOS."""
    centroids: dict[str, torch.Tensor] | None = None
    """encoder: category centroids of the unsteered train texts."""
    classifier: object = None
    """causal_lm: judge.CategoryClassifier, the independent judge of continuations."""
    n_boot: int = 1000
    """Bootstrap resamples and level of the intervals and tests over prompts (params: analysis.*)."""
    alpha: float = 0.05
    seed: int = 0


def per_coef(coefs, values):
    return {str(c): v for c, v in zip(coefs, values)}


def pick(items: list, idx) -> list:
    return items if idx is None else [items[i] for i in idx]


def tokenizer(handle: ModelHandle, max_tokens: int):
    cache: dict[str, TokenizedText] = {}

    def tok(t):
        if t.text not in cache:
            cache[t.text] = handle.tokenize(t.text, max_tokens)
        return cache[t.text]

    return tok


class Steering:
    """How one model kind is steered (`ModelKind.steering` names it; `steer.study.STEERING`
    holds one of each): the sweep of one feature, how to read it, and the per-text
    score and metric that ablation and attribution use. Subclasses: generation
    (causal LMs) and embedding drift (encoders)."""

    name: str = ""
    result_type: type = object
    """The dataclass `sweep` returns (read back by SteerStudy.from_json)."""
    ablation_score: str = ""
    """What the per-text ablation score is, in words."""
    ablation_accuracy: bool = False
    """Whether a score > 0 means 'classified as its own category' (ablation accuracy reported)."""
    attribution_metric_name: str = ""
    compares_methods: bool = False
    """Whether compare_methods steers the specialists beside DiffMean and prompting."""

    def steering_context(self, handle: ModelHandle, texts: list, cfg: SteerConfig, max_tokens: int) -> SteeringContext:
        raise NotImplementedError

    def sweep(self, handle, sae, feature: int, hook: str, max_act: float, coefs: list[float], ctx: SteeringContext,
              category: str, mode: str, cfg: SteerConfig):
        """The steering study of one feature towards `category` (a result dataclass)."""
        raise NotImplementedError

    def curve(self, result, category: str) -> list[float]:
        """Per coefficient: the score whose slope says whether steering moved towards `category`."""
        raise NotImplementedError

    def headline(self, result, coefs: list[float], ctx: SteeringContext, category: str, cfg: SteerConfig) -> tuple[dict, dict]:
        """(fields for data/steer/results.json, fields for metrics/steer.json) of the headline sweep."""
        raise NotImplementedError

    def ablation_scores(self, handle: ModelHandle, toks: list[TokenizedText], labels: list[str], ctx: SteeringContext):
        """scores(hook=None, edit=None, idx=None) -> [len(idx)] (idx None: every text), for ablation.ablation_study."""
        raise NotImplementedError

    def attribution_metric(self, ctx: SteeringContext, category: str):
        """(metric for attribution.feature_attribution, its name)."""
        raise NotImplementedError

    def compare_methods(self, handle, sae, specs: dict, directions: dict, ctx: SteeringContext, cfg: SteerConfig,
                        sae_results: dict, max_tokens: int) -> dict | None:
        """The specialists beside DiffMean and prompting (`steer.methods`), or None where the
        kind has no such comparison. sae_results: the specialists' add-mode sweeps already run."""
        return None
