"""Every key of params.yaml through a set of hostile values: the check stage either
refuses the value in one line naming the key, or the value is one the whole pipeline
takes (it is in range). Never "accepted by check, refused by a later stage".

The keys are found by walking the loaded params.yaml (mappings and lists, every node,
so a new key is covered without editing this file); each gets every value of HOSTILE
(and each mapping an unknown key). Most cases call the check in process
(`load_params` then `validate.check_pipeline`, what stages/check.py runs); a sample
goes through `python stages/check.py` to show the same verdict there: exit status 2
and exactly one line on stderr. The cases accepted are listed in ACCEPTED, each a
value the pipeline uses as it is, so a new acceptance (or a new refusal) fails here
until it is reviewed. It runs on params.yaml as shipped (Gemma) and switched to MiniLM.
The tally is printed (pytest -s) and written to $CHECK_PROPERTY_TALLY.<model>.json if set.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from sae_workbench.config import CATEGORIES, load_params
from sae_workbench.data import read_texts
from sae_workbench.offline import ModelUnavailable
from sae_workbench.validate import check_pipeline

from helpers import ROOT, raw_params

pytestmark = pytest.mark.slow  # about a minute per profile: CI runs it, the fast set leaves it out

LABELLED = ROOT / "data/texts/labelled.jsonl"
UNKNOWN = "zz_unknown"

HOSTILE = {
    "wrong type": None,  # per node: a string for a number, bool, list or mapping; a mapping for a string
    "nan": float("nan"),
    "+inf": float("inf"),
    "-inf": float("-inf"),
    "0": 0,
    "negative": -1,
    "huge": 1e30,
    "empty string": "",
    "empty list": [],
    "other string": "no such value",
}
"""(label, value) each key is set to; 'wrong type' depends on the key's present value."""


def _wrong_type(value):
    return {"a": 1} if isinstance(value, str) else "abc"


def _nodes(node, path=()):
    """(path, value) of every node under `node` (mapping keys and list items), depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield path + (k,), v
        yield from _nodes(v, path + (k,))


def _key(path) -> str:
    """The params key a path is about, as messages name it: 'steer.coefficients' for ('steer', 'coefficients', 2)."""
    return ".".join(str(p) for p in path if not isinstance(p, int))


def _label(path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))


def _set(raw, path, value):
    node = raw
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def cases():
    """(case id, key the message must name, mutate(raw)) for every node and hostile value, and an unknown key per mapping."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    out = []
    for path, present in _nodes(raw):
        for label, value in HOSTILE.items():
            v = _wrong_type(present) if label == "wrong type" else value
            out.append((f"{_label(path)}={label}", _key(path), lambda r, path=path, v=v: _set(r, path, v)))
    mappings = [((), raw)] + [(p, v) for p, v in _nodes(raw) if isinstance(v, dict)]
    for path, _ in mappings:
        out.append((f"{_label(path + (UNKNOWN,))}=unknown key", _key(path + (UNKNOWN,)),
                    lambda r, path=path: _set(r, path + (UNKNOWN,), 1)))
    return out


ACCEPTED = {
    # zero where 0 means "none" or "all" and the stage treats it so
    "seed=0", "data.corpus_wiki_en=0", "data.corpus_wiki_es=0", "data.corpus_wiki_fr=0", "data.corpus_code=0",
    "sae.l1_coefficient=0", "sae.l1_warmup_frac=0", "sae.aux_coefficient=0", "sae.lr_warmup_frac=0",
    "sae.lr_decay_frac=0", "sae.checkpoint_every=0", "sae.fidelity_texts=0", "analysis.card_strongest=0",
    "steer.ablation_texts=0", "control.corpus_texts=0", "report.n_other_texts=0",
    # steering coefficients [-4, -2, -1, 0, 1, 2, 4]: these two set the value already there; 0 or -1
    # anywhere else repeats a coefficient (refused: the sweep keys its results by coefficient)
    "steer.coefficients[2]=negative", "steer.coefficients[3]=0",
    # '' and [] where the key documents them: no attribution text chosen, no control, no seed study
    "steer.attribution_text=empty string", "control.hook=empty string", "sae.seed_hooks=empty list",
    # a prompt is any non-blank text (every prompt in params.yaml: added below), and so is a prompt prefix
    *(f"steer.prompt_prefixes.{c}=other string" for c in CATEGORIES),
    # neuronpedia ids and SAE releases are only link text or used with sae_source: pretrained
    "profiles.gemma.neuronpedia=empty string", "profiles.gemma.neuronpedia=other string",
    "profiles.gpt2.neuronpedia=empty string", "profiles.gpt2.neuronpedia=other string",
    "profiles.gemma.sae_release.resid_post=empty string", "profiles.gemma.sae_release.resid_post=other string",
    "profiles.gemma.sae_release.mlp_out=empty string", "profiles.gemma.sae_release.mlp_out=other string",
    "profiles.gemma.sae_release=empty string", "profiles.gemma.sae_release=other string",
    "profiles.gemma.sae_release=wrong type",  # 'abc': one release for every hook component is a valid form
    "profiles.gpt2.sae_release=other string", "profiles.gemma.sae_id=other string",
    # explain: '' where the key documents it (no hook: no explanations; no endpoint: the embedded explainer; no key),
    # any endpoint model name while no endpoint is set, and no sampled features besides the specialists
    "explain.hook=empty string", "explain.endpoint=empty string", "explain.api_key_env=empty string",
    "explain.endpoint_model=empty string", "explain.endpoint_model=other string", "explain.n_random=0",
    "explain.n_random_models=0",  # 0: no other model explained (documented)
    # a profile neither chosen by `model` nor studied by cross_model may name a model this machine does not have
    # (checked once chosen); minilm is studied by the cross_model stage, so its name is checked
    "profiles.gpt2.name=other string",
    # '' and [] where the key documents them: no cross-model study; 0 corpus texts: all of them
    "cross_model.hook=empty string", "cross_model.profiles=empty list", "cross_model.corpus_texts=0",
}
"""Cases the pipeline takes as they are (reviewed one by one), params.yaml as shipped (model: gemma)."""
ACCEPTED |= {f"steer.prompts[{i}]=other string"
             for i in range(len(yaml.safe_load((ROOT / "params.yaml").read_text())["steer"]["prompts"]))}

