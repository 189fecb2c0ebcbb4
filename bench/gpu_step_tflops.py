"""Achieved TFLOP/s of our TopK training step against a plain bf16 matmul, on one GPU.

$ python bench/gpu_step_tflops.py [--d-in 768 --expansion 32 --k 32 --batch 8192]

Both are timed in the same run with CUDA events after warm-up. The matmul is
[batch, d_in] @ [d_in, d_sae] in bf16. Our step is sae_workbench.sae.train's
optimisation_step (bf16 autocast, TopK + AuxK, Adam, decoder
renormalisation) on random activations already on the GPU. Its FLOPs are the
matmuls it performs, 6 * 2*B*d*m: the encoder's forward, weight gradient and
input gradient (b_dec is subtracted from the input, so that gradient is
needed), and the decoder's forward, weight gradient and activation gradient
(on a GPU the kept activations are scattered into a dense [B, m] matrix and
decoded by matmul); with dead latents, AuxK adds 3 * 2*B*d*m. Top-k selection
and element-wise work are not counted.
"""

import argparse

import torch

from sae_workbench.sae.topk import TopKSAE
from sae_workbench.sae.base import TrainState
from sae_workbench.sae.train import make_optimizer, optimisation_step


def timed(fn, n: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(n):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / 1000 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-in", type=int, default=768)
    ap.add_argument("--expansion", type=int, default=32)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--dead-frac", type=float, default=0.0, help="fraction of latents marked dead (AuxK active)")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device: this benchmark needs a GPU")
    dev = torch.device("cuda")
    B, d, m, k = a.batch, a.d_in, a.d_in * a.expansion, a.k

    x16 = torch.randn(B, d, device=dev, dtype=torch.bfloat16)
    w16 = torch.randn(d, m, device=dev, dtype=torch.bfloat16)
    t_mm = timed(lambda: x16 @ w16, a.steps)
    mm_tflops = 2 * B * d * m / t_mm / 1e12

    torch.manual_seed(0)
    sae = TopKSAE(d, m, k=k).to(dev).train()
    opt = make_optimizer(sae, 1e-4)
    x = torch.randn(B, d, device=dev)
    dead = torch.rand(m, device=dev) < a.dead_frac
    state = TrainState(0, 1000, dead)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    t_step = timed(lambda: optimisation_step(sae, opt, x, state, autocast), a.steps)
    flops = 6 * 2 * B * d * m + (3 * 2 * B * d * m if a.dead_frac > 0 else 0)
    step_tflops = flops / t_step / 1e12

    print(f"{torch.cuda.get_device_name()}  batch {B}, d_in {d}, d_sae {m}, k {k}, dead {a.dead_frac:.0%}")
    print(f"bf16 matmul [{B}x{d}]@[{d}x{m}]: {t_mm * 1e3:8.3f} ms  {mm_tflops:7.1f} TFLOP/s")
    print(f"TopK training step             : {t_step * 1e3:8.3f} ms  {step_tflops:7.1f} TFLOP/s  ({B / t_step:,.0f} tokens/s)")
    print(f"ratio (step / matmul TFLOP/s)  : {step_tflops / mm_tflops:.2f}")


if __name__ == "__main__":
    main()
