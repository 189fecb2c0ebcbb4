"""Where the time of one TopK training step goes (torch profiler, CUDA or CPU).

$ python bench/profile_step.py --device cuda
"""

import argparse

import torch

from sae_workbench.sae.topk import TopKSAE
from sae_workbench.sae.base import TrainState
from sae_workbench.sae.train import make_optimizer, optimisation_step

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cuda")
ap.add_argument("--d-in", type=int, default=768)
ap.add_argument("--expansion", type=int, default=32)
ap.add_argument("--k", type=int, default=32)
ap.add_argument("--batch", type=int, default=8192)
a = ap.parse_args()
dev = torch.device(a.device)
sae = TopKSAE(a.d_in, a.d_in * a.expansion, k=a.k).to(dev).train()
opt = make_optimizer(sae, 1e-4)
x = torch.randn(a.batch, a.d_in, device=dev)
state = TrainState(0, 1000, torch.zeros(sae.d_sae, dtype=torch.bool, device=dev))
ac = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
for _ in range(5):
    optimisation_step(sae, opt, x, state, ac)
acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
with torch.profiler.profile(activities=acts) as prof:
    for _ in range(5):
        optimisation_step(sae, opt, x, state, ac)
    if dev.type == "cuda":
        torch.cuda.synchronize()
key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=60))
