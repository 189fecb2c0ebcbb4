"""Does the steer.category specialist cause what it detects? The steering study
behind stages/steer.py: steering sweeps, ablation and attribution of one hook's
specialists, with the measures the model's kind defines.

    study = steer_study(handle, sae, specs, texts, cfg, kind, features_path, seed, max_tokens)
    study.to_json()       # everything, for data/steer/results.json
    study.metrics_json()  # headline numbers, for metrics/steer.json
    SteerStudy.read()     # both read back (SteerStudy.from_json)

Definitions of every measure: `steer.generation` (causal LMs), `steer.embedding`
(encoders), `steer.ablation`, `steer.attribution`; the model kind's `steering`
names which of STEERING applies.
- steering sweep of cfg.coefficients (x the feature's max activation) in
  cfg.mode (and the other mode too if cfg.both_modes), every other category's
  specialist too if cfg.all_specialists;
- every specialist beside its category's DiffMean direction and a prompt naming the
  concept (`steer.methods`, causal LMs, cfg.compare_methods, given the directions);
- ablation of every category's specialist and of a frequency-matched random control;
- act x grad attribution of one text's output metric to the SAE features.
Returns a SteerStudy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..analysis.stats import paired_difference
from ..cli import read_json, rounded
from ..config import CATEGORIES, SteerConfig
from ..edits import MODES
from ..features import load_features
from ..kinds.base import ModelKind
from .ablation import ablation_roles, ablation_study, ablation_subsets
from .attribution import feature_attribution
from .embedding import EmbeddingSteering
from .generation import GenerationSteering
from .sweep import Steering, slope

STEERING: dict[str, Steering] = {s.name: s for s in (GenerationSteering(), EmbeddingSteering())}
"""How each model kind is steered, by `ModelKind.steering`."""


def steering_for(kind: ModelKind) -> Steering:
    return STEERING[kind.steering]


@dataclass
class SteerStudy:
    """What steer_study measured. Sweeps are the kind's sweep results (one per
    mode); the kind-specific headline numbers sit in `headline` (results file)
    and `headline_metrics` (metrics file)."""

    hook: str
    category: str
    feature: int
    max_act: float
    mode: str
    coefficients: list[float]
    headline: dict
    headline_metrics: dict
    best_coefficient: float
    best_rule: str
    sweeps: dict
    attribution: dict
    per_feature: dict | None = None
    """Every specialist steered towards its own category (steer.all_specialists)."""
    per_feature_metrics: dict | None = None
    ablation: dict | None = None
    """Specialists and frequency-matched controls ablated (steer.ablation)."""
    methods: dict | None = None
    """Per category: the specialist, DiffMean and a prompt steering side by side (steer.methods)."""

    @property
    def attribution_specialist_rank(self) -> int:
        """Rank of the steered feature in the attribution of its text."""
        return next(p["rank"] for p in self.attribution["per_token"] if p["feature"] == self.feature)

    def to_json(self) -> dict:
        out = {"hook": self.hook, "category": self.category, "feature": self.feature, "max_act": self.max_act,
               "mode": self.mode, "coefficients": self.coefficients, **self.headline,
               "best_coefficient": self.best_coefficient, "best_rule": self.best_rule,
               "sweeps": {m: asdict(s) for m, s in self.sweeps.items()}}
        if self.per_feature is not None:
            out["per_feature"] = self.per_feature
        if self.ablation is not None:
            out["ablation"] = self.ablation
        if self.methods is not None:
            out["methods"] = self.methods
        out["attribution"] = self.attribution
        return rounded(out)

    RESULT_KEYS = ("hook", "category", "feature", "max_act", "mode", "coefficients", "best_coefficient", "best_rule", "sweeps",
                   "per_feature", "ablation", "methods", "attribution")
    METRICS_KEYS = ("feature", "mode", "best_coefficient", "per_feature", "ablation", "methods", "attribution_specialist_rank")

    @classmethod
    def from_json(cls, d: dict, metrics: dict) -> SteerStudy:
        """Inverse of to_json and metrics_json: d is data/steer/results.json, metrics
        metrics/steer.json; the sweeps come back as the kind's result dataclass."""
        return cls(
            hook=d["hook"], category=d["category"], feature=d["feature"], max_act=d["max_act"], mode=d["mode"],
            coefficients=d["coefficients"], headline={k: v for k, v in d.items() if k not in cls.RESULT_KEYS},
            headline_metrics={k: v for k, v in metrics.items() if k not in cls.METRICS_KEYS},
            best_coefficient=d["best_coefficient"], best_rule=d["best_rule"],
            sweeps={m: sweep_from_json(s) for m, s in d["sweeps"].items()}, attribution=d["attribution"],
            per_feature=d.get("per_feature"), per_feature_metrics=metrics.get("per_feature"), ablation=d.get("ablation"),
            methods=d.get("methods"),
        )

    @classmethod
    def read(cls, results: str | Path = "data/steer/results.json", metrics: str | Path = "metrics/steer.json") -> SteerStudy:
        return cls.from_json(read_json(results), read_json(metrics))

    def metrics_json(self) -> dict:
        out = {"feature": self.feature, "mode": self.mode, **self.headline_metrics, "best_coefficient": self.best_coefficient}
        if self.per_feature_metrics is not None:
            out["per_feature"] = self.per_feature_metrics
        if self.ablation is not None:
            out["ablation"] = {c: {"specialist_drop": r["specialist"]["drop"], "control_drop": r["control"]["drop"],
                                   **({"difference": r["specialist_vs_control"]["diff"], "ci_low": r["specialist_vs_control"]["ci_low"],
                                       "ci_high": r["specialist_vs_control"]["ci_high"], "verdict": r["specialist_vs_control"]["verdict"]}
                                      if "specialist_vs_control" in r else {})}
                               for c, r in self.ablation["categories"].items()}
        if self.methods is not None:
            from .methods import method_tally

            out["methods"] = {"tally": method_tally(self.methods),
                              **{c: {m: {"best_coefficient": r[m]["best_coefficient"], "combined": r[m]["best_combined"]["mean"],
                                         "works": r[m]["works"]} for m in ("sae", "diffmean", "prompt")}
                                 | {f"{b}_vs_sae": {k: r[f"{b}_vs_sae"][k] for k in ("diff", "ci_low", "ci_high", "verdict")}
                                    for b in ("diffmean", "prompt")}
                                 for c, r in self.methods.items()}}
        out["attribution_specialist_rank"] = self.attribution_specialist_rank
        return rounded(out)


