"""Encode the evaluation texts' activations of one hook through its SAE.

$ python stages/encode.py --hook blocks.3.hook_resid_pre
The custom SAE (embedded default) and SAELens's pre-trained release (gpt2
profile) both load as SAELens SAEs, so this stage is the same for both.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from pathlib import Path

from sae_workbench.activations import load_activation_set
from sae_workbench.cli import stage
from sae_workbench.features import encode_sparse, save_features
from sae_workbench.sae.io import load_sae


def args(p):
    p.add_argument("--hook", required=True)
    p.add_argument("--acts", default="data/activations/eval")
    p.add_argument("--saes", default="data/saes")
    p.add_argument("--out", default="data/features")


@stage(args)
def main(args, params):
    """Write data/features/<hook>.safetensors (sparse feature activations)."""
    table, acts = load_activation_set(args.acts, params.require_hook(args.hook))
    sae, neuronpedia = load_sae(params.model, args.hook, args.saes)
    ft = encode_sparse(sae, acts)
    ft.neuronpedia = neuronpedia
    save_features(Path(args.out) / f"{args.hook}.safetensors", ft, args.hook, params.model.sae_source)
    print(f"encode {args.hook}: {ft.n_rows} tokens, {len(ft.value)} non-zeros, L0 {len(ft.value) / max(1, ft.n_rows):.1f}")


if __name__ == "__main__":
    main()
