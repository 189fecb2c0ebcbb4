"""kinds/causal_lm.py: CE loss recovered on a random GPT-2-shaped model: a
perfect reconstruction scores 1, a useless one about 0."""

import torch

from sae_workbench.kinds.causal_lm import ce_loss_recovered

from helpers import Constant, Perfect, _bos_text


def test_ce_loss_recovered_bounds(tiny_gpt2):
    toks = [_bos_text(range(3, 30)), _bos_text(range(40, 52))]
    hook = "blocks.2.hook_resid_pre"
    perfect = ce_loss_recovered(tiny_gpt2, Perfect(), hook, toks)
    assert abs(perfect["ce_sae"] - perfect["ce_clean"]) < 1e-4 and abs(perfect["fidelity"] - 1) < 1e-3
    assert perfect["ce_loss_recovered"] == perfect["fidelity"] and abs(perfect["kl_sae"]) < 1e-5 and perfect["kl_zero"] > 0
    assert perfect["n_positions"] == 26 + 11  # predictions from kept tokens only: not from BOS, none of padding
    zero_like = ce_loss_recovered(tiny_gpt2, Constant(torch.zeros(64)), hook, toks)
    assert abs(zero_like["fidelity"]) < 1e-3 and abs(zero_like["kl_sae"] - zero_like["kl_zero"]) < 1e-5
    # chunking the logits does not change the numbers
    small = ce_loss_recovered(tiny_gpt2, Constant(torch.randn(64)), hook, toks, batch_size=1, chunk=5)
    big = ce_loss_recovered(tiny_gpt2, Constant(torch.randn(64)), hook, toks, batch_size=8, chunk=1000)
    for k in ("ce_clean", "kl_zero"):
        assert abs(small[k] - big[k]) < 1e-4, k
