"""kinds/ (the registry): each profile's kind and what it measures; the report's wording of each kind."""

import pytest

from sae_workbench.kinds import KINDS, model_kind
from sae_workbench.kinds.wording import WORDED, worded


def test_model_kind_picks_the_metric_per_profile(params, minilm_params):
    lm, enc = model_kind(params.model), model_kind(minilm_params.model)
    assert (lm.name, lm.fidelity_metric, lm.steering, lm.has_lm_head, lm.logit_lens) == ("causal_lm", "ce_loss_recovered", "generation", True, True)
    assert (enc.name, enc.fidelity_metric, enc.steering, enc.has_lm_head, enc.logit_lens) == ("encoder", "embedding_cosine", "embedding_drift", False, False)
    with pytest.raises(ValueError, match="profiles.*.kind must be one of causal_lm, encoder, got 'seq2seq'"):
        model_kind("seq2seq")


def test_every_kind_is_worded_for_the_report(params, minilm_params):
    """The report's wording of a kind is that kind (a subclass), for every kind of the registry."""
    assert set(WORDED) == set(KINDS)
    for name, kind in KINDS.items():
        w = worded(kind)
        assert isinstance(w, type(kind)) and w.name == name
        assert w.description and w.fidelity_label and w.limitation and w.fidelity_explanation
        assert {k for k, _ in w.fidelity_columns} & {kind.fidelity_metric, "fidelity"}  # the headline number has a column
    assert worded(params.model).name == "causal_lm" and worded(minilm_params.model).name == "encoder"
    assert worded("causal_lm").fidelity_summary([{"ce_loss_recovered": 0.9, "kl_sae": 0.5}, {"ce_loss_recovered": 0.95, "kl_sae": 0.4}]) \
        == "; CE loss recovered 0.900–0.950, KL to the clean model 0.400–0.500 nats"
    both = [{"ce_clean": 2.5, "ce_sae": 3.4, "ce_loss_recovered": 0.9, "kl_sae": 0.5}, {"ce_clean": 2.5, "ce_sae": 2.75, "ce_loss_recovered": 0.95, "kl_sae": 0.4}]
    assert worded("causal_lm").fidelity_summary(both).startswith("; ΔCE 0.25–0.90 nats per token, CE loss recovered 0.900–0.950")
    assert worded("causal_lm").fidelity_summary([{}]) == "" and worded("encoder").fidelity_summary([{"fidelity": 0.9}]) == ""
