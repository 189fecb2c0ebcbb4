"""models.linear: the model's fp32 GEMMs on oneDNN under the pinned numerics.

It must compute F.linear (values and gradients, to float32 rounding), give every
row the same bytes whatever batch it is in (alone, or among any number of other
rows: the property MKL lacks), give the same bytes on a weight packed once
(`pack_weights`) as on the plain weight, and fall back to F.linear wherever oneDNN
is not the pinned path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sae_workbench import determinism
from sae_workbench.models import _PACKABLE, _FunctionalWithLinear, _packed, linear, pack_weights

SHAPES = [(1, 7, 3), (5, 64, 32), (33, 640, 256), (130, 640, 2048), (7, 2048, 640)]
"""(rows, d_in, d_out): one row, odd sizes, and the Gemma 3 270M projections."""

pytestmark = pytest.mark.skipif(not determinism.isa_pinned(), reason="oneDNN is the pinned x86 path only")


@pytest.mark.parametrize("rows,d_in,d_out", SHAPES)
def test_linear_computes_f_linear_with_its_gradients(rows, d_in, d_out):
    g = torch.Generator().manual_seed(rows * 1000 + d_in)
    x = torch.randn(rows, d_in, generator=g, requires_grad=True)
    w = (torch.randn(d_out, d_in, generator=g) / d_in**0.5).requires_grad_(True)
    b = torch.randn(d_out, generator=g, requires_grad=True)
    ours, ref = linear(x, w, b), F.linear(x, w, b)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(linear(x, w), F.linear(x, w), atol=1e-4, rtol=1e-4)
    up = torch.randn(rows, d_out, generator=g)
    grads = torch.autograd.grad((ours * up).sum(), (x, w, b))
    refs = torch.autograd.grad((ref * up).sum(), (x, w, b))
    for a, r in zip(grads, refs):
        torch.testing.assert_close(a, r, atol=1e-3, rtol=1e-4)
    with torch.no_grad():  # the forward bytes do not depend on whether a gradient is taken
        assert torch.equal(linear(x, w, b), ours.detach())


@pytest.mark.parametrize("d_in,d_out", [(640, 1024), (2048, 640), (64, 5)])
def test_a_row_has_the_same_bytes_in_any_batch(d_in, d_out):
    g = torch.Generator().manual_seed(d_in + d_out)
    x = torch.randn(97, d_in, generator=g)
    w = torch.randn(d_out, d_in, generator=g)
    b = torch.randn(d_out, generator=g)
    with torch.no_grad():
        full = linear(x, w, b)
        for start, stop in [(0, 1), (5, 6), (96, 97), (0, 2), (3, 7), (10, 42), (1, 97)]:
            assert torch.equal(linear(x[start:stop], w, b), full[start:stop]), (start, stop)
        # batched as [texts, positions, d]: the same rows, the same bytes
        assert torch.equal(linear(x[:96].reshape(8, 12, d_in), w, b).reshape(96, d_out), full[:96])


def test_where_onednn_is_not_the_path_it_is_f_linear(monkeypatch):
    x, w = torch.randn(6, 16), torch.randn(8, 16)
    assert torch.equal(linear(x.double(), w.double()), F.linear(x.double(), w.double()))  # another dtype
    assert linear(torch.zeros(0, 16), w).shape == (0, 8)  # no rows
    monkeypatch.setenv(determinism.MKL_GEMM, "1")  # the benchmark's MKL COMPATIBLE mode
    assert not determinism.isa_pinned()
    assert torch.equal(linear(x, w), F.linear(x, w))


def test_transformer_lens_modules_call_it_after_a_model_loads(gemma):
    """load_model routes TransformerLens's attention and gated MLP F.linear calls to
    models.linear; the residual stream then differs in its bytes from MKL's (the route
    is taken) and agrees with it to float32 rounding."""
    import transformer_lens.components.abstract_attention as attention
    import transformer_lens.components.mlps.gated_mlp as gated_mlp
    import transformer_lens.utilities.attention as attention_utils

    from sae_workbench.kinds.causal_lm import final_residual

    assert all(isinstance(m.F, _FunctionalWithLinear) for m in (attention, gated_mlp, attention_utils))
    model = gemma.model
    assert all(id(p) in _PACKABLE for p in (model.W_U, model.blocks[0].attn.W_Q, model.blocks[0].attn._W_K, model.blocks[0].mlp.W_in))
    ids = torch.tensor([gemma.tokenize("def area(r):\n    return 3.14159 * r * r", 32).ids])
    with torch.no_grad():
        onednn = final_residual(gemma, ids)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(determinism.MKL_GEMM, "1")
            mkl = final_residual(gemma, ids)
    assert not torch.equal(onednn, mkl)
    torch.testing.assert_close(onednn, mkl, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("d_in,d_out", [(640, 2048), (2048, 640), (640, 256), (640, 1024), (1024, 640), (640, 4096), (64, 5)])
def test_a_packed_weight_gives_the_plain_weights_bytes_for_any_number_of_rows(d_in, d_out):
    """pack_weights: oneDNN's packed copy (reordered once) multiplies to the same bytes as
    the weight given plainly, for 1 to 1,500 rows, for the weight and for a strided view of
    one (TransformerLens's rearranged attention weights), with and without a gradient."""
    g = torch.Generator().manual_seed(d_in * 7 + d_out)
    w_plain = torch.randn(d_out, d_in, generator=g)
    w = w_plain.clone()
    w_t = torch.randn(d_in, d_out, generator=g)  # used as its transpose view, as W_U.T
    b = torch.randn(d_out, generator=g)
    pack_weights([w, w_t])
    with torch.no_grad():
        for rows in (1, 2, 3, 14, 64, 257, 1500):
            x = torch.randn(rows, d_in, generator=g)
            assert torch.equal(linear(x, w, b), linear(x, w_plain, b)), rows
            assert torch.equal(linear(x, w_t.T, b), linear(x, w_t.T.contiguous(), b)), rows
    assert _packed(w) is not None and _packed(w_t.T) is not None and _packed(w_plain) is None
    x = torch.randn(5, d_in, generator=g, requires_grad=True)
    ours = linear(x, w, b)
    assert torch.equal(ours.detach(), linear(x.detach(), w_plain, b))
    (gx,) = torch.autograd.grad(ours.sum(), x)
    torch.testing.assert_close(gx, torch.ones(5, d_out) @ w_plain)


def test_a_packed_weight_follows_changes_to_the_weight_and_goes_with_it():
    """The packed copy is remade when the weight changes in place or its data is replaced,
    and dropped when the weight is collected."""
    w, x = torch.randn(64, 32), torch.randn(4, 32)
    pack_weights([w])
    with torch.no_grad():
        before = linear(x, w)
        w.mul_(2.0)
        torch.testing.assert_close(linear(x, w), 2 * before)
        assert torch.equal(linear(x, w), linear(x, w.clone()))
        w.data = torch.randn(64, 32)
        assert torch.equal(linear(x, w), linear(x, w.clone()))
    key = id(w)
    assert key in _PACKABLE
    del w
    import gc

    gc.collect()
    assert key not in _PACKABLE
