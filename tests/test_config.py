"""params.yaml validation and stage errors: one actionable line, exit status 2."""

import subprocess
import sys

import pytest
import yaml

from sae_workbench.config import load_params

from conftest import ROOT


def _params(tmp_path, **changes):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, v in changes.items():
        node = raw
        *path, last = dotted.split(".")
        for k in path:
            node = node[k]
        node[last] = v
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": "gpt3"}, "not a profile"),
        ({"hooks": ["blocks.7.hook_resid_pre"]}, "beyond minilm's 6 layers"),
        ({"hooks": ["blocks.1.hook_bogus"]}, "not supported"),
        ({"hooks": []}, "hooks: is empty"),
        ({"sae.expansion": 0}, "sae.expansion"),
        ({"sae.lr": 5}, "sae.lr"),
        ({"data.max_tokens": 4}, "data.max_tokens"),
        ({"steer.category": "poetry"}, "steer.category"),
        ({"steer.hook": "blocks.2.hook_resid_pre"}, "steer.hook"),
        ({"sae.l2_coefficient": 1.0}, "unknown key"),
    ],
)
def test_bad_params_are_rejected(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        load_params(_params(tmp_path, **change))


def test_default_params_load():
    p = load_params(ROOT / "params.yaml")
    assert p.model.loader == "bridge" and p.steer.hook in p.hooks


def test_stage_exits_2_with_one_line(tmp_path):
    p = _params(tmp_path, **{"sae.expansion": -1})
    r = subprocess.run([sys.executable, str(ROOT / "stages/prepare.py"), "--params", str(p), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: sae.expansion")
    assert not (tmp_path / "out").exists()


def test_bad_labelled_texts(tmp_path):
    bad = tmp_path / "labelled.jsonl"
    bad.write_text('{"id": "a", "category": "python", "split": "train", "text": ""}\n')
    r = subprocess.run([sys.executable, str(ROOT / "stages/prepare.py"), "--params", str(ROOT / "params.yaml"),
                        "--labelled", str(bad), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2 and "is empty" in r.stderr and not (tmp_path / "out").exists()
