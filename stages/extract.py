"""Per-token activations of one text set at every hook, in one forward pass per batch.

$ python stages/extract.py --texts data/prepared/corpus.jsonl --out data/activations/corpus
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from sae_workbench.extraction import extract_activations
from sae_workbench.cli import stage
from sae_workbench.data import read_texts
from sae_workbench.models import load_model


def args(p):
    p.add_argument("--texts", required=True)
    p.add_argument("--out", required=True)


@stage(args)
def main(args, params):
    """Extract activations (special tokens masked) for all hooks in params.yaml."""
    texts = read_texts(args.texts)
    handle = load_model(params.model)
    table = extract_activations(
        handle, texts, params.hooks, args.out, params.data.max_tokens, params.data.batch_size, desc=f"extract {args.out}"
    )
    print(f"extract: {len(texts)} texts, {table.n_kept} tokens kept, hooks {params.hooks} -> {args.out}")


if __name__ == "__main__":
    main()
