"""Bad input, through the real entry points (stage scripts, the render command):
one line naming the bad value and where to fix it, a non-zero exit, and the
previous outputs untouched. The `dvc repro` side (the check stage stops the
pipeline before DVC deletes anything) is tests/pipeline/test_pipeline.py's
test_bad_param_under_dvc_repro_loses_nothing; params types, ranges and
unknown keys are tabled in tests/test_config.py, what params ask of the machine
and the data in tests/test_validate.py, and every key through a hostile set of
values in tests/test_check_property.py.

| case | entry point | message (start) |
|---|---|---|
| labelled file missing | stages/check.py | `<path> not found: check the path` |
| labelled file empty | stages/check.py | `<path>: no texts` |
| labelled file not UTF-8 | stages/check.py | `<path>:<line>: not UTF-8 (byte 0x.. at offset ..)` |
| text given as a number | stages/check.py | `<path>:<line>: not a text record ... must be strings` |
| truncated JSON line | stages/check.py | `<path>:<line>: not a text record ... (Unterminated string ...)` |
| UTF-8 BOM | stages/check.py | accepted |
| a train text again in held-out, other id and case | stages/check.py | `labelled texts: '<id>' (train) and 'leak' (heldout) are the same text once normalised (...): leakage between the splits; remove one` |
| text of zero-width characters only | stages/check.py | `<path>:1: text '<id>' is empty once normalised (...)` |
| lone surrogate (`\ud800`) | stages/check.py | `<path>:1: field 'text' of text '<id>' holds a lone surrogate (U+D800 at character 0) ...` |
| misspelt field `splt` | stages/check.py | `<path>:1: unknown field 'splt'; did you mean 'split'?` |
| the texts as one JSON array | stages/check.py | `<path>:1: a JSON array: write one JSON object per line (JSON lines), not a list of them` |
| every record on one line | stages/check.py | `<path>:1: several records on one line: put each JSON object on a line of its own (...)` |
| truncated SAE weights | stages/encode.py | `the SAE at <dir> is unreadable (...); delete <dir> and re-run dvc repro (stage train_sae@<hook>)` |
| truncated SAE cfg.json | stages/encode.py | same |
| NaN rows in activations | stages/encode.py | `<file> has N rows with NaN or infinite activations ...` |
| truncated activations | stages/encode.py | `<file> is corrupt (SafetensorError); delete it and run dvc repro` |
| truncated tokens.json | stages/encode.py | `<dir>/tokens.json is corrupt (...)` |
| truncated metrics JSON | stages/compare.py | `<file> is corrupt (...); delete it and run dvc repro` |
| garbage training checkpoint | stages/train_sae.py | warning line, training starts from step 0, exit 0 |
| executed chapter missing | python -m sae_workbench.render | `<report>/executed/<chapter> is missing ...` |
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sae_workbench.activations import save_tensors

from helpers import CRAFTED_HOOK as HOOK, ROOT, _encode_inputs


def _run(args, cwd=ROOT):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def _one_line_error(r, start: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert start in lines[0], lines[0]


# ---------------------------------------------------------------- text files


def _labelled_variants(tmp: Path) -> dict[str, Path]:
    raw = (ROOT / "data/texts/labelled.jsonl").read_bytes()
    lines = raw.decode("utf-8").splitlines()
    first = json.loads(lines[0])
    out = {
        "missing": tmp / "missing.jsonl",
        "empty": tmp / "empty.jsonl",
        "latin1": tmp / "latin1.jsonl",
        "number": tmp / "number.jsonl",
        "truncated": tmp / "truncated.jsonl",
        "bom": tmp / "bom.jsonl",
    }
    out["empty"].write_text("")
    out["latin1"].write_bytes(raw[:500] + b"\xe9" + raw[500:])
    out["number"].write_text(json.dumps({**first, "text": 5}) + "\n" + "\n".join(lines[1:]) + "\n")
    out["truncated"].write_bytes(raw[: len(raw) // 2])
    out["bom"].write_bytes(b"\xef\xbb\xbf" + raw)
    rest = "\n".join(lines[1:]) + "\n"
    train = next(json.loads(line) for line in lines if json.loads(line)["split"] == "train")
    for name, text in {
        "leak": raw.decode("utf-8") + json.dumps({**train, "id": "leak", "split": "heldout", "text": train["text"].upper() + " "}) + "\n",
        "zero_width": json.dumps({**first, "text": "\u200b\u200d\u2060"}) + "\n" + rest,
        "surrogate": json.dumps({**first, "text": "@@"}).replace("@@", "\\ud800x") + "\n" + rest,
        "splt": json.dumps({("splt" if k == "split" else k): v for k, v in first.items()}) + "\n" + rest,
        "array": json.dumps([json.loads(line) for line in lines]) + "\n",
        "one_line": " ".join(lines) + "\n",
    }.items():
        out[name] = tmp / f"{name}.jsonl"
        out[name].write_text(text, encoding="utf-8")
    return out


@pytest.mark.parametrize("case, message", [
    ("missing", "missing.jsonl not found: check the path"),
    ("empty", "empty.jsonl: no texts"),
    ("latin1", ": not UTF-8 (byte 0xe9 at offset 500); save the file as UTF-8"),
    ("number", "number.jsonl:1: not a text record with id/category/split/text (category, split, text, register and source must be strings)"),
    ("truncated", "not a text record with id/category/split/text (Unterminated string"),
    ("leak", "(heldout) are the same text once normalised (NFKC, case, whitespace, zero-width characters): leakage between the splits; remove one"),
    ("zero_width", "zero_width.jsonl:1: text "),
    ("surrogate", "surrogate.jsonl:1: field 'text' of text "),
    ("splt", "splt.jsonl:1: unknown field 'splt'; did you mean 'split'?"),
    ("array", "array.jsonl:1: a JSON array: write one JSON object per line (JSON lines), not a list of them"),
    ("one_line", "one_line.jsonl:1: several records on one line: put each JSON object on a line of its own (Extra data at column"),
])
def test_bad_text_files(tmp_path, case, message):
    path = _labelled_variants(tmp_path)[case]
    out = tmp_path / "checked.txt"
    _one_line_error(_run([ROOT / "stages/check.py", "--labelled", path, "--out", out]), message)
    assert not out.exists()


def test_utf8_bom_is_accepted(tmp_path):
    r = _run([ROOT / "stages/check.py", "--labelled", _labelled_variants(tmp_path)["bom"], "--out", tmp_path / "checked.txt"])
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- activations and SAE files


def _encode(acts_dir, sae_dir, out):
    return _run([ROOT / "stages/encode.py", "--hook", HOOK, "--acts", acts_dir, "--saes", sae_dir, "--out", out])


def test_encode_runs_on_the_crafted_inputs(tmp_path):
    acts_dir, sae_dir = _encode_inputs(tmp_path)
    r = _encode(acts_dir, sae_dir, tmp_path / "features")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "features" / f"{HOOK}.safetensors").exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def _nan_rows(path: Path) -> None:
    from safetensors.torch import load_file

    t = load_file(str(path))
    t["acts"][3] = float("nan")
    save_tensors(path, t, {"hook": HOOK, "model": "m"})


@pytest.mark.parametrize("case, corrupt, message", [
    ("truncated SAE weights", lambda a, s: _truncate(s / HOOK / "sae_weights.safetensors"), f"the SAE at {{saes}}/{HOOK} is unreadable"),
    ("truncated SAE cfg.json", lambda a, s: _truncate(s / HOOK / "cfg.json"), f"the SAE at {{saes}}/{HOOK} is unreadable"),
    ("NaN rows in activations", lambda a, s: _nan_rows(a / f"{HOOK}.safetensors"), "has 1 rows with NaN or infinite activations (first: row 3)"),
    ("truncated activations", lambda a, s: _truncate(a / f"{HOOK}.safetensors"), f"{HOOK}.safetensors is corrupt (SafetensorError); delete it and run dvc repro"),
    ("truncated tokens.json", lambda a, s: _truncate(a / "tokens.json"), "tokens.json is corrupt"),
])
def test_corrupt_activation_and_sae_files(tmp_path, case, corrupt, message):
    acts_dir, sae_dir = _encode_inputs(tmp_path)
    out = tmp_path / "features"
    out.mkdir()
    previous = out / f"{HOOK}.safetensors"
    previous.write_bytes(b"the previous output")
    corrupt(acts_dir, sae_dir)
    r = _encode(acts_dir, sae_dir, out)
    _one_line_error(r, message.format(saes=sae_dir))
    if "SAE" in case:
        assert "re-run dvc repro (stage train_sae@" in r.stderr
    assert previous.read_bytes() == b"the previous output"


def test_truncated_metrics_file_names_it(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["hooks"], params["steer"]["hook"] = [HOOK], HOOK
    params["sae"]["seed_hooks"], params["control"]["hook"], params["explain"]["hook"], params["cross_model"]["hook"] = [], "", "", ""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    m = tmp_path / "metrics" / f"{HOOK}.json"
    m.parent.mkdir()
    m.write_text('{"specialists": {"python": {"feature": 1')
    out = tmp_path / "compare.json"
    r = _run([ROOT / "stages/compare.py", "--params", tmp_path / "params.yaml", "--analysis-metrics", m.parent,
              "--analysis", tmp_path, "--metrics", out, "--out", tmp_path / "data.json"])
    _one_line_error(r, f"{m} is corrupt (")
    assert "delete it and run dvc repro" in r.stderr and not out.exists()


def test_garbage_checkpoint_is_ignored_with_a_warning(tmp_path):
    """The checkpoint is only a cache of progress: an unreadable one is reported and training starts over."""
    acts_dir, _ = _encode_inputs(tmp_path, n_tokens=400)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sae"].update(expansion=1, k=8, batch_tokens=64, buffer_tokens=128, epochs=1, fidelity_texts=0, eval_frac=0.2, checkpoint_every=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # two texts so that one is held out for the metrics
    tokens = json.loads((acts_dir / "tokens.json").read_text())
    tokens["texts"] = [dict(tokens["texts"][0], id=f"t{i}", tokens=["<bos>"] + ["x"] * 200, special=[1] + [0] * 200,
                            offsets=[[0, 0]] + [[j, j + 1] for j in range(200)]) for i in range(2)]
    (acts_dir / "tokens.json").write_text(json.dumps(tokens))
    from safetensors.torch import load_file

    t = load_file(str(acts_dir / f"{HOOK}.safetensors"))
    t["text_index"] = torch.tensor([0] * 200 + [1] * 200)
    t["position"] = torch.cat([torch.arange(1, 201)] * 2)
    save_tensors(acts_dir / f"{HOOK}.safetensors", t, {"hook": HOOK, "model": "m"})
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / f"{HOOK}.pt").write_bytes(b"not a checkpoint at all")
    r = _run([ROOT / "stages/train_sae.py", "--params", tmp_path / "params.yaml", "--hook", HOOK, "--acts", acts_dir,
              "--saes", tmp_path / "saes", "--checkpoints", ck, "--metrics", tmp_path / "m", "--curves", tmp_path / "c"])
    assert r.returncode == 0, r.stderr[-3000:]
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"ignoring unreadable checkpoint {ck / (HOOK + '.pt')}" in warnings[0] and "training from step 0" in warnings[0]
    assert not (ck / f"{HOOK}.pt").exists()  # a finished run leaves no checkpoint behind
    assert json.loads((tmp_path / "m" / f"{HOOK}.json").read_text())["l0"] == pytest.approx(8, abs=0.01)


# ---------------------------------------------------------------- the report


def test_missing_executed_chapter_fails_and_keeps_the_previous_report(tmp_path):
    import nbformat

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    report = tmp_path / "report"
    (report / "executed").mkdir(parents=True)
    shutil.copy(ROOT / "report" / "_quarto.yml", report / "_quarto.yml")
    hooks = yaml.safe_load((ROOT / "params.yaml").read_text())["hooks"]
    names = ["abstract", "methods", "training", *[f"hook-{h}" for h in hooks], "compare", "steering", "explain", "models", "discussion"]
    for n in names:
        if n != "steering":
            nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {n}\n\ntext")]), report / "executed" / f"{n}.ipynb")
    (report / "_output").mkdir()
    (report / "_output" / "index.html").write_text("previous report")
    r = _run(["-m", "sae_workbench.render", report, "--fallback"])
    _one_line_error(r, f"{report / 'executed' / 'steering.ipynb'} is missing (1 chapter(s) in all): run dvc repro")
    assert (report / "_output" / "index.html").read_text() == "previous report"
