"""Training one SAE over several processes: torch.distributed, started by torchrun.

    torchrun --nproc_per_node 2 stages/train_sae.py --hook blocks.9.hook_resid_post
    torchrun --nnodes 2 --node_rank R --nproc_per_node 2 --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29500 stages/train_sae.py --hook ...       # several machines

Every process reads the same activation set and draws the same seeded global
batches (`buffer.ShuffledBuffer`); process r trains on the r-th contiguous
slice of each (`World.local`), the SAE wrapped in DistributedDataParallel
(gloo on CPU, NCCL on CUDA), which averages the gradients: the same
update as one process on the whole batch, up to float rounding. What the
trainer counts across the batch (which latents fired, the logged loss, L0) is
reduced over the processes (`World.any`, `World.mean`). Only process 0 writes
checkpoints and outputs (`World.main`).

BatchTopK keeps the k x batch largest activations of each process's slice,
not of the global batch (as SAELens and sparsify do); TopK and ReLU are
per-token and match one process.

A process that dies takes the run down: torchrun stops the others and exits
non-zero, and a process left waiting on a dead peer gives up after `timeout_s`
with one line naming the rank (`DistributedError`), not a hang.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

TIMEOUT_S = 120
"""How long a collective waits for a peer before the run fails (seconds)."""


class DistributedError(ValueError):
    """A peer process is gone or did not answer: one line, naming this process (a
    ValueError, so that a stage ends with that line and status 2, `cli.stage`)."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def local(self, x: torch.Tensor) -> torch.Tensor:
        """This process's contiguous slice of a global batch (its rows split evenly)."""
        if self.size == 1:
            return x
        n = x.shape[0] // self.size
        return x[self.rank * n : (self.rank + 1) * n]

    def check_batch(self, batch_tokens: int) -> None:
        if batch_tokens % self.size:
            raise ValueError(f"sae.batch_tokens={batch_tokens} must divide evenly over {self.size} processes (torchrun --nproc_per_node)")

    def any(self, mask: torch.Tensor) -> torch.Tensor:
        """The element-wise OR of a boolean tensor over the processes."""
        if self.size == 1:
            return mask
        m = mask.to(torch.int32)
        _collective(dist.all_reduce, m, op=dist.ReduceOp.MAX)
        return m.bool()

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over the processes."""
        if self.size == 1:
            return t
        t = t.detach().clone().float()
        _collective(dist.all_reduce, t, op=dist.ReduceOp.SUM)
        return t / self.size

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module under DistributedDataParallel (gradients averaged in backward), or itself."""
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        dev = next(module.parameters()).device
        return DistributedDataParallel(module, device_ids=[dev] if dev.type == "cuda" else None)

    @contextmanager
    def peers_alive(self):
        """Run a step whose collectives may find a peer gone (DistributedDataParallel's
        gradient all-reduce runs inside backward): its error becomes DistributedError."""
        if self.size == 1:
            yield
            return
        try:
            yield
        except DistributedError:
            raise
        except (RuntimeError, dist.DistBackendError) as e:
            raise _peer_gone(e) from None

    def barrier(self) -> None:
        if self.size > 1:
            _collective(dist.barrier)


def _peer_gone(e: Exception) -> DistributedError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return DistributedError(f"process {dist.get_rank()} of {dist.get_world_size()}: another process of this run failed or "
                            f"stopped answering, so this one stops too ({first[:300]})")


def _collective(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, dist.DistBackendError) as e:
        raise _peer_gone(e) from None


def world(device: torch.device | None = None, timeout_s: float = TIMEOUT_S) -> World:
    """This process's place in the run: torchrun's RANK and WORLD_SIZE (the process group
    initialised once, gloo on CPU, NCCL on CUDA), or World() when not started by torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        cuda = device is not None and device.type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        signal.signal(signal.SIGTERM, _stopped_by_torchrun)
    return World(dist.get_rank(), dist.get_world_size())


def _stopped_by_torchrun(signum, frame):
    """torchrun stops the other processes when one fails: say so in one line."""
    raise DistributedError(f"process {dist.get_rank()} of {dist.get_world_size()}: stopped by torchrun because another "
                           "process of this run failed (its error, or torchrun's report below, says which)")
