"""The labelled text set and its schema: registers, sources, stratified splits."""

import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace

import pytest

from sae_workbench.config import CATEGORIES
from sae_workbench.data import Text, read_texts, validate_labelled, write_texts

from helpers import ROOT

LABELLED = ROOT / "data/texts/labelled.jsonl"


def _small_set():
    """A valid labelled set: 2 registers per category, each with 2 train texts and 1 held out."""
    out = []
    for c in CATEGORIES:
        for r in ("plain", "fancy"):
            for j, split in enumerate(("train", "train", "heldout")):
                out.append(Text(id=f"{c}-{r}-{j}", category=c, split=split, text=f"{c} {r} {j}", register=r, source="written here"))
    return out


def _one_line_error(texts, match):
    with pytest.raises(ValueError, match=match) as e:
        validate_labelled(texts, min_per_category=1)
    assert "\n" not in str(e.value)


def test_shipped_labelled_set():
    texts = read_texts(LABELLED)
    validate_labelled(texts)
    assert 420 <= len(texts) <= 470
    for c in CATEGORIES:
        mine = [t for t in texts if t.category == c]
        assert len(mine) >= 60, c
        regs = Counter(t.register for t in mine)
        assert len(regs) >= 4 and min(regs.values()) >= 8, (c, regs)
        held = sum(t.split == "heldout" for t in mine) / len(mine)
        assert 0.28 <= held <= 0.38, (c, held)
        assert all(re.fullmatch(rf"{c}-\d\d", t.id) for t in mine)
    assert all(t.source for t in texts) and max(len(t.text) for t in texts) <= 600
    assert len({t.text.strip().lower() for t in texts}) == len(texts), "duplicate texts"


