"""Same commit, same bytes, any machine (issue 12).

Extraction (every hook of params.yaml), next-token log-probs and greedy tokens
(the LM head), and three SAE training steps run in
fresh processes whose environment, set before Python starts, emulates other
machines: another ATen CPU capability, oneDNN ISA cap, MKL branch, OpenBLAS
core type, thread counts, one CPU. With the pinning of sae_workbench.determinism
every output is byte-identical; the control shows the same emulation changes the
bytes when the pinning is switched off, so the first test can fail.
"""

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from sae_workbench import determinism
from sae_workbench.config import load_params

from helpers import ROOT

PROBE = "from sae_workbench.determinism_probe import main; main()"
TEXT_IDS = ("python-03", "math-05", "formal-02", "conversational-04", "social-06", "python-11")

# Set before the process starts, as another machine's defaults or a user's shell would.
MACHINES = {
    "this machine": {},
    "no AVX-512, one CPU, one thread": {
        "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "AUTO",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Prescott",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    },
    "AVX-512 server, four threads": {
        "ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX", "MKL_CBWR": "AVX512",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512", "OPENBLAS_CORETYPE": "SkylakeX",
        "OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4", "MKL_DYNAMIC": "TRUE",
    },
}
ONE_CPU = "no AVX-512, one CPU, one thread"
PROBE_BYTES = 5.5 * 1024**3  # one probe process's peak RSS with headroom (measured: 4.8 GB)
# control: pinning off, only ATen's capability differs (default runs on any CPU)
CONTROL = {
    "unpinned": {determinism.OPT_OUT: "1"},
    "unpinned, ATen default": {determinism.OPT_OUT: "1", "ATEN_CPU_CAPABILITY": "default"},
}

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not determinism._x86(), reason="byte-identity is pinned for x86-64 CPUs")]


def _env(extra: dict) -> dict:
    """This process's environment without anything the pin sets (pytest's own
    process is pinned), plus the emulated machine's settings."""
    keep = os.environ.get(determinism.OPT_OUT)  # SAE_WORKBENCH_UNPINNED=1 pytest ...: shows the test failing
    env = {k: v for k, v in os.environ.items() if k not in determinism.ENV and k != determinism.OPT_OUT}
    env["HF_HUB_OFFLINE"] = "1"
    if keep:
        env[determinism.OPT_OUT] = keep
    env.update(extra)
    return env


def _one_cpu():
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[:1])


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    """md5s and effective settings of each emulated machine's run (as many at once as memory allows)."""
    tmp = tmp_path_factory.mktemp("determinism")
    texts = tmp / "texts.jsonl"
    recs = [json.loads(line) for line in (ROOT / "data/texts/labelled.jsonl").read_text(encoding="utf-8").splitlines()]
    texts.write_text("".join(json.dumps(r) + "\n" for r in recs if r["id"] in TEXT_IDS), encoding="utf-8")
    # the model's first-use conversion (Gemma's GGUF -> cached fp32 directory) once, before the parallel probes
    warm = subprocess.run(
        [sys.executable, "-c", "import sae_workbench; from sae_workbench.config import load_params; p = load_params().model; "
         "p.loader == 'gguf' and __import__('sae_workbench.model_cache', fromlist=['x']).gguf_hf_dir(p.name)"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert warm.returncode == 0, warm.stderr[-2000:]
    # at most as many probes at once as memory holds: each peaks near 4.8 GB (Gemma's load, its
    # unembedding and the packed copy the LM head uses); five at once on a 24 GB machine met the OOM killer
    at_once = max(1, int(psutil.virtual_memory().available // PROBE_BYTES))
    waiting = list(enumerate({**MACHINES, **CONTROL}.items()))
    waiting.sort(key=lambda x: x[1][0] != ONE_CPU)  # the slowest (one CPU) first
    running, out = {}, {}  # name -> (i, process); name -> probe JSON
    deadline = time.monotonic() + 1800
    while waiting or running:
        while waiting and len(running) < at_once:
            i, (name, extra) = waiting.pop(0)
            pre = _one_cpu if name == ONE_CPU and hasattr(os, "sched_setaffinity") else None
            # output to files, not pipes: a probe never waits on a pipe nobody reads yet
            with open(tmp / f"run{i}.out", "w") as stdout, open(tmp / f"run{i}.err", "w") as stderr:
                running[name] = i, subprocess.Popen(
                    [sys.executable, "-c", PROBE, "--probe", str(texts), "--out", str(tmp / f"run{i}"), "--steps", "3"],
                    cwd=ROOT, env=_env(extra), stdout=stdout, stderr=stderr, preexec_fn=pre,
                )
        for name in [n for n, (_, p) in running.items() if p.poll() is not None]:
            i, p = running.pop(name)
            err = (tmp / f"run{i}.err").read_text()
            assert p.returncode == 0, f"{name}: exit {p.returncode} (at most {at_once} probes at once): {err[-2000:]}"
            out[name] = json.loads((tmp / f"run{i}.out").read_text().strip().splitlines()[-1])
        if time.monotonic() > deadline:
            for _, p in running.values():
                p.kill()
            pytest.fail(f"probes still running after 1800 s: {sorted(running)}")
        time.sleep(0.2)
    return out


def test_same_bytes_on_emulated_machines(probes):
    ref = probes["this machine"]["md5"]
    hooks = load_params(ROOT / "params.yaml").hooks
    assert set(ref) == {f"{h}.safetensors" for h in hooks} | {"tokens.json", "sae.safetensors", "sae.curve", "next_token_logprobs",
                                                             "greedy_tokens"}
    for name in MACHINES:
        diff = sorted(k for k, v in probes[name]["md5"].items() if ref.get(k) != v)
        assert not diff, f"{name}: outputs differ from this machine's: {diff}"


def test_pinned_settings_are_in_effect(probes):
    for name in MACHINES:
        eff = probes[name]["effective"]
        assert eff["aten_cpu_capability"] == "AVX2", name
        assert eff["torch_threads"] == determinism.THREADS, name
        assert eff["deterministic_algorithms"], name
        assert eff["mkl_cbwr"] in (None, "0x10003"), name


def test_control_emulation_changes_bytes_without_pinning(probes):
    """Without the pinning the emulated machine gives other activations and
    another SAE: the byte-identity above is the pinning's doing."""
    a, b = (probes[n]["md5"] for n in CONTROL)
    differ = sorted(k for k in a if a[k] != b[k])
    assert "sae.safetensors" in differ and any(k.startswith("blocks.") for k in differ), differ


def test_torch_first_fails_loudly():
    """torch computing before the pin (with another capability) is refused, not silently unpinned."""
    code = "import torch; torch.ones(8) @ torch.ones(8); import sae_workbench"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env({"ATEN_CPU_CAPABILITY": "default"}),
                       capture_output=True, text=True, timeout=300)
    if os.environ.get(determinism.OPT_OUT) == "1":
        pytest.skip("pinning switched off")
    assert r.returncode != 0 and "NumericsNotPinned" in r.stderr and "Import sae_workbench before torch" in r.stderr
