"""Same commit, same bytes, any x86-64 machine: the pipeline pins its own numerics.

Importing `sae_workbench` calls `pin()` (see __init__.py), so every stage
script, notebook kernel and test worker that imports the package gets it.
What decides floating-point results on a CPU is chosen by the libraries at
run time from the instruction set of the machine, and read from the
environment when each library first computes, so `pin()` overrides the
environment (whatever the user had) before torch or numpy compute anything:

    ATEN_CPU_CAPABILITY=avx2        ATen's vectorised kernels (layer norm, softmax,
                                    GELU, reductions): default/avx2/avx512 give
                                    different bytes; avx512 is picked natively
                                    where the CPU has it.
    ONEDNN_MAX_CPU_ISA=AVX2         oneDNN JIT kernels torch routes some ops to
    (DNNL_MAX_CPU_ISA, old name)    (measured: GELU of the MiniLM MLP).
    MKL_CBWR=COMPATIBLE,STRICT      MKL conditional numerical reproducibility for
                                    torch's SGEMM. COMPATIBLE is the only branch MKL
                                    honours on non-Intel CPUs (AVX2, SSE4_2, AVX512
                                    fall back to AUTO there); STRICT makes it
                                    independent of thread count and alignment.
    MKL_ENABLE_INSTRUCTIONS=AVX2    caps MKL code outside CNR (belt and braces).
    FBGEMM_ENABLE_INSTRUCTIONS=AVX2 FBGEMM (torch's CPU embedding_bag, the SAE's sparse decode).
    OPENBLAS_CORETYPE=Haswell       numpy's OpenBLAS (float64 matmuls of the analysis):
                                    SkylakeX and Haswell kernels give different bytes.
    *_NUM_THREADS=2, MKL_DYNAMIC    a fixed thread count, whatever the machine has:
                                    OpenBLAS's DGEMM and ATen's parallel reductions
                                    split work by thread count.
    CUBLAS_WORKSPACE_CONFIG         lets deterministic algorithms run cuBLAS.

and in-process: torch.set_num_threads(THREADS), torch.use_deterministic_algorithms(True).

The ISA is AVX2 + FMA (every x86-64 CPU since 2013-2015): on an older x86 CPU
`pin()` fails (the pinned kernels would not run); on other architectures
(ARM, Apple) it pins threads and determinism only and warns that the bytes will
not match x86 ones. GPU work (sae.device auto/cuda) is deterministic run to run
on one GPU model but not byte-identical to CPU results (bf16 autocast, cuBLAS).

`SAE_WORKBENCH_UNPINNED=1` skips the pinning (benchmarks and the determinism
test's control only: results then depend on the machine).

    python -c 'from sae_workbench.determinism import main; main()'                # effective values here
    python -c 'from sae_workbench.determinism import main; main()' --probe TEXTS  # md5s of extraction + SAE steps
"""

from __future__ import annotations

import os
import platform
import sys
import warnings

THREADS = 2
"""Intra-op threads of torch, MKL, OpenMP and OpenBLAS, fixed for every machine."""

ISA_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}
THREAD_ENV = {
    "OMP_NUM_THREADS": str(THREADS),
    "MKL_NUM_THREADS": str(THREADS),
    "OPENBLAS_NUM_THREADS": str(THREADS),
    "MKL_DYNAMIC": "FALSE",
}
OTHER_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
ENV = {**ISA_ENV, **THREAD_ENV, **OTHER_ENV}
OPT_OUT = "SAE_WORKBENCH_UNPINNED"

# what the libraries report once they run under ENV
_MKL_CBWR_COMPATIBLE_STRICT = 0x10003  # MKL_CBWR_COMPATIBLE | MKL_CBWR_STRICT
_pinned = False


class NumericsNotPinned(RuntimeError):
    """torch (or numpy) computed before the pin and runs with other kernels."""


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None  # not Linux: trust the CPU (every x86-64 Mac and Windows box in use has AVX2)


def mkl_cbwr() -> int | None:
    """MKL's effective CNR mode inside torch (MKL_CBWR_* bits), None where it can't be read."""
    import ctypes

    import torch

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    return get(-1)  # MKL_CBWR_ALL: branch | STRICT


def effective() -> dict:
    """What the libraries in this process actually run with."""
    import torch

    out = {
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "mkl_cbwr": None,
    }
    cbwr = mkl_cbwr()
    if cbwr is not None:
        out["mkl_cbwr"] = hex(cbwr)
    try:
        import threadpoolctl

        out["blas"] = [
            {k: i.get(k) for k in ("internal_api", "architecture", "num_threads")}
            for i in threadpoolctl.threadpool_info()
            if i.get("user_api") == "blas"
        ]
    except ImportError:
        pass
    return out