def test_shipped_split_rule():
    """Within each (category, register), in id order, round(n/3) texts are held out, evenly spaced."""
    groups = {}
    for t in read_texts(LABELLED):
        groups.setdefault((t.category, t.register), []).append(t)
    for key, g in groups.items():
        g.sort(key=lambda t: int(t.id.rsplit("-", 1)[1]))
        n = len(g)
        h = max(1, int(n / 3 + 0.5))
        want = ["heldout" if ((j + 1) * h) // n > (j * h) // n else "train" for j in range(n)]
        assert [t.split for t in g] == want, key


def test_small_set_is_valid():
    validate_labelled(_small_set(), min_per_category=1)


def test_missing_register_or_source_names_the_text():
    texts = _small_set()
    texts[4] = replace(texts[4], register="")
    _one_line_error(texts, rf"labelled text '{texts[4].id}': no register")
    texts = _small_set()
    texts[7] = replace(texts[7], source=" ")
    _one_line_error(texts, rf"labelled text '{texts[7].id}': no source")


def test_register_in_one_split_only():
    texts = [t for t in _small_set() if not (t.category == "math" and t.register == "fancy" and t.split == "heldout")]
    _one_line_error(texts, "register 'fancy' of category 'math' has no 'heldout' texts")
    texts = [replace(t, split="heldout") if t.category == "urls" and t.register == "plain" else t for t in _small_set()]
    _one_line_error(texts, "register 'plain' of category 'urls' has no 'train' texts")


def test_one_register_per_category_is_rejected():
    texts = [replace(t, register="plain") if t.category == "social" else t for t in _small_set()]
    _one_line_error(texts, r"category 'social' has 1 register\(s\) \['plain'\], need >= 2")


def test_register_and_source_round_trip(tmp_path):
    labelled = _small_set()[:2]
    corpus = [Text(id="wiki_en:Moon", category="corpus:wiki_en", split="corpus", text="The Moon is a satellite.")]
    write_texts(tmp_path / "t.jsonl", labelled + corpus)
    assert read_texts(tmp_path / "t.jsonl") == labelled + corpus
    lines = [json.loads(s) for s in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert list(lines[0]) == ["id", "category", "split", "register", "source", "text"]
    assert list(lines[2]) == ["id", "category", "split", "text"]  # unlabelled texts: no empty fields


def test_non_string_register_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "category": "python", "split": "train", "register": 3, "source": "x", "text": "x = 1"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: not a text record"):
        read_texts(bad)


def test_prepare_rejects_untagged_labelled_texts(tmp_path):
    texts = [replace(t, register="", source="") for t in read_texts(LABELLED)]
    bad = tmp_path / "labelled.jsonl"
    write_texts(bad, texts)
    r = subprocess.run([sys.executable, str(ROOT / "stages/prepare.py"), "--params", str(ROOT / "params.yaml"),
                        "--labelled", str(bad), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "labelled text 'python-01': no register" in r.stderr and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- leakage and encodability


@pytest.mark.parametrize("text, how", [
    ("python plain 0", "the same text"),
    ("  PYTHON\u00a0plain\n0 ", r"the same text once normalised \(NFKC, case, whitespace, zero-width characters\)"),
    ("ｐｙｔｈｏｎ plain\u200b 0", r"the same text once normalised \(NFKC, case, whitespace, zero-width characters\)"),
])
def test_leakage_between_splits_is_rejected(text, how):
    """A held-out text that is a train text again (under another id) would be scored on what the search saw."""
    texts = _small_set() + [Text(id="copy", category="python", split="heldout", text=text, register="plain", source="written here")]
    _one_line_error(texts, rf"^labelled texts: 'python-plain-0' \(train\) and 'copy' \(heldout\) are {how}: leakage between the splits; remove one$")


def test_a_text_twice_in_one_split_is_rejected():
    texts = _small_set() + [Text(id="copy", category="python", split="train", text="Python plain 0", register="plain", source="written here")]
    _one_line_error(texts, r"'python-plain-0' \(train\) and 'copy' \(train\) are the same text once normalised .*: counted twice in train")


def test_normalised():
    from sae_workbench.data import normalised

    assert normalised("  Ｈello\u200b\u200dWORLD\t\n x ") == "helloworld x"
    assert normalised("\u200b\ufeff\u2060 \u00a0") == ""


def _jsonl(tmp_path, lines: list[str]):
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


REC = {"id": "a", "category": "python", "split": "train", "register": "r", "source": "s", "text": "x = 1"}


@pytest.mark.parametrize("lines, message", [
    ([json.dumps({**REC, "text": "\u200b\u200c\u200d\ufeff"})], r"t.jsonl:1: text 'a' is empty once normalised \(only whitespace and zero-width"),
    ([json.dumps(REC), '{"id": "b", "category": "python", "split": "train", "register": "r", "source": "s", "text": "x \\ud800"}'],
     r"t.jsonl:2: field 'text' of text 'b' holds a lone surrogate \(U\+D800 at character 2\), which no UTF-8 file or tokenizer takes"),
    ([json.dumps({**{k: v for k, v in REC.items() if k != "split"}, "splt": "train"})], r"t.jsonl:1: unknown field 'splt'; did you mean 'split'\?$"),
    ([json.dumps({**REC, "colour": "red"})], r"t.jsonl:1: unknown field 'colour'; known: id, category, split, register, source, text$"),
    ([json.dumps([REC, REC])], r"t.jsonl:1: a JSON array: write one JSON object per line \(JSON lines\), not a list of them$"),
    (["[", json.dumps(REC) + ",", "]"], r"t.jsonl:1: a JSON array: write one JSON object per line"),
    ([json.dumps(REC) + " " + json.dumps({**REC, "id": "b"})], r"t.jsonl:1: several records on one line: put each JSON object on a line of its own \(Extra data at column \d+\)$"),
    ([json.dumps(REC, indent=1).splitlines()[0], *json.dumps(REC, indent=1).splitlines()[1:]],
     r"t.jsonl:1: a record spread over several lines: write each JSON object on one line"),
    (['"just a string"'], r"t.jsonl:1: not a text record with id/category/split/text \(a JSON str, not an object\)"),
])
def test_text_file_errors_name_file_and_line(tmp_path, lines, message):
    with pytest.raises(ValueError, match=message):
        read_texts(_jsonl(tmp_path, lines))
