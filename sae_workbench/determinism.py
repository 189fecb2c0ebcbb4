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
    ONEDNN_MAX_CPU_ISA=AVX2         oneDNN JIT kernels: the model's fp32 GEMMs (models.linear
    (DNNL_MAX_CPU_ISA, old name)    routes them there), and ops torch routes there itself
                                    (measured: GELU of the MiniLM MLP). oneDNN honours
                                    the cap on any vendor's CPU.
    MKL_CBWR=COMPATIBLE,STRICT      MKL conditional numerical reproducibility for
                                    torch's other SGEMMs (attention scores, SAE
                                    training, unembedding). COMPATIBLE is the only
                                    branch MKL honours on non-Intel CPUs (AVX2,
                                    SSE4_2, AVX512 fall back to AUTO there); STRICT
                                    makes it independent of thread count and alignment.
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
MKL_GEMM = "SAE_WORKBENCH_MKL_GEMM"
"""=1: the pinned run's fp32 GEMMs on MKL's COMPATIBLE branch instead of oneDNN (what the
pinning did before; bench/determinism_cost.py only: other bytes, a third of the speed)."""

# what the libraries report once they run under ENV
_MKL_CBWR_COMPATIBLE_STRICT = 0x10003  # MKL_CBWR_COMPATIBLE | MKL_CBWR_STRICT
_pinned = False
_isa_pinned = False
"""pin() set the x86 ISA environment (not opted out, an x86-64 CPU): `isa_pinned()`."""


def isa_pinned() -> bool:
    """Whether this process runs the pinned x86 kernels (pin() ran, not opted out, x86-64):
    models.linear then routes fp32 GEMMs through oneDNN under its AVX2 cap (unless
    SAE_WORKBENCH_MKL_GEMM=1)."""
    return _isa_pinned and os.environ.get(MKL_GEMM) != "1"


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
        "model_gemm": "oneDNN (ISA cap " + os.environ.get("ONEDNN_MAX_CPU_ISA", "none") + ")" if isa_pinned() else "MKL",
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
    global _pinned, _isa_pinned
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
    # torch.use_deterministic_algorithms(True) without its first step, importing torch._inductor to set
    # inductor's own flag (about 2 s per process; nothing here compiles with inductor)
    torch._C._set_deterministic_algorithms(True, warn_only=False)
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
    _isa_pinned = x86
    _pinned = True
