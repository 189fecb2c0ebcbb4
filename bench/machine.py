"""What machine a benchmark ran on, for its JSON (bench scripts import it: `from machine import cpu_model`)."""

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_read_gb_s(mib: int = 512, reps: int = 3) -> float:
    """Memory read bandwidth now (GB/s, best of reps sums over a mib-MiB float32 array): the
    machine's speed at a memory-bound task, recorded beside timings taken on a shared VM,
    whose neighbours can slow memory-bound work (a generation step reads ~1 GB of weights)."""
    import time

    import numpy as np

    a = np.ones(mib * 2**20 // 4, dtype=np.float32)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return round(a.nbytes / best / 1e9, 2)
