"""edits.py on a random GPT-2-shaped model: a hook edit changes only the intended positions."""

import pytest
import torch

from sae_workbench.edits import edit_hook, feature_edit
from sae_workbench.models import pad_batch

from helpers import GPT_HOOK, _gpt_setup

pytestmark = pytest.mark.usefixtures("one_thread")  # two busy CPU cores: one intra-op thread (conftest.py)


@pytest.mark.parametrize("mode", ["add", "clamp"])
def test_gpt2_hook_edits_only_the_intended_positions(tiny_gpt2, mode):
    toks, sae = _gpt_setup(tiny_gpt2)
    ids, mask = pad_batch([t.ids for t in toks], 0)
    keep = torch.zeros_like(ids)
    keep[0, 4:8] = 1
    keep[1, 2:5] = 1
    edit = feature_edit(sae, 0, mode, 3.0)
    cap, out = {}, {}

    def grab(x, hook):
        cap[len(cap)] = x.detach().clone()
        return x

    with torch.no_grad():
        out["clean"] = tiny_gpt2.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[(GPT_HOOK, grab)])
        out["edit"] = tiny_gpt2.model.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[(GPT_HOOK, edit_hook(edit, keep)), (GPT_HOOK, grab)])
    diff = cap[1] - cap[0]
    k = keep.bool()
    assert torch.equal(diff[~k], torch.zeros_like(diff[~k]))  # identical everywhere else (BOS, padding included)
    d0 = sae.W_dec[0].detach()
    target = 3.0 - torch.relu(cap[0] @ d0) if mode == "clamp" else torch.full(ids.shape, 3.0)
    torch.testing.assert_close(diff[k], (target[..., None] * d0)[k], atol=1e-5, rtol=1e-5)
    assert float(diff[k].norm(dim=-1).min()) > 1e-2
    for row, first in ((0, 4), (1, 2)):  # causal: positions before the first edit see nothing
        n = int(mask[row].sum())
        torch.testing.assert_close(out["edit"][row, :first], out["clean"][row, :first], atol=1e-6, rtol=0)
        assert (out["edit"][row, first:n] - out["clean"][row, first:n]).abs().amax(-1).min() > 1e-4
