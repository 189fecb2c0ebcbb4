"""What every stage script shares: one-line errors, atomic JSON, rounding, seeding.

    from sae_workbench.cli import stage
    @stage
    def main(args, params): ...
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from .config import Params, load_params
from .atomic import remove_live_temporaries, write_text
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


def finite_or_none(x) -> float | None:
    """A number as JSON can hold it: NaN and infinities (a statistic that was not or
    could not be measured) are None; anything else is a Python float."""
    x = float(x)
    return x if math.isfinite(x) else None


def json_safe(obj):
    """finite_or_none on every float (Python or numpy) through dicts, lists and tuples."""
    if isinstance(obj, (float, np.floating)):
        return finite_or_none(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
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


class JsonRecord:
    """A result stored as one JSON file of its fields (a dataclass's to_json writes it):
    `from_json(d)` builds it back, `read(path)` reads the file (one-line errors as read_json)."""

    @classmethod
    def from_json(cls, d: dict):
        return cls(**d)

    @classmethod
    def read(cls, path: str | Path):
        return cls.from_json(read_json(path))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


INTERRUPT_GRACE = 3.0
"""Seconds a stopped stage is given to unwind by itself before it is ended from outside."""


def _interrupted(name: str) -> str:
    return f"interrupted: {name} stopped; no output of this run was written (dvc repro re-runs the stage)"


def interruptible(name: str, grace: float = INTERRUPT_GRACE) -> None:
    """Make Ctrl-C (SIGINT, or SIGTERM) stop this stage within about `grace` seconds,
    however busy it is, leaving no half-written output.

    Python raises KeyboardInterrupt only between bytecodes, so a stage inside a long
    C call (loading or converting a model, a big matmul) would go on for minutes.
    The signal is also written to a wake-up pipe, which a watcher thread reads at
    once: if the stage has not ended `grace` seconds later, the watcher removes the
    live temporaries of the atomic writes (`atomic.remove_live_temporaries`) and ends the
    process with status 130. A stage that unwinds in time removes them itself (each
    atomic block removes its temporary when it raises)."""
    if threading.current_thread() is not threading.main_thread():
        return
    r, w = os.pipe()
    os.set_blocking(w, False)

    def to_interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, to_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def watch():
        while os.read(r, 1)[0] not in (signal.SIGINT, signal.SIGTERM):  # another library's signal: not ours
            pass
        time.sleep(grace)
        remove_live_temporaries()
        print(_interrupted(name), file=sys.stderr, flush=True)
        os._exit(130)

    threading.Thread(target=watch, name="interrupt-watcher", daemon=True).start()


def stage(configure):
    """Decorate `main(args, params)`; `configure(parser)` adds the stage's arguments.

    Bad input (params, texts, caches, an unreachable hub) ends with one line on
    stderr and exit status 2; Ctrl-C with one line and status 130, within a few
    seconds and leaving no half-written output (`interruptible`); anything else is a
    bug and keeps its traceback."""

    def wrap(main):
        @functools.wraps(main)
        def run(argv=None):
            parser = argparse.ArgumentParser(description=main.__doc__)
            parser.add_argument("--params", default="params.yaml")
            configure(parser)
            args = parser.parse_args(argv)
            name = Path(sys.argv[0]).stem if argv is None else main.__module__
            interruptible(name)
            try:
                params: Params = load_params(args.params)
                seed_everything(params.seed)
                main(args, params)
            except (ValueError, ModelUnavailable) as e:
                print(f"error: {e}", file=sys.stderr)
                sys.exit(2)
            except KeyboardInterrupt:
                print(_interrupted(name), file=sys.stderr, flush=True)
                os._exit(130)  # at once: the watcher thread must not print a second line

        return run

    return wrap
