"""The app's parts that need no model (fast): requests take the model in the order they
came, the gate refuses what is over its limits, a feature's scale and link, FastAPI's
validation errors made one line."""

from __future__ import annotations

import threading
import time

import pytest

from sae_workbench.app.server import Gate, one_line
from sae_workbench.app.workbench import HookState, RequestError, Turns
from sae_workbench.analysis.results import HookAnalysis, Specialist, SpecialistCount


def test_turns_go_first_come_first_served():
    turns, order = Turns(), []
    first = threading.Event()

    def hold():
        with turns.turn():
            first.set()
            time.sleep(0.3)
            order.append("first")

    def take(name):
        with turns.turn():
            order.append(name)

    threads = [threading.Thread(target=hold)]
    threads[0].start()
    first.wait()
    for name in "abcde":
        threads.append(threading.Thread(target=take, args=(name,)))
        threads[-1].start()
        time.sleep(0.02)  # each asks after the one before
    for t in threads:
        t.join()
    assert order == ["first", *"abcde"]


def test_the_gate_refuses_beyond_its_limits_and_frees_slots():
    g = Gate(max_requests=3, max_steering=1)
    g.enter(True)
    with pytest.raises(RequestError, match="busy: 1 steering requests are running") as e:
        g.enter(True)
    assert e.value.status == 429
    g.enter(False), g.enter(False)
    with pytest.raises(RequestError, match="busy: 3 model requests are running"):
        g.enter(False)
    g.leave(True)
    g.enter(False)
    assert (g.running, g.steering) == (3, 0)


class FakeSAE:
    class cfg:
        d_sae = 100


def analysis(max_acts):
    specs = {"python": Specialist(feature=7, train_score=1, train_auroc=1, heldout_score=1, mean_in_heldout=1, max_act=max_acts[7])}
    ranks = {"strongest": [{"feature": f, "max_act": v} for f, v in max_acts.items()]}
    return HookAnalysis(rankings=ranks, specialists=specs, count=SpecialistCount(1, 1, [1, 1]), score_matrix={}, coactivation=[],
                        cards={}, neuronpedia=None)


def test_scale_and_link_of_a_feature():
    h = HookState("blocks.1.hook_resid_post", FakeSAE(), analysis({7: 3.0, 8: 5.0, 9: 1.0}), browser=True)
    assert h.category_of == {7: "python"}
    assert h.scale(8) == (5.0, "the feature's max activation on the labelled texts")
    value, source = h.scale(50)
    assert value == 3.0 and source.startswith("median max activation of the 3 features")
    assert h.link(8) == "/browser/blocks.1.hook_resid_post/feature.html#8"
    bare = HookState("blocks.1.hook_resid_post", FakeSAE(), None, browser=False)
    assert bare.scale(8) == (1.0, "no analysis at this hook: raw activation units")
    assert bare.link(8) == "/api/feature/blocks.1.hook_resid_post/8" and bare.category_of == {}


def test_validation_errors_become_one_line():
    from fastapi.exceptions import RequestValidationError

    many = RequestValidationError([{"type": "missing", "loc": ("body", "feature"), "msg": "Field required"},
                                   {"type": "missing", "loc": ("body", "coefficient"), "msg": "Field required"}])
    assert one_line(many) == "feature: Field required (and 1 more)"
    bad_json = RequestValidationError([{"type": "json_invalid", "loc": ("body", 16), "msg": "JSON decode error",
                                        "ctx": {"error": "Expecting value"}}])
    assert one_line(bad_json) == "the request body is not valid JSON (Expecting value): send a JSON object"