def pin() -> None:
    """Pin the floating-point environment of this process (and of its children).

    Must run before torch computes anything and before numpy is imported;
    importing sae_workbench first does it (importing torch earlier is fine: its
    libraries read the environment at their first computation). Raises
    NumericsNotPinned when torch already computed with other kernels, warns when
    numpy's OpenBLAS was loaded with other kernels, and raises RuntimeError on an
    x86 CPU without AVX2/FMA."""
    global _pinned
    if _pinned:
        return
    if os.environ.get(OPT_OUT) == "1":
        print(f"sae_workbench: {OPT_OUT}=1: numerics NOT pinned, results depend on this machine", file=sys.stderr)
        _pinned = True
        return
    x86 = _x86()
    if x86:
        flags = _cpu_flags()
        if flags is not None and not {"avx2", "fma"} <= flags:
            raise RuntimeError(
                "sae_workbench pins AVX2 kernels for machine-independent results, and this CPU lacks AVX2/FMA"
            )
        os.environ.update(ISA_ENV)
    else:
        warnings.warn(
            f"sae_workbench: {platform.machine()} CPU: results will not be byte-identical to x86-64 machines "
            "(only threads and deterministic algorithms are pinned)",
            stacklevel=2,
        )
    os.environ.update(THREAD_ENV)
    os.environ.update(OTHER_ENV)
    # a notebook kernel or tool may have imported numpy first: its OpenBLAS is
    # then already set up (threads can still be capped; the core type can't)
    numpy_first = "numpy" in sys.modules

    import torch

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    if x86:
        eff = effective()
        bad = []
        if eff["aten_cpu_capability"] != "AVX2":
            bad.append(f"ATen CPU capability {eff['aten_cpu_capability']} (want AVX2)")
        if eff["mkl_cbwr"] not in (None, hex(_MKL_CBWR_COMPATIBLE_STRICT)):
            bad.append(f"MKL CNR mode {eff['mkl_cbwr']} (want {hex(_MKL_CBWR_COMPATIBLE_STRICT)})")
        if bad:  # torch computed before the pin: its kernels are chosen for good
            raise NumericsNotPinned(
                f"torch computed before sae_workbench pinned the numerics: {'; '.join(bad)}. Import sae_workbench "
                "before torch computes anything (or start the process with sae_workbench.determinism.ENV set)."
            )
        blas = [b["architecture"] for b in eff.get("blas", []) if b["internal_api"] == "openblas"]
        if numpy_first and any(a not in ("Haswell", None) for a in blas):
            warnings.warn(
                f"sae_workbench: numpy was imported before sae_workbench, so its OpenBLAS runs {blas} kernels, not "
                "the pinned Haswell ones: numpy matrix products in this process may differ by machine "
                "(stage scripts import sae_workbench first)",
                stacklevel=2,
            )
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(THREADS)
    except ImportError:
        pass
    _pinned = True


def probe(texts_path: str, out_dir: str, steps: int = 3, params_path: str = "params.yaml", warmup: bool = False) -> dict:
    """Extract activations of the texts (every hook of params.yaml) and train an
    SAE for `steps` steps on the first hook (CPU). Returns md5s of every output
    file and of the SAE's weights, and timings (bench/determinism_cost.py and
    tests/test_determinism.py run this in fresh processes). `warmup`: extract
    once untimed first (the first forward pass carries one-off set-up costs)."""
    import dataclasses
    import hashlib
    import time
    from pathlib import Path

    import numpy as np
    import torch
    from safetensors.torch import save

    from .activations import extract_activations
    from .config import load_params
    from .data import read_texts
    from .models import load_model
    from .sae import ShuffledBuffer, safetensors_reader, train_sae

    params = load_params(params_path)
    torch.manual_seed(params.seed)
    texts = read_texts(texts_path)
    handle = load_model(params.model)
    out = Path(out_dir)
    if warmup:
        extract_activations(handle, texts, params.hooks, out, params.data.max_tokens, params.data.batch_size, desc="probe warm-up")
    t0 = time.perf_counter()
    table = extract_activations(handle, texts, params.hooks, out, params.data.max_tokens, params.data.batch_size, desc="probe extract")
    t_extract = time.perf_counter() - t0
    n_tokens = sum(len(t["tokens"]) for t in table.texts)
    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(out.iterdir()) if f.is_file()}

    read, n, d = safetensors_reader(out / f"{params.hooks[0]}.safetensors")
    batch = min(params.sae.batch_tokens, n)
    cfg = dataclasses.replace(
        params.sae, device="cpu", batch_tokens=batch, buffer_tokens=max(batch, n),
        epochs=max(1, -(-(steps * batch) // n)), checkpoint_every=0,
        dead_window_tokens=min(params.sae.dead_window_tokens, batch),  # step 2 on: AuxK on dead latents runs too
    )
    buffer = ShuffledBuffer(read, np.arange(n), cfg.batch_tokens, cfg.buffer_tokens, params.seed)
    result = train_sae(buffer, d, cfg, params.seed, desc="probe train", stop_after=steps)
    state = {k: v.contiguous() for k, v in result.sae.state_dict().items()}
    md5["sae.safetensors"] = hashlib.md5(save(state)).hexdigest()
    md5["sae.curve"] = hashlib.md5(repr((result.scale, result.curve)).encode()).hexdigest()
    return {
        "md5": md5,
        "tokens": n_tokens,
        "extract_s": t_extract,
        "extract_tokens_per_s": n_tokens / t_extract,
        "train_steps": result.steps,
        "train_batch_tokens": batch,
        "train_step_s": cfg.batch_tokens / result.tokens_per_s,
        "effective": effective(),
    }


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probe", metavar="TEXTS", help="JSON-lines texts to extract and train on")
    p.add_argument("--out", default="build/determinism_probe", help="probe: activation directory")
    p.add_argument("--steps", type=int, default=3, help="probe: SAE training steps")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--warmup", action="store_true", help="probe: time a second extraction (benchmarks)")
    a = p.parse_args(argv)
    if a.probe:
        print(json.dumps(probe(a.probe, a.out, a.steps, a.params, a.warmup)))
    else:
        print(json.dumps({"env": {k: os.environ.get(k) for k in ENV}, "effective": effective()}, indent=2))


if __name__ == "__main__":
    main()
