"""The same questions on other models: the cross-model study (`cross_model_study`,
behind stages/cross_model.py), built on one model's run at one hook
(model_run.run_model: extraction, SAE training, specialist statistics).

The seed asks how interpretable different architectures are. Each profile of
cross_model.profiles (all-MiniLM-L6-v2 by default, an encoder: 6 layers, d_model
384, a WordPiece vocabulary of 30k lower-cased English pieces) is run through the
same pipeline as the chosen model, at the hook of matched relative depth
(`matched_hook`: blocks.9 of Gemma's 18 layers is 10/18 = 0.56 of the way up; of
MiniLM's 6 layers, blocks.2, 3/6 = 0.50, is the nearest), on the first
cross_model.corpus_texts corpus texts, with the SAE settings of params.yaml
(expansion, k, epochs) and the same labelled texts, split and statistics:

    specialists       stats.specialist_statistics: significant count, held-out AUROC,
                      leave-one-register-out AUROC (a register none of the training
                      texts of the category had)
    DiffMean          analysis.baselines.hook_baselines on the model's own activations:
                      the specialist against DiffMean (paired bootstrap per category)
    SAE               explained variance, L0 and dead fraction on held-out corpus tokens,
                      and the model kind's fidelity with the SAE spliced in (CE loss and
                      KL for a causal LM, the sentence embedding's cosine for an encoder)
    versus the chosen model
                      stats.paired_auroc_test: the chosen model's specialists against the
                      other model's on the same held-out texts (texts resampled within
                      category, the same resample for both)

The chosen model's row is read from what the pipeline wrote at cross_model.hook
(metrics/analysis, metrics/sae, data/baselines) and the random-weight control's
from metrics/control.json (control.py runs it through model_run.run_model too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .activations import load_token_table
from .analysis.baselines import Baselines, hook_baselines
from .analysis.results import HookAnalysis, Specialist
from .cli import JsonRecord, read_json, rounded
from .config import CATEGORIES, Params, hook_layer, matched_hook
from .data import Text
from .features import load_features
from .measure import SAEMetrics, rounded_as
from .model_run import run_model, specialist_rows, versus
from .models import load_model


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return rounded(float(np.mean(xs))) if xs else None


@dataclass
class ModelRow(JsonRecord):
    """One model's numbers at its hook, as metrics/cross_model.json holds them."""

    profile: str
    """params.yaml's profile name ('random' for the random-weight control)."""
    model: str
    kind: str
    hook: str
    relative_depth: float
    train_tokens: int | None = None
    explained_variance: float | None = None
    l0: float | None = None
    dead_frac: float | None = None
    fidelity: dict | None = None
    """The kind's fidelity measure ({} or None where not measured)."""
    specialists_significant: int | None = None
    mean_heldout_auroc: float | None = None
    mean_register_auroc: float | None = None
    """Mean over categories of the leave-one-register-out AUROC (None where not measured)."""
    specialist_vs_diffmean: dict | None = None
    """Counts of categories whose specialist is stronger than / ties / is weaker than DiffMean."""
    mean_diffmean_auroc: float | None = None
    diffmean_gap: float | None = None
    """mean_heldout_auroc - mean_diffmean_auroc."""
    specialists: dict | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class CrossModelStudy(JsonRecord):
    """metrics/cross_model.json: a row per model (the chosen one, each profile of
    cross_model.profiles, the random-weight control), and the chosen model's specialists
    against each other's on the shared held-out texts (paired); or only `skipped` (why)."""

    hook: str | None
    skipped: str | None = None
    rows: list | None = None
    """ModelRow.to_json() per model, the chosen model first."""
    versus: dict | None = None
    """By profile: stats.paired_auroc_test of the chosen model's specialists against that model's."""

    def to_json(self) -> dict:
        if self.skipped is not None:
            return {"hook": None, "skipped": self.skipped}
        return {"hook": self.hook, "rows": self.rows, "versus": self.versus}

    @classmethod
    def from_json(cls, d: dict) -> CrossModelStudy:
        return cls(hook=d.get("hook"), skipped=d.get("skipped"), rows=d.get("rows"), versus=d.get("versus"))

    def row_objects(self) -> list[ModelRow]:
        return [ModelRow.from_json(r) for r in self.rows or []]


def _depth(hook: str, n_layers: int) -> float:
    return round((hook_layer(hook) + 1) / n_layers, 4)


def _register_mean(specialists: dict[str, Specialist]) -> float | None:
    """Mean over categories of the leave-one-register-out AUROC (None where not measured)."""
    return _mean([(specialists[c].register_holdout or {}).get("mean_auroc") for c in CATEGORIES])


