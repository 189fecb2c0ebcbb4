"""What every stage script shares: one-line errors, atomic JSON, rounding, seeding.

    from sae_workbench.cli import stage
    @stage
    def main(args, params): ...
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

from .config import Params, load_params
from .atomic import write_text
from .offline import ModelUnavailable


def rounded(obj, nd: int = 6):
    """Floats (Python or numpy) rounded to nd decimals, recursively through dicts,
    lists and tuples; everything else as it is. The one rounding of the numbers
    the pipeline writes (stable, readable JSON)."""
    if isinstance(obj, (float, np.floating)):
        return round(float(obj), nd)
    if isinstance(obj, dict):
        return {k: rounded(v, nd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, nd) for v in obj]
    return obj


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} is missing: run dvc repro")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is corrupt ({e}); delete it and run dvc repro") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stage(configure):
    """Decorate `main(args, params)`; `configure(parser)` adds the stage's arguments.

    Bad input (params, texts, caches, an unreachable hub) ends with one line on
    stderr and exit status 2; anything else is a bug and keeps its traceback."""

    def wrap(main):
        @functools.wraps(main)
        def run(argv=None):
            parser = argparse.ArgumentParser(description=main.__doc__)
            parser.add_argument("--params", default="params.yaml")
            configure(parser)
            args = parser.parse_args(argv)
            try:
                params: Params = load_params(args.params)
                seed_everything(params.seed)
                main(args, params)
            except (ValueError, ModelUnavailable) as e:
                print(f"error: {e}", file=sys.stderr)
                sys.exit(2)

        return run

    return wrap
