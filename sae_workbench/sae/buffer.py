"""A streaming, shuffled activation buffer with bounded memory.

Rows are read from disk (safetensors, memory-mapped) in contiguous chunks; each
epoch visits the chunks in a seeded random order, fills a window of about
`buffer_tokens` rows, shuffles it and cuts it into batches. Memory holds one
window (plus one chunk), whatever the corpus size. Given the seed, the batch
sequence is fixed, so a resumed run can skip exactly the batches it has seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

RowReader = Callable[[int, int], torch.Tensor]
"""read(a, b) -> rows a..b-1 as a float tensor [b - a, d_in]."""


def safetensors_reader(path: str | Path, key: str = "acts") -> tuple[RowReader, int, int]:
    """(reader, n_rows, d_in) over one tensor of a safetensors file, memory-mapped."""
    f = safe_open(str(path), "pt")
    sl = f.get_slice(key)
    n, d = sl.get_shape()
    return (lambda a, b: sl[a:b].float()), n, d


def tensor_reader(t: torch.Tensor) -> tuple[RowReader, int, int]:
    return (lambda a, b: t[a:b].float()), t.shape[0], t.shape[1]


class ShuffledBuffer:
    def __init__(
        self,
        read: RowReader,
        rows: np.ndarray,
        batch_tokens: int,
        buffer_tokens: int,
        seed: int,
        chunk_tokens: int = 4096,
    ):
        """rows: sorted indices of the rows to train on (others, e.g. held-out texts, are skipped)."""
        self.read, self.rows = read, np.asarray(rows)
        self.batch, self.window, self.seed = batch_tokens, buffer_tokens, seed
        if len(self.rows) < batch_tokens:
            raise ValueError(
                f"SAE training needs at least sae.batch_tokens={batch_tokens} tokens, got {len(self.rows)}: "
                "enlarge the corpus (data.corpus_*) or lower sae.batch_tokens"
            )
        # chunks: contiguous runs of on-disk rows, each holding <= chunk_tokens training rows
        self.chunks = [self.rows[i : i + chunk_tokens] for i in range(0, len(self.rows), chunk_tokens)]

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def _chunk(self, c: np.ndarray) -> torch.Tensor:
        a, b = int(c[0]), int(c[-1]) + 1
        block = self.read(a, b)
        return block if b - a == len(c) else block[torch.from_numpy(c - a)]

    def batches(self, epoch: int) -> Iterator[torch.Tensor]:
        """The batches of one epoch; a short tail (< batch_tokens) is dropped."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.chunks), generator=g).tolist()
        carry = None
        pending: list[torch.Tensor] = []
        size = 0
        for n, ci in enumerate(order):
            block = self._chunk(self.chunks[ci])
            pending.append(block)
            size += len(block)
            if size < self.window and n < len(order) - 1:
                continue
            window = torch.cat(([carry] if carry is not None else []) + pending)
            window = window[torch.randperm(len(window), generator=g)]
            full = len(window) // self.batch * self.batch
            yield from window[:full].split(self.batch)
            carry = window[full:] if full < len(window) else None
            pending, size = [], 0

    def sample(self, n: int) -> torch.Tensor:
        """A seeded sample of up to n training rows (for normalisation and b_dec)."""
        g = np.random.default_rng(self.seed)
        picks = np.sort(g.choice(self.rows, size=min(n, len(self.rows)), replace=False))
        out, lo = [], 0
        while lo < len(picks):  # read spans of nearby rows at once
            hi = np.searchsorted(picks, picks[lo] + 65536)
            span = self.read(int(picks[lo]), int(picks[hi - 1]) + 1)
            out.append(span[torch.from_numpy(picks[lo:hi] - picks[lo])])
            lo = hi
        return torch.cat(out)
