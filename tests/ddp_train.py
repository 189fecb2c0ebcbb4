"""Train a small TopK SAE on planted data (helpers.planted), as one process or as one
of torchrun's (test_distributed.py); process 0 saves the SAE's weights, curve and
dead fraction to OUT.

$ python tests/ddp_train.py OUT [--epochs N] [--arch topk]
$ torchrun --standalone --nproc_per_node 2 tests/ddp_train.py OUT
"""

import sae_workbench  # noqa: F401  first: pins the numerics

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import buffer_of, cfg, planted  # noqa: E402

from sae_workbench.sae.distributed import DistributedError  # noqa: E402
from sae_workbench.sae.train import train_sae  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--arch", default="topk")
    a = p.parse_args()
    Path(f"{a.out}.rank{os.environ.get('RANK', '0')}.pid").write_text(str(os.getpid()))
    c = cfg(a.arch, epochs=a.epochs, checkpoint_every=0)
    try:
        r = train_sae(buffer_of(planted(), c), 16, c, seed=3)
    except DistributedError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if os.environ.get("RANK", "0") == "0":
        torch.save({"state": r.sae.state_dict(), "curve": r.curve, "dead_frac": r.dead_frac, "steps": r.steps}, a.out)


if __name__ == "__main__":
    main()
