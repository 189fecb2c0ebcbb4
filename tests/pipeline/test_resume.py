"""Kill and resume: a stage killed with SIGKILL (power cut, OOM killer, Ctrl-C twice)
and run again ends with the bytes an uninterrupted run writes, and leaves no
stray files behind. Real stage scripts, real MiniLM for extraction."""

import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from sae_workbench.activations import save_tensors

from helpers import CRAFTED_HOOK as HOOK, ROOT, _encode_inputs, raw_params, write_params

pytestmark = pytest.mark.slow  # real dvc repro and stage processes


def _digests(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def _progress(err: str) -> int:
    """The highest step tqdm has printed so far ("| 37/560 [")."""
    return max((int(m) for m in re.findall(r"\|\s*(\d+)/\d+ \[", err)), default=0)


def _run_and_kill(cmd, when) -> None:
    """Start cmd, SIGKILL it as soon as when(stderr_so_far) is true (or let it finish)."""
    p = subprocess.Popen([sys.executable, *map(str, cmd)], cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = []

    def read():
        for chunk in iter(lambda: p.stderr.read(64), ""):
            seen.append(chunk)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    deadline = time.time() + 600
    while p.poll() is None and time.time() < deadline:
        if when("".join(seen)):
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the stage finished before it could be killed: the test needs a longer run"


def test_killed_extraction_reruns_to_the_same_bytes(tmp_path):
    params = write_params(raw_params("minilm"), tmp_path / "params.yaml")
    cmd = [ROOT / "stages/extract.py", "--params", params, "--texts", ROOT / "data/texts/labelled.jsonl"]
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    r = subprocess.run([sys.executable, *map(str, cmd), "--out", clean], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    # killed half-way through the forward passes: nothing written yet, nothing half-written
    _run_and_kill([*cmd, "--out", resumed], lambda err: "extract" in err and _progress(err) >= 5)
    assert not resumed.exists() or _digests(resumed) == {}
    r = subprocess.run([sys.executable, *map(str, cmd), "--out", resumed], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _digests(resumed) == _digests(clean)  # tokens.json and every hook's activations, byte for byte


def _training_inputs(tmp: Path) -> tuple[Path, Path]:
    acts_dir, _ = _encode_inputs(tmp, n_tokens=400)
    tokens = json.loads((acts_dir / "tokens.json").read_text())
    tokens["texts"] = [dict(tokens["texts"][0], id=f"t{i}", tokens=["<bos>"] + ["x"] * 100, special=[1] + [0] * 100,
                            offsets=[[0, 0]] + [[j, j + 1] for j in range(100)]) for i in range(4)]
    (acts_dir / "tokens.json").write_text(json.dumps(tokens))
    from safetensors.torch import load_file

    t = load_file(str(acts_dir / f"{HOOK}.safetensors"))
    t["text_index"] = torch.arange(4).repeat_interleave(100)
    t["position"] = torch.arange(1, 101).repeat(4)
    save_tensors(acts_dir / f"{HOOK}.safetensors", t, {"hook": HOOK, "model": "m"})
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sae"].update(expansion=1, k=8, batch_tokens=32, buffer_tokens=64, epochs=300, fidelity_texts=0, eval_frac=0.25,
                         checkpoint_every=25, device="cpu")
    p = tmp / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return acts_dir, p


def test_killed_training_resumes_from_its_checkpoint_to_the_same_bytes(tmp_path):
    acts_dir, params = _training_inputs(tmp_path)

    def cmd(out: Path):
        return [ROOT / "stages/train_sae.py", "--params", params, "--hook", HOOK, "--acts", acts_dir, "--saes", out / "saes",
                "--checkpoints", out / "ck", "--metrics", out / "metrics", "--curves", out / "curves"]

    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    r = subprocess.run([sys.executable, *map(str, cmd(clean))], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = resumed / "ck" / f"{HOOK}.pt"
    _run_and_kill(cmd(resumed), lambda err: ck.exists() and _progress(err) >= 30)
    assert ck.exists() and not (resumed / "saes").exists()
    r = subprocess.run([sys.executable, *map(str, cmd(resumed))], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not ck.exists()  # a finished run removes its checkpoint: no undeclared file stays behind
    for d in ("saes", "metrics", "curves"):
        assert _digests(resumed / d) == _digests(clean / d), d