ACCEPTED_MINILM = set(ACCEPTED)
"""The same with model: minilm (helpers.raw_params("minilm")): Gemma's profile is not chosen, but the cross_model
stage studies it (cross_model.profiles: [gemma]), so its name and tl_name are checked as minilm's are with Gemma."""


@pytest.fixture(scope="module")
def texts():
    return read_texts(LABELLED)


def _verdict(tmp_path, raw, texts) -> str | None:
    """None if check accepts params `raw`, else its one-line message."""
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    try:
        check_pipeline(load_params(p), texts, str(LABELLED))
    except (ValueError, ModelUnavailable) as e:  # what the stage wrapper turns into one line and exit status 2
        return str(e)
    return None


@pytest.mark.parametrize("profile, expected", [(None, ACCEPTED), ("minilm", ACCEPTED_MINILM)], ids=["gemma", "minilm"])
def test_every_key_through_the_hostile_set(tmp_path, texts, profile, expected):
    base = raw_params(profile)
    assert _verdict(tmp_path, base, texts) is None
    tally, accepted, bad = Counter(), set(), []
    for case, key, mutate in cases():
        raw = json.loads(json.dumps(base))
        mutate(raw)
        message = _verdict(tmp_path, raw, texts)
        tally["tried"] += 1
        if message is None:
            tally["accepted (in range)"] += 1
            accepted.add(case)
        else:
            tally["rejected"] += 1
            if "\n" in message or key not in message:
                bad.append(f"{case}: {message!r}")
    summary = {"model": base["model"], **tally, "keys": len({k for _, k, _ in cases()})}
    print(f"\ncheck property: {json.dumps(summary)}")
    if os.environ.get("CHECK_PROPERTY_TALLY"):
        with open(f"{os.environ['CHECK_PROPERTY_TALLY']}.{base['model']}.json", "w") as f:
            json.dump({**summary, "accepted_cases": sorted(accepted)}, f, indent=1)
    assert not bad, "rejected without one line naming the key:\n" + "\n".join(bad)
    assert accepted == expected, (f"accepted but not reviewed: {sorted(accepted - expected)}; "
                                  f"reviewed but now rejected: {sorted(expected - accepted)}")
    assert tally["tried"] == tally["rejected"] + tally["accepted (in range)"] and tally["tried"] > 1000


SAMPLE = ["sae.aux_coefficient=nan", "steer.max_new_tokens=huge", "report.n_specialists=negative", "seed=huge",
          "steer.prompts=empty list", "profiles.gemma.n_layers=0", "steer.attribution_text=other string",
          "zz_unknown=unknown key", "control.corpus_texts=0"]


def test_a_sample_through_the_check_stage(tmp_path):
    """The in-process verdict is the stage's: exit 2 and one line on stderr, or exit 0 and the marker written."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    by_id = {case: (key, mutate) for case, key, mutate in cases()}
    for case in SAMPLE:
        key, mutate = by_id[case]
        raw = json.loads(json.dumps(base))
        mutate(raw)
        p, out = tmp_path / "params.yaml", tmp_path / "checked.txt"
        out.unlink(missing_ok=True)
        p.write_text(yaml.safe_dump(raw, sort_keys=False))
        r = subprocess.run([sys.executable, str(ROOT / "stages/check.py"), "--params", str(p), "--out", str(out)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        if case in ACCEPTED:
            assert r.returncode == 0 and out.exists(), (case, r.stderr)
        else:
            lines = r.stderr.splitlines()
            assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], (case, r.stderr)
            assert not out.exists()


def test_hostile_floats_survive_yaml():
    """NaN and infinities reach the loader as floats (.nan, .inf), not strings."""
    dumped = yaml.safe_load(yaml.safe_dump({"a": float("nan"), "b": float("-inf"), "c": 1e30}))
    assert math.isnan(dumped["a"]) and dumped["b"] == float("-inf") and dumped["c"] == 1e30
