"""One model's run at one hook, shared by the random-weight control (control.py) and
the cross-model study (cross_model.py): the pipeline's extraction, SAE training and
specialist statistics (`run_model`), the chosen model's specialists paired against the
run's (`versus`), and the rows a study's JSON keeps of each specialist
(`specialist_rows`)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .activations import TokenTable, load_activation_set
from .analysis.compare import specialist_strengths
from .analysis.results import Specialist, SpecialistCount, save_labelled
from .analysis.stats import paired_auroc_test, specialist_statistics
from .cli import rounded
from .config import CATEGORIES, Params, ProfileConfig
from .data import Text
from .extraction import extract_activations
from .features import FeatureTable, encode_sparse
from .kinds import model_kind
from .measure import measure_sae
from .models import ModelHandle
from .sae.io import load_sae, save_for_saelens
from .sae.train import split_activation_set, train_on_split

SPEC_KEYS = ("feature", "heldout_auroc", "auroc_ci_low", "auroc_ci_high", "p_value", "significant")
"""The numbers of each specialist kept in a study's JSON."""


@dataclass
class ModelRun:
    """One model's run at one hook (`run_model`)."""

    hook: str
    train_tokens: int
    reconstruction: dict
    """measure.reconstruction_metrics on the held-out corpus tokens."""
    fidelity: dict
    """The kind's fidelity on held-out corpus texts ({} when not measured)."""
    dead_frac: float
    table: TokenTable
    """The labelled texts' token table."""
    acts: torch.Tensor
    """The labelled texts' activations at the hook [n_kept, d_model]."""
    features: FeatureTable
    strength: np.ndarray
    """[n_texts, d_sae]: each labelled text's strongest activation of each latent."""
    specialists: dict[str, Specialist]
    count: SpecialistCount


def run_model(handle: ModelHandle, profile: ProfileConfig, hook: str, corpus: list[Text], labelled: list[Text], params: Params,
              sae_dir: str | Path, desc: str, registers: bool = True, fidelity_texts: int = 0, keep_labelled: bool = False) -> ModelRun:
    """The pipeline's extraction, SAE training (params.sae, seeded) and specialist statistics
    for one model at one hook: the SAE is saved in SAELens format to sae_dir/<hook>/ and the
    activations are dropped. registers: leave-one-register-out AUROC too (the texts' registers);
    fidelity_texts: held-out corpus texts the kind's fidelity is measured on (0: none);
    keep_labelled: also write what later stages read of the labelled texts to
    sae_dir/labelled/ (analysis.results.save_labelled)."""
    sae_dir = Path(sae_dir)
    sae_dir.mkdir(parents=True, exist_ok=True)
    d = params.data
    with tempfile.TemporaryDirectory(dir=sae_dir, prefix=".acts-") as work:
        work = Path(work)
        extract_activations(handle, corpus, [hook], work / "corpus", d.max_tokens, d.batch_size, f"{desc}: corpus")
        extract_activations(handle, labelled, [hook], work / "eval", d.max_tokens, d.batch_size, f"{desc}: labelled")
        split = split_activation_set(work / "corpus", hook, params.sae.eval_frac, params.seed)
        result = train_on_split(split, params.sae, params.seed, desc=f"{desc}: train_sae {hook}")
        out = sae_dir / hook
        if out.exists():
            shutil.rmtree(out)
        save_for_saelens(result.sae, result.scale, out / hook, hook, profile.name)
        sae, _ = load_sae(replace(profile, sae_source="custom"), hook, out)  # trained here, whatever the profile's own source
        held = split.held_texts(fidelity_texts) if fidelity_texts else []
        measured = measure_sae(sae, split.x_eval, hook, handle, model_kind(profile), held, d.max_tokens)
        table, acts = load_activation_set(work / "eval", hook)
        ft = encode_sparse(sae, acts)
        strength = ft.per_text_max(table.text_index, len(table.texts))
        texts = table.texts
        regs = [t.get("register", "") for t in texts] if registers else []
        a = params.analysis
        spec, count = specialist_statistics(strength, [t["category"] for t in texts], [t["split"] for t in texts],
                                            np.random.default_rng(params.seed), a.n_bootstrap, a.n_permutations, a.alpha,
                                            registers=regs if any(regs) else None)
        if keep_labelled:
            save_labelled(sae_dir, work / "eval" / "tokens.json", ft, hook, spec)
    return ModelRun(hook, split.train_tokens, measured.reconstruction, measured.fidelity, result.dead_frac, table, acts, ft,
                    strength, spec, count)


def versus(real_table: TokenTable, real_ft: FeatureTable, real_specialists: dict[str, Specialist], run: ModelRun,
           params: Params, where: str) -> dict:
    """stats.paired_auroc_test of the chosen model's specialists (its labelled texts' token
    table and features) against `run`'s, on the held-out texts both read; one-line ValueError
    when the two did not read the same texts in the same order (`where` names the stale one)."""
    texts = run.table.texts
    if [t["id"] for t in real_table.texts] != [t["id"] for t in texts]:
        raise ValueError(f"{where} holds other texts than the labelled texts: re-run dvc repro")
    held = np.array([t["split"] == "heldout" for t in texts])
    s_real = specialist_strengths(real_ft, real_table.text_index, len(texts), real_specialists)[held]
    s_other = run.strength[:, [run.specialists[c].feature for c in CATEGORIES]][held]
    a = params.analysis
    return paired_auroc_test(s_real, s_other, [t["category"] for t, k in zip(texts, held) if k],
                             np.random.default_rng(params.seed), a.n_bootstrap, a.alpha)


def specialist_rows(specialists: dict[str, Specialist]) -> dict:
    """Per category: the specialist's SPEC_KEYS and, where measured, its unseen-register AUROC."""
    out = {}
    for c in CATEGORIES:
        s = specialists[c].to_json()
        row = {k: rounded(v) if isinstance(v, float) else v for k, v in s.items() if k in SPEC_KEYS}
        reg = specialists[c].register_holdout
        if reg:
            row["register_holdout_auroc"] = rounded(reg.get("mean_auroc"))
        out[c] = row
    return out
