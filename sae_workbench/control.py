"""A random-model control: would the same pipeline find "significant specialists"
in a transformer that learned nothing?

SAEs trained on randomly initialised transformers also yield plausible-looking,
interpretable-seeming features (Heap et al. 2025, "Sparse autoencoders can
interpret randomly initialized transformers"): token identity alone separates
Python from French. A finding about the trained model means something only
against this baseline.

The control model is the trained model with every weight matrix (every
parameter of 2 or more dimensions: embeddings, attention, MLP, unembedding)
replaced by seeded Gaussian noise of the same mean and standard deviation;
1-D parameters (norm scales, biases) are kept, so activations keep their
scale. Same architecture, same tokenizer, nothing learned.

    metrics = control_study(params, corpus, labelled, out_dir, real_analysis=..., ...)

The study (`control_study`, behind stages/control.py): at control.hook, the
same extraction, SAE training and specialist statistics on the control model
(`model_run.run_model`, as every other model of the cross-model study),
its specialists set against the trained model's on the same held-out texts
with a paired bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .activations import load_token_table
from .analysis.results import HookAnalysis
from .cli import JsonRecord, read_json, rounded
from .config import CATEGORIES, Params
from .model_run import run_model, specialist_rows, versus
from .data import Text
from .features import load_features
from .measure import SAEMetrics, rounded_as
from .models import ModelHandle, load_model


@dataclass
class ControlStudy(JsonRecord):
    """metrics/control.json: the control's SAE and specialists at `hook`, its
    specialists against the trained model's (`trained_vs_random`, paired), and the
    trained model's numbers at the same hook (`real`); or, when the control did
    not run, only `skipped` (why). Written with to_json, read back with from_json."""

    hook: str | None
    skipped: str | None = None
    model: str = ""
    """How the control model was made, in words."""
    train_tokens: int = 0
    real_train_tokens: int | None = None
    explained_variance: float = 0.0
    l0: float = 0.0
    dead_frac: float = 0.0
    specialists_significant: int = 0
    mean_heldout_auroc: float = 0.0
    specialists: dict | None = None
    """Per category: the control's specialist (model_run.specialist_rows)."""
    trained_vs_random: dict | None = None
    """analysis.stats.paired_auroc_test of the trained model's specialists against the control's."""
    real: dict | None = None
    """The trained model's specialists_significant, mean_heldout_auroc and per-category heldout_auroc."""

    def to_json(self) -> dict:
        if self.skipped is not None:
            return {"hook": None, "skipped": self.skipped}
        return {k: v for k, v in self.__dict__.items() if k != "skipped"}


@torch.no_grad()
def randomize_weights(handle: ModelHandle, seed: int) -> ModelHandle:
    """The handle's model with its weight matrices re-drawn in place (module docstring)."""
    g = torch.Generator().manual_seed(seed)
    for _, p in sorted(handle.model.named_parameters(), key=lambda kv: kv[0]):
        if p.dim() >= 2:
            w = p.float().contiguous()  # the logical order whatever the storage (models.keep_attention_weight_layouts)
            mean, std = w.mean(), w.std()
            p.copy_((torch.randn(p.shape, generator=g) * std + mean).to(p.dtype))
    return handle


def control_study(params: Params, corpus: list[Text], labelled: list[Text], out_dir: str | Path, real_analysis: str | Path,
                  real_sae: str | Path, real_acts: str | Path, real_features: str | Path,
                  real_details: str | Path = "data/analysis") -> ControlStudy:
    """The control at params.control.hook (module docstring): its SAE goes to
    out_dir/<hook>/; returns metrics/control.json's content (ControlStudy). real_*:
    the trained model's analysis metrics, SAE metrics, labelled-text activations,
    features and analysis at the same hook."""
    cfg, hook = params.control, params.control.hook
    real = HookAnalysis.from_json(read_json(Path(real_details) / f"{hook}.json"), read_json(Path(real_analysis) / f"{hook}.json"))
    real_sae_metrics = SAEMetrics.read(Path(real_sae) / f"{hook}.json")
    corpus = corpus[: cfg.corpus_texts] if cfg.corpus_texts else corpus
    handle = randomize_weights(load_model(params.model), params.seed)

    run = run_model(handle, params.model, hook, corpus, labelled, params, out_dir, "control", registers=False)
    spec, count = run.specialists, run.count
    # the trained model's specialists against the control's, on the same held-out texts (paired bootstrap)
    test = versus(load_token_table(real_acts), load_features(Path(real_features) / f"{hook}.safetensors"), real.specialists, run,
                  params, str(real_acts))
    aurocs = [spec[c].heldout_auroc for c in CATEGORIES]
    real_m = real.metrics_json()
    return ControlStudy(
        hook=hook,
        model="random weights: every weight matrix re-drawn from N(mean, std) of the trained one (seed = params seed)",
        train_tokens=run.train_tokens,
        real_train_tokens=real_sae_metrics.train_tokens,
        explained_variance=rounded_as("explained_variance", run.reconstruction["explained_variance"]),
        l0=rounded_as("l0", run.reconstruction["l0"]),
        dead_frac=rounded_as("dead_frac", run.dead_frac),
        specialists_significant=count.significant,
        mean_heldout_auroc=rounded(np.mean(aurocs)),
        specialists=specialist_rows(spec),
        trained_vs_random=test,
        real={"specialists_significant": real_m["specialists_significant"], "mean_heldout_auroc": real_m["mean_heldout_auroc"],
              "heldout_auroc": {c: real_m["specialists"][c]["heldout_auroc"] for c in CATEGORIES if c in real_m["specialists"]}},
    )
