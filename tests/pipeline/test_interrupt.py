"""Ctrl-C stops a stage within a few seconds, however busy it is, and leaves nothing
half-written (cli.interruptible): inside a long C call that Python cannot interrupt,
while a real stage loads Gemma, and under a real `dvc repro` (the terminal's SIGINT
to the whole process group)."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from sae_workbench.cli import INTERRUPT_GRACE

from helpers import ROOT, raw_params, write_params

LAST_LINE = "interrupted: "


STARTED: list = []


@pytest.fixture(autouse=True)
def _no_process_left():
    """Whatever a test started is killed when it ends (a failed assertion leaves no busy process)."""
    yield
    while STARTED:
        p = STARTED.pop()
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                p.kill()
            p.wait()


class Run:
    """A subprocess (in its own process group) whose output is read as it comes."""

    def __init__(self, argv, cwd=ROOT, **kw):
        kw.setdefault("start_new_session", True)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
        STARTED.append(self.p)
        self.seen = []
        fd = self.p.stdout.fileno()
        threading.Thread(target=lambda: [self.seen.append(c.decode("utf-8", "replace")) for c in iter(lambda: os.read(fd, 4096), b"")],
                         daemon=True).start()

    @property
    def out(self) -> str:
        return "".join(self.seen)

    def wait_for(self, text: str, timeout: float = 600) -> None:
        deadline = time.time() + timeout
        while text not in self.out:
            assert self.p.poll() is None, f"ended before {text!r}: {self.out[-2000:]}"
            assert time.time() < deadline, f"no {text!r} within {timeout} s: {self.out[-2000:]}"
            time.sleep(0.05)

    def interrupt(self, group: bool = False) -> float:
        """SIGINT (to the process group, as a terminal's Ctrl-C, if group); seconds until it ended."""
        t = time.time()
        os.killpg(self.p.pid, signal.SIGINT) if group else self.p.send_signal(signal.SIGINT)
        self.p.wait(timeout=60)
        time.sleep(0.2)  # the reader thread takes the last lines
        return time.time() - t


PROBE = textwrap.dedent("""
    import sys, time
    import torch
    from sae_workbench.atomic import atomic_file
    from sae_workbench.cli import interruptible
    target, grace = sys.argv[1], float(sys.argv[2])
    interruptible("probe", grace)
    torch.set_num_threads(1)
    b = torch.randn(1500, 1500)
    t = time.time(); torch.mm(b, b); t = time.time() - t
    n = min(16000, int(1500 * (4 * (min(grace, 10) + 2) / max(t, 1e-4)) ** (1 / 3)))  # one call ~ 4 x (grace + 2) s
    a = torch.randn(n, n)
    t = time.time(); torch.mm(a, a); print("one call", time.time() - t, flush=True)
    with atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        print("tmp", tmp, flush=True)
        print("busy", flush=True)
        for _ in range(1000):
            torch.mm(a, a)  # seconds per call on one thread, no bytecode in between
        print("not interrupted", flush=True)
""")


def _probe(tmp_path, grace):
    run = Run([sys.executable, "-c", PROBE, str(tmp_path / "out.bin"), str(grace)])
    run.wait_for("busy", timeout=300)
    call = float(run.out.split("one call ", 1)[1].split("\n", 1)[0])
    tmp = Path(run.out.split("tmp ", 1)[1].split("\n", 1)[0])
    return run, call, tmp


def test_ctrl_c_inside_a_long_c_call_ends_the_stage_and_removes_its_temporaries(tmp_path):
    """Python raises KeyboardInterrupt only between bytecodes: inside one long matmul it
    waits for the call to return. The watcher ends the process after the grace time,
    removing the open atomic temporary; the target is never created."""
    run, call, tmp = _probe(tmp_path, INTERRUPT_GRACE)
    assert call > INTERRUPT_GRACE + 2  # the probe sized its C call to outlast the grace
    assert tmp.exists()
    took = run.interrupt()
    assert run.p.returncode == 130 and took < INTERRUPT_GRACE + 3, (took, run.out)
    assert run.out.rstrip().splitlines()[-1] == "interrupted: probe stopped; no output of this run was written (dvc repro re-runs the stage)"
    assert not tmp.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_without_the_watcher_ctrl_c_waits_for_the_c_call(tmp_path):
    """The control: with a grace longer than one C call, the interrupt waits for the call to return."""
    control, call, _ = _probe(tmp_path, 600)
    if call < INTERRUPT_GRACE + 4:
        pytest.skip(f"one matmul takes {call:.1f} s here: too fast to show the control")
    t = time.time()
    control.p.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):
        control.p.wait(timeout=INTERRUPT_GRACE + 3)
    control.p.wait(timeout=600)
    assert time.time() - t > INTERRUPT_GRACE + 3 and control.p.returncode != 0


@pytest.mark.slow
def test_ctrl_c_while_a_stage_loads_gemma(tmp_path):
    """The real extract stage, interrupted once its model is loading and once while it extracts."""
    params = write_params(raw_params(), tmp_path / "params.yaml")
    for when in ("loading", "extract"):
        out = tmp_path / f"acts-{when}"
        run = Run([sys.executable, str(ROOT / "stages/extract.py"), "--params", str(params), "--texts", str(ROOT / "data/texts/labelled.jsonl"),
                   "--out", str(out)])
        if when == "loading":
            run.wait_for("Loading weights", timeout=300)  # transformers' progress bar while the HF model loads
        else:
            run.wait_for("batch/s]", timeout=600)
        took = run.interrupt()
        assert run.p.returncode == 130 and took < INTERRUPT_GRACE + 3, (when, took, run.out[-2000:])
        assert run.out.rstrip().splitlines()[-1].startswith(LAST_LINE), run.out[-2000:]
        assert not out.exists() or [p for p in out.rglob("*")] == [], (when, list(out.rglob("*")))


@pytest.mark.slow
def test_ctrl_c_under_dvc_repro_stops_the_stage_and_keeps_the_outputs(tmp_path):
    """Ctrl-C in the terminal of a `dvc repro` (SIGINT to its process group) while a stage
    extracts: everything stops within a few seconds and nothing is half-written."""
    from test_pipeline import TINY, _copy_repo, _deep_update

    repo = tmp_path / "repo"
    _copy_repo(repo)
    p = repo / "params.yaml"
    p.write_text(yaml.safe_dump(_deep_update(yaml.safe_load(p.read_text()), TINY), sort_keys=False))
    run = Run([sys.executable, "-m", "dvc", "repro", "extract@corpus"], cwd=repo)
    run.wait_for("Running stage 'extract@corpus'", timeout=600)
    run.wait_for("batch/s]", timeout=600)
    took = run.interrupt(group=True)
    assert took < INTERRUPT_GRACE + 5, (took, run.out[-2000:])
    assert run.p.returncode != 0
    acts = repo / "data/activations/corpus"
    assert not acts.exists() or list(acts.rglob("*")) == [], list(acts.rglob("*"))
    assert not (repo / "data/activations").exists() or not list((repo / "data/activations").glob(".*"))  # no temporaries
    assert (repo / "data/prepared/corpus.jsonl").exists()  # the stage before it finished and is kept
