"""Validate the labelled evaluation texts and build the SAE training corpus.

$ python stages/prepare.py --labelled data/texts/labelled.jsonl --out data/prepared
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

from pathlib import Path

from sae_workbench.cli import stage, write_json
from sae_workbench.data import build_corpus, read_texts, validate_labelled, write_texts


def args(p):
    p.add_argument("--labelled", default="data/texts/labelled.jsonl")
    p.add_argument("--out", default="data/prepared")


@stage(args)
def main(args, params):
    """Write eval.jsonl (validated labelled texts) and corpus.jsonl (unlabelled)."""
    labelled = read_texts(args.labelled)
    validate_labelled(labelled)
    corpus = build_corpus(params.data, params.seed)
    out = Path(args.out)
    write_texts(out / "eval.jsonl", labelled)
    write_texts(out / "corpus.jsonl", corpus)
    sources = {}
    for t in corpus:
        sources[t.category] = sources.get(t.category, 0) + 1
    write_json(out / "summary.json", {"eval_texts": len(labelled), "corpus_texts": len(corpus), "corpus_sources": sources})
    print(f"prepare: {len(labelled)} labelled texts, {len(corpus)} corpus texts {sources}")


if __name__ == "__main__":
    main()
