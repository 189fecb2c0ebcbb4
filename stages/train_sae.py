"""Train (custom) or fetch (pre-trained) the SAE of one hook, and measure it.

$ python stages/train_sae.py --hook blocks.3.hook_resid_pre
Metrics on held-out corpus texts go to metrics/sae/<hook>.json, the training
curve to metrics/sae_curves/<hook>.csv, the SAE (SAELens format) to data/saes/<hook>/.
"""

import csv
import io
from pathlib import Path

import numpy as np
import torch

from sae_workbench.activations import load_activation_set
from sae_workbench.cli import stage, write_json
from sae_workbench.data import atomic_write_text
from sae_workbench.sae import fold_scale, load_sae, reconstruction_metrics, save_for_saelens, train_relu_sae


def args(p):
    p.add_argument("--hook", required=True)
    p.add_argument("--acts", default="data/activations/corpus")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--metrics", default="metrics/sae")
    p.add_argument("--curves", default="metrics/sae_curves")


def split_rows(text_index: np.ndarray, n_texts: int, eval_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole texts (not scattered tokens) for evaluation."""
    rng = np.random.default_rng(seed)
    held = np.zeros(n_texts, dtype=bool)
    held[rng.permutation(n_texts)[: max(1, int(round(n_texts * eval_frac)))]] = True
    is_eval = held[text_index]
    return np.flatnonzero(~is_eval), np.flatnonzero(is_eval)


@stage(args)
def main(args, params):
    """Train or fetch the hook's SAE; write its metrics."""
    table, acts = load_activation_set(args.acts, params.require_hook(args.hook))
    train_rows, eval_rows = split_rows(table.text_index, len(table.texts), params.sae.eval_frac, params.seed)
    x_eval = acts[torch.from_numpy(eval_rows)]
    out = Path(args.saes) / args.hook
    if params.model.sae_source == "custom":
        result = train_relu_sae(acts[torch.from_numpy(train_rows)], params.sae, params.seed, desc=f"train_sae {args.hook}")
        save_for_saelens(fold_scale(result), out, args.hook, params.model.name)
        dead = result.dead_frac
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(result.curve[0]))
        w.writeheader()
        w.writerows(result.curve)
        atomic_write_text(Path(args.curves) / f"{args.hook}.csv", buf.getvalue())
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "release.json", {"release": params.model.sae_release, "sae_id": args.hook})
        atomic_write_text(Path(args.curves) / f"{args.hook}.csv", "step,tokens,mse,l1,l0,lr\n")
        dead = None
    sae, _ = load_sae(params.model, args.hook, args.saes)  # through SAELens, as every later stage sees it
    m = reconstruction_metrics(sae, x_eval)
    if dead is None:  # pre-trained: never fired on the held-out corpus tokens
        from sae_workbench.features import encode_sparse

        ft = encode_sparse(sae, x_eval)
        dead = float((np.bincount(ft.feature, minlength=ft.d_sae) == 0).mean())
    metrics = {
        "source": params.model.sae_source,
        "d_in": int(sae.cfg.d_in),
        "d_sae": int(sae.cfg.d_sae),
        "l0": round(m["l0"], 4),
        "explained_variance": round(m["explained_variance"], 6),
        "mse": round(m["mse"], 8),
        "dead_frac": round(dead, 6),
        "dense_frac": round(m["dense_frac"], 6),
        "eval_tokens": int(m["n_tokens"]),
        "train_tokens": int(len(train_rows)),
    }
    write_json(Path(args.metrics) / f"{args.hook}.json", metrics)
    print(f"train_sae {args.hook}: {metrics}")


if __name__ == "__main__":
    main()
