"""kinds/ (the registry): each profile's kind and what it measures."""

import pytest

from sae_workbench.kinds import model_kind


@pytest.mark.slow  # was in test_gemma.py, marked slow as a whole
def test_model_kind_picks_the_metric_per_profile(params, minilm_params):
    lm, enc = model_kind(params.model), model_kind(minilm_params.model)
    assert (lm.name, lm.fidelity_metric, lm.steering, lm.has_lm_head, lm.logit_lens) == ("causal_lm", "ce_loss_recovered", "generation", True, True)
    assert (enc.name, enc.fidelity_metric, enc.steering, enc.has_lm_head, enc.logit_lens) == ("encoder", "embedding_cosine", "embedding_drift", False, False)
    assert params.model.has_lm_head and not minilm_params.model.has_lm_head  # the report's view agrees
    with pytest.raises(ValueError, match="unknown model kind"):
        model_kind("seq2seq")
