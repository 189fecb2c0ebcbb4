"""sae/distributed.py: one SAE trained by 2 torchrun processes (gloo, CPU) is the SAE one
process trains on the same global batches and seed, and a killed process ends the run
with one line instead of a hang. Real `torchrun` processes (tests/ddp_train.py)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import ROOT

DRIVER = ROOT / "tests" / "ddp_train.py"


def torchrun(n: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", str(DRIVER), *args]


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_two_processes_train_the_sae_one_process_trains(arch, tmp_path):
    """Same global batch and seed: the weights agree to 1e-4 (float rounding of the averaged
    gradient, compounded over the steps), the loss curve and the dead fraction too."""
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    r1 = run([sys.executable, str(DRIVER), str(one), "--arch", arch])
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = run(torchrun(2, str(two), "--arch", arch))
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert (tmp_path / "two.pt.rank1.pid").exists()  # a second process took part
    a, b = torch.load(one), torch.load(two)
    assert a["steps"] == b["steps"] > 50
    for k in a["state"]:
        torch.testing.assert_close(b["state"][k], a["state"][k], atol=1e-4, rtol=1e-4, msg=k)
    assert abs(a["dead_frac"] - b["dead_frac"]) <= 0.02
    for p, q in zip(a["curve"], b["curve"]):
        assert p["step"] == q["step"] and p["mse"] == pytest.approx(q["mse"], rel=1e-3, abs=1e-6)


@pytest.mark.slow
def test_a_killed_process_ends_the_run_with_one_line(tmp_path):
    out = tmp_path / "long.pt"
    proc = subprocess.Popen(torchrun(2, str(out), "--epochs", "1000"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        pid1 = tmp_path / "long.pt.rank1.pid"
        deadline = time.monotonic() + 300
        while not pid1.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert pid1.exists(), "rank 1 never started"
        time.sleep(5)  # in the training loop by now
        assert proc.poll() is None, "the run ended before the kill"
        os.kill(int(pid1.read_text()), signal.SIGKILL)
        t = time.monotonic()
        output, _ = proc.communicate(timeout=180)
        took = time.monotonic() - t
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert took < 120, f"the run took {took:.0f} s to stop"
    lines = [ln for ln in output.splitlines() if "error: process 0 of 2" in ln]  # torchrun may prefix "[rank0]:"
    assert len(lines) == 1 and "another process of this run failed" in lines[0], output[-3000:]
    assert not out.exists()
