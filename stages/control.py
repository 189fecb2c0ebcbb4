"""The random-model control: the same extraction, SAE training and specialist
statistics on a randomly initialised copy of the model (sae_workbench/control.py).

$ python stages/control.py
At control.hook, on the first control.corpus_texts corpus texts and all the
labelled texts. Writes metrics/control.json (the control's numbers beside the
trained model's at the same hook) and the control SAE to data/control/<hook>/.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

import shutil
import tempfile
from pathlib import Path

import numpy as np

from sae_workbench.activations import load_activation_set, load_token_table
from sae_workbench.analysis.compare import specialist_strengths
from sae_workbench.analysis.stats import paired_auroc_test, specialist_statistics
from sae_workbench.extraction import extract_activations
from sae_workbench.cli import read_json, stage, write_json
from sae_workbench.config import CATEGORIES
from sae_workbench.control import randomize_weights
from sae_workbench.data import read_texts
from sae_workbench.features import encode_sparse, load_features
from sae_workbench.models import load_model
from sae_workbench.sae.io import load_sae, save_for_saelens
from sae_workbench.sae.metrics import reconstruction_metrics
from sae_workbench.sae.train import split_activation_set, train_on_split

SPEC_KEYS = ("feature", "heldout_auroc", "auroc_ci_low", "auroc_ci_high", "p_value", "significant")


def args(p):
    p.add_argument("--corpus", default="data/prepared/corpus.jsonl")
    p.add_argument("--texts", default="data/prepared/eval.jsonl")
    p.add_argument("--real-analysis", default="metrics/analysis")
    p.add_argument("--real-sae", default="metrics/sae")
    p.add_argument("--real-features", default="data/features")
    p.add_argument("--real-acts", default="data/activations/eval")
    p.add_argument("--out", default="data/control")
    p.add_argument("--metrics", default="metrics/control.json")


@stage(args)
def main(args, params):
    """Random-model control at control.hook."""
    cfg, hook = params.control, params.control.hook
    if not hook or params.model.sae_source != "custom":
        why = "control.hook is empty" if not hook else "the profile uses pre-trained SAEs (the control trains its own)"
        write_json(args.metrics, {"hook": None, "skipped": why})
        return
    real = read_json(Path(args.real_analysis) / f"{hook}.json")
    real_sae = read_json(Path(args.real_sae) / f"{hook}.json")
    corpus = read_texts(args.corpus)
    corpus = corpus[: cfg.corpus_texts] if cfg.corpus_texts else corpus
    labelled = read_texts(args.texts)
    handle = randomize_weights(load_model(params.model), params.seed)

    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out, prefix=".acts-") as work:
        work = Path(work)
        extract_activations(handle, corpus, [hook], work / "corpus", params.data.max_tokens, params.data.batch_size, "control: corpus")
        extract_activations(handle, labelled, [hook], work / "eval", params.data.max_tokens, params.data.batch_size, "control: labelled")
        split = split_activation_set(work / "corpus", hook, params.sae.eval_frac, params.seed)
        result = train_on_split(split, params.sae, params.seed, desc=f"control: train_sae {hook}")
        sae_dir = Path(args.out) / hook
        if sae_dir.exists():
            shutil.rmtree(sae_dir)
        save_for_saelens(result.sae, result.scale, sae_dir / hook, hook, params.model.name)
        sae, _ = load_sae(params.model, hook, sae_dir)
        rec = reconstruction_metrics(sae, split.x_eval)
        etable, eacts = load_activation_set(work / "eval", hook)
        strength = encode_sparse(sae, eacts).per_text_max(etable.text_index, len(etable.texts))

    texts = etable.texts
    spec, count = specialist_statistics(strength, [t["category"] for t in texts], [t["split"] for t in texts],
                                 np.random.default_rng(params.seed), params.analysis.n_bootstrap, params.analysis.n_permutations,
                                 params.analysis.alpha, registers=None)
    # the trained model's specialists against the control's, on the same held-out texts (paired bootstrap)
    real_table = load_token_table(args.real_acts)
    if [t["id"] for t in real_table.texts] != [t["id"] for t in texts]:
        raise ValueError(f"{args.real_acts} holds other texts than {args.texts}: re-run dvc repro")
    held = np.array([t["split"] == "heldout" for t in texts])
    real_ft = load_features(Path(args.real_features) / f"{hook}.safetensors")
    s_real = specialist_strengths(real_ft, real_table.text_index, len(texts), real["specialists"])[held]
    s_ctl = strength[:, [spec[c].feature for c in CATEGORIES]][held]
    test = paired_auroc_test(s_real, s_ctl, [t["category"] for t, k in zip(texts, held) if k], np.random.default_rng(params.seed),
                             params.analysis.n_bootstrap, params.analysis.alpha)
    aurocs = [spec[c].heldout_auroc for c in CATEGORIES]
    metrics = {
        "hook": hook,
        "model": "random weights: every weight matrix re-drawn from N(mean, std) of the trained one (seed = params seed)",
        "train_tokens": split.train_tokens,
        "real_train_tokens": real_sae.get("train_tokens"),
        "explained_variance": round(float(rec["explained_variance"]), 6),
        "l0": round(float(rec["l0"]), 4),
        "dead_frac": round(float(result.dead_frac), 6),
        "specialists_significant": count.significant,
        "mean_heldout_auroc": round(float(np.mean(aurocs)), 6),
        "specialists": {c: {k: (round(v, 6) if isinstance(v, float) else v) for k, v in spec[c].to_json().items() if k in SPEC_KEYS} for c in CATEGORIES},
        "trained_vs_random": test,
        "real": {"specialists_significant": real["specialists_significant"], "mean_heldout_auroc": real["mean_heldout_auroc"],
                 "heldout_auroc": {c: real["specialists"][c]["heldout_auroc"] for c in CATEGORIES if c in real["specialists"]}},
    }
    write_json(args.metrics, metrics)
    print(f"control {hook}: random model {metrics['specialists_significant']}/{len(CATEGORIES)} significant specialists, mean held-out AUROC "
          f"{metrics['mean_heldout_auroc']:.3f} (trained model: {real['specialists_significant']}/{len(CATEGORIES)}, {real['mean_heldout_auroc']:.3f})")


if __name__ == "__main__":
    main()