def sweep_from_json(d: dict):
    """A sweep result read back: the result dataclass of the steering whose fields d has."""
    for steering in STEERING.values():
        if set(d) == {f.name for f in fields(steering.result_type)}:
            return steering.result_type(**d)
    raise ValueError(f"a steering sweep with fields {sorted(d)} matches no steering of {', '.join(STEERING)}: re-run dvc repro")


def steer_study(handle, sae, specs: dict, texts: list, cfg: SteerConfig, kind: ModelKind, features_path: str | Path, seed: int,
                max_tokens: int, n_boot: int = 1000, alpha: float = 0.05, directions: dict | None = None) -> SteerStudy:
    """The study (module docstring); specs: the hook's specialists (HookAnalysis.specialists);
    n_boot, alpha: the bootstrap intervals and tests (params: analysis.n_bootstrap, analysis.alpha);
    directions: DiffMean's direction per category at cfg.hook (analysis.baselines.load_directions),
    None: no comparison of methods."""
    if cfg.category not in specs:
        raise ValueError(f"the analysis of {cfg.hook} has no {cfg.category} specialist: re-run dvc repro")
    feature, max_act = specs[cfg.category].feature, float(specs[cfg.category].max_act or 0)
    if max_act <= 0:
        raise ValueError(f"the {cfg.category} specialist at {cfg.hook} never fires on the evaluation texts: nothing to steer")
    coefs = sorted(cfg.coefficients)
    modes = [cfg.mode] + ([m for m in MODES if m != cfg.mode] if cfg.both_modes else [])

    # steering, as the model's kind does it (generation or embedding drift)
    steering = steering_for(kind)
    ctx = steering.steering_context(handle, texts, cfg, max_tokens)
    ctx.n_boot, ctx.alpha, ctx.seed = n_boot, alpha, seed
    tok, held = ctx.tokenize, ctx.held
    sweeps = {m: steering.sweep(handle, sae, feature, cfg.hook, max_act, coefs, ctx, cfg.category, m, cfg)
              for m in tqdm(modes, desc=f"steer {cfg.category} feature {feature}", unit="mode")}
    g = sweeps[cfg.mode]
    res_fields, met_fields = steering.headline(g, coefs, ctx, cfg.category, cfg)
    per_feature = per_feature_metrics = abl_result = methods = None
    add_sweeps = {cfg.category: sweeps["add"]} if "add" in sweeps else {}

    def judged(r):
        """Slope of the independent classifier's P(category) over coefficients, and the test of the best
        coefficient's combined score against unsteered, where the kind has them."""
        probs = getattr(r, "classifier_prob", None)
        out = {"classifier_slope": slope(coefs, probs)} if probs and not any(np.isnan(probs)) else {}
        if getattr(r, "versus_unsteered", None) is not None and r.best_coefficient is not None:
            t = r.versus_unsteered[str(r.best_coefficient)]
            out.update(works=r.works, best_diff=t["diff"], best_ci_low=t["ci_low"], best_ci_high=t["ci_high"])
        return out

    # one curve per feature: every category's specialist towards its own category (steer.category's is the sweep above)
    if cfg.all_specialists:
        per_feature, per_feature_metrics = {}, {}
        for c in tqdm(CATEGORIES, desc="steer every specialist", unit="feature"):
            f, m = specs[c].feature, float(specs[c].max_act or 0)
            if m <= 0:
                continue
            r = g if c == cfg.category else steering.sweep(handle, sae, f, cfg.hook, m, coefs, ctx, c, cfg.mode, cfg)
            if cfg.mode == "add":
                add_sweeps[c] = r
            per_feature[c] = {"feature": f, "max_act": m, "significant": specs[c].significant, **asdict(r)}
            per_feature_metrics[c] = {"feature": f, "slope": slope(coefs, steering.curve(r, c)), **judged(r), "best_coefficient": r.best_coefficient}

    # the specialists beside DiffMean and a prompt naming the concept
    if cfg.compare_methods and directions is not None:
        methods = steering.compare_methods(handle, sae, {c: specs[c] for c in CATEGORIES if c in specs}, directions, ctx, cfg,
                                           add_sweeps, max_tokens)

    # ablation: every specialist of the hook, and a frequency-matched random control
    labels = [t.category for t in held]
    if cfg.ablation:
        ft = load_features(features_path)
        if ft.d_sae != int(sae.cfg.d_sae):
            raise ValueError(f"{features_path} has d_sae {ft.d_sae} but the SAE has {sae.cfg.d_sae}: re-run dvc repro")
        freq = np.bincount(ft.feature, minlength=ft.d_sae) / max(1, ft.n_rows)
        rng = np.random.default_rng(seed)
        chosen = {c: specs[c].feature for c in CATEGORIES if c in specs}
        roles = ablation_roles(chosen, freq, rng, cfg.control_candidates)
        scores = steering.ablation_scores(handle, [tok(t) for t in held], labels, ctx)
        abl = ablation_study(scores, sae, cfg.hook, roles, labels, accuracy=steering.ablation_accuracy,
                             subsets=ablation_subsets(labels, cfg.ablation_texts))
        test_rng = np.random.default_rng(seed)
        for c, r in abl.items():
            for role in r.values():
                role["frequency"] = float(freq[role["feature"]])
            r["specialist"]["significant"] = specs[c].significant
            r["specialist_vs_control"] = paired_difference(r["specialist"]["drops"], r["control"]["drops"], test_rng, n_boot, alpha)
        abl_result = {"score": steering.ablation_score, "drop": "mean over the category's scored held-out texts of score(clean) - score(ablated)",
                      "test": ("specialist_vs_control: paired bootstrap over the category's texts of the specialist's drop minus the "
                               "control's (verdict 'higher': ablating the specialist costs its category more than the control)"),
                      "texts_per_category": cfg.ablation_texts, "texts": [t.id for t in held], "categories": abl}

    # attribution
    pick = cfg.attribution_text or next((t.id for t in held if t.category == cfg.category), "")
    text = next((t for t in texts if t.id == pick), None)
    if text is None:
        raise ValueError(f"steer.attribution_text {pick!r} is not a text id of the evaluation texts")
    metric, metric_name = steering.attribution_metric(ctx, text.category)
    att = feature_attribution(handle, sae, cfg.hook, tok(text), metric, cfg.attribution_top, 3, (feature,))
    att.update(text_id=text.id, category=text.category, text=text.text, metric_name=metric_name)
    return SteerStudy(
        hook=cfg.hook, category=cfg.category, feature=feature, max_act=max_act, mode=cfg.mode, coefficients=coefs,
        headline=res_fields, headline_metrics=met_fields, best_coefficient=g.best_coefficient, best_rule=g.best_rule,
        sweeps=sweeps, attribution=att, per_feature=per_feature, per_feature_metrics=per_feature_metrics, ablation=abl_result,
        methods=methods,
    )