def baseline_summary(base: Baselines, mean_auroc: float | None) -> dict:
    dm = _mean([base.scores[c]["diffmean"].heldout_auroc for c in CATEGORIES if c in base.scores])
    return {"specialist_vs_diffmean": base.verdicts(), "mean_diffmean_auroc": dm,
            "diffmean_gap": rounded(mean_auroc - dm) if mean_auroc is not None and dm is not None else None}


def cross_model_study(params: Params, corpus: list[Text], labelled: list[Text], out_dir: str | Path, real_analysis: str | Path,
                      real_details: str | Path, real_sae: str | Path, real_baselines: str | Path, real_acts: str | Path,
                      real_features: str | Path, control: str | Path) -> CrossModelStudy:
    """The study at cross_model.hook (module docstring): each profile's SAE goes to
    out_dir/<profile>/<hook>/, its labelled texts' tokens, features and specialists to
    out_dir/<profile>/labelled/ (analysis.results.save_labelled; the explain stage reads them with load_labelled). real_*: the chosen model's analysis metrics and details,
    SAE metrics, baselines (data/baselines), labelled-text activations and features at that hook;
    control: metrics/control.json."""
    from .control import ControlStudy

    cfg, hook = params.cross_model, params.cross_model.hook
    main = params.model
    real = HookAnalysis.from_json(read_json(Path(real_details) / f"{hook}.json"), read_json(Path(real_analysis) / f"{hook}.json"))
    real_m = real.metrics_json()
    sae_m = SAEMetrics.read(Path(real_sae) / f"{hook}.json")
    base = Baselines.from_json(read_json(Path(real_baselines) / f"{hook}.json"))
    real_table = load_token_table(real_acts)
    real_ft = load_features(Path(real_features) / f"{hook}.safetensors")
    specs = real.specialists
    rows = [ModelRow(
        profile=params.model_key, model=main.name, kind=main.kind, hook=hook, relative_depth=_depth(hook, main.n_layers),
        train_tokens=sae_m.train_tokens, explained_variance=sae_m.explained_variance, l0=sae_m.l0, dead_frac=sae_m.dead_frac,
        fidelity=sae_m.fidelity, specialists_significant=real_m["specialists_significant"],
        mean_heldout_auroc=real_m["mean_heldout_auroc"], mean_register_auroc=_register_mean(specs),
        **baseline_summary(base, real_m["mean_heldout_auroc"]), specialists=specialist_rows(specs)).to_json()]
    corpus = corpus[: cfg.corpus_texts] if cfg.corpus_texts else corpus
    tests = {}
    for name in cfg.profiles:
        profile = params.profiles[name]
        other_hook = matched_hook(hook, main.n_layers, profile.n_layers)
        handle = load_model(profile)
        run = run_model(handle, profile, other_hook, corpus, labelled, params, Path(out_dir) / name, f"cross_model {name}",
                        fidelity_texts=params.sae.fidelity_texts, keep_labelled=True)
        del handle
        base = hook_baselines(run.features, run.acts.numpy(), run.table, run.specialists, np.random.default_rng(params.seed),
                              params.analysis)
        mean_auc = _mean([run.specialists[c].heldout_auroc for c in CATEGORIES])
        rows.append(ModelRow(
            profile=name, model=profile.name, kind=profile.kind, hook=other_hook, relative_depth=_depth(other_hook, profile.n_layers),
            train_tokens=run.train_tokens, explained_variance=rounded_as("explained_variance", run.reconstruction["explained_variance"]),
            l0=rounded_as("l0", run.reconstruction["l0"]), dead_frac=rounded_as("dead_frac", run.dead_frac),
            fidelity={k: rounded_as("fidelity", v) for k, v in run.fidelity.items()}, specialists_significant=run.count.significant,
            mean_heldout_auroc=mean_auc, mean_register_auroc=_register_mean(run.specialists),
            **baseline_summary(base, mean_auc), specialists=specialist_rows(run.specialists)).to_json())
        tests[name] = versus(real_table, real_ft, specs, run, params, str(real_acts))
    ctl = ControlStudy.read(control)
    if ctl.hook == hook:
        rows.append(ModelRow(
            profile="random", model=ctl.model, kind=main.kind, hook=hook, relative_depth=_depth(hook, main.n_layers),
            train_tokens=ctl.train_tokens, explained_variance=ctl.explained_variance, l0=ctl.l0, dead_frac=ctl.dead_frac,
            specialists_significant=ctl.specialists_significant, mean_heldout_auroc=ctl.mean_heldout_auroc,
            specialists=ctl.specialists).to_json())
        tests["random"] = ctl.trained_vs_random
    return CrossModelStudy(hook=hook, rows=rows, versus=tests)
