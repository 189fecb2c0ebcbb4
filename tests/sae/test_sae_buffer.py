"""sae/buffer.py: the shuffled activation buffer, and the clear errors for too few tokens or a bad config."""

import numpy as np
import pytest
import torch

from sae_workbench.sae.buffer import ShuffledBuffer, tensor_reader
from sae_workbench.sae.topk import TopKSAE


def test_buffer_bounded_covers_every_row_once_per_epoch():
    x = torch.arange(5000, dtype=torch.float32)[:, None].repeat(1, 4)
    rows = np.flatnonzero(np.arange(5000) % 7 != 0)  # some rows held out
    buf = ShuffledBuffer(*tensor_reader(x)[:1], rows, batch_tokens=100, buffer_tokens=1000, seed=0, chunk_tokens=300)
    seen = torch.cat(list(buf.batches(0)))[:, 0].long()
    assert len(seen) == len(rows) // 100 * 100  # only a short tail dropped
    assert len(set(seen.tolist())) == len(seen) and set(seen.tolist()) <= set(rows.tolist())
    assert not torch.equal(seen[:100].sort().values, seen[:100])  # shuffled
    assert not torch.equal(torch.cat(list(buf.batches(1)))[:100], torch.cat(list(buf.batches(0)))[:100])


def test_too_few_tokens_and_bad_config_are_clear_errors():
    with pytest.raises(ValueError, match="at least sae.batch_tokens"):
        ShuffledBuffer(*tensor_reader(torch.randn(10, 8))[:1], np.arange(10), 64, 128, 0)
    with pytest.raises(ValueError, match="sae.k"):
        TopKSAE(8, 16, k=32)
