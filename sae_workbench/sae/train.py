"""Training loop shared by every architecture.

    split = split_activation_set("data/activations/corpus", hook, cfg.eval_frac, seed)
    result = train_on_split(split, cfg, seed, checkpoint=Path("data/checkpoints/h.pt"))
    # or, on any rows: train_sae(ShuffledBuffer(read, rows, ...), d_in, cfg, seed)

- Inputs are scaled so that E||x|| = sqrt(d_in) (one scalar, fitted on a
  sample of training tokens), or per dimension by 1/std (sae.normalize
  per_dim); export folds the scale back into the weights.
- b_dec starts at the geometric median (or mean) of that sample.
- Learning rate: linear warm-up, constant, linear decay to 0 (Adam).
- On CUDA, forward and loss run under bf16 autocast.
- Unit-norm decoder rows for TopK/BatchTopK, with the gradient component
  parallel to each row removed before the step.
- Dead latents: tokens since each latent last fired; dead after
  dead_window_tokens. They feed AuxK and the dead_frac metric.
- Checkpoints every checkpoint_every steps (atomic); a run started with the
  same config, seed and data resumes from the last one and ends bit-identical
  to an uninterrupted run.
- Started by torchrun, the processes train one SAE data-parallel, each on its
  slice of every global batch (`distributed`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..activations import TokenTable, load_activation_set
from ..atomic import atomic_file
from ..config import SAEConfig
from .base import SparseAutoencoder, TrainState
from .buffer import ShuffledBuffer, safetensors_reader
from .distributed import World, world
from .relu import ReluSAE
from .topk import BatchTopKSAE, TopKSAE


@dataclass
class TrainResult:
    sae: SparseAutoencoder
    """Trained SAE on the normalised scale (see fold_scale / export)."""
    scale: float | torch.Tensor
    """Inputs were multiplied by this before training: one number (sae.normalize 'norm')
    or one per input dimension ('per_dim')."""
    curve: list[dict]
    """Logged steps: step, tokens, mse (per dimension, normalised scale), aux, l0, dead_frac, lr."""
    dead_frac: float
    """Latents that did not fire over the last dead_window_tokens training tokens."""
    steps: int
    finished: bool
    """False when stopped early by `stop_after` (a checkpoint was written)."""
    tokens_per_s: float
    """Training throughput of this run's steps (data loading included)."""


def held_out_texts(n_texts: int, eval_frac: float, seed: int) -> np.ndarray:
    """Boolean [n_texts]: corpus texts held out from training for the SAE metrics
    (whole texts, not scattered tokens); the same for every seed of `sae.seeds`."""
    rng = np.random.default_rng(seed)
    held = np.zeros(n_texts, dtype=bool)
    held[rng.permutation(n_texts)[: max(1, int(round(n_texts * eval_frac)))]] = True
    return held


@dataclass
class ActivationSplit:
    """One hook's corpus activations split by whole texts (held_out_texts) into
    training tokens and held-out tokens for the SAE metrics."""

    path: Path
    """The hook's safetensors file (training streams its rows from disk)."""
    table: TokenTable
    acts: torch.Tensor
    held: np.ndarray
    """Boolean [n_texts]: held-out texts."""
    is_eval: np.ndarray
    """Boolean [n_kept tokens]: tokens of held-out texts."""

    @cached_property
    def x_eval(self) -> torch.Tensor:
        return self.acts[torch.from_numpy(np.flatnonzero(self.is_eval))]

    @property
    def train_tokens(self) -> int:
        return int((~self.is_eval).sum())

    def held_texts(self, n: int) -> list[str]:
        """The first n held-out texts (the fidelity measures run the model on them)."""
        return [t["text"] for t, h in zip(self.table.texts, self.held) if h][:n]


def split_activation_set(act_dir: str | Path, hook: str, eval_frac: float, seed: int) -> ActivationSplit:
    table, acts = load_activation_set(act_dir, hook)
    held = held_out_texts(len(table.texts), eval_frac, seed)
    return ActivationSplit(Path(act_dir) / f"{hook}.safetensors", table, acts, held, held[table.text_index])


def train_on_split(split: ActivationSplit, cfg: SAEConfig, seed: int, desc: str = "train_sae",
                   checkpoint: Path | None = None) -> TrainResult:
    """An SAE trained on the split's training tokens, shuffled by `seed` (which
    also initialises it); see train_sae."""
    read, _, d_in = safetensors_reader(split.path)
    buffer = ShuffledBuffer(read, np.flatnonzero(~split.is_eval), cfg.batch_tokens, cfg.buffer_tokens, seed)
    return train_sae(buffer, d_in, cfg, seed, desc=desc, checkpoint=checkpoint)


ARCHITECTURE_BUILDERS = {
    "relu": lambda cfg, d_in, d_sae: ReluSAE(d_in, d_sae, cfg.l1_coefficient, cfg.l1_warmup_frac),
    "topk": lambda cfg, d_in, d_sae: TopKSAE(d_in, d_sae, cfg.k, cfg.aux_coefficient),
    "batchtopk": lambda cfg, d_in, d_sae: BatchTopKSAE(d_in, d_sae, cfg.k, cfg.aux_coefficient),
}
"""The registry of SAE architectures, by `sae.architecture`: the one list of their names
(the check stage validates params.yaml against it)."""


def architecture_builder(name: str):
    """The registry's builder of architecture `name`; ValueError naming the known ones."""
    try:
        return ARCHITECTURE_BUILDERS[name]
    except KeyError:
        raise ValueError(f"sae.architecture must be one of {', '.join(ARCHITECTURE_BUILDERS)}, got {name!r}") from None


def build_sae(cfg: SAEConfig, d_in: int) -> SparseAutoencoder:
    """The untrained SAE of cfg.architecture, d_sae = d_in x cfg.expansion."""
    return architecture_builder(cfg.architecture)(cfg, d_in, d_in * cfg.expansion)


def geometric_median(x: torch.Tensor, iters: int = 100, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances."""
    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=1).clamp(min=eps)
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - m).norm() < eps * max(1.0, float(m.norm())):
            return new
        m = new
    return m


def lr_factor(step: int, total: int, warmup_frac: float, decay_frac: float) -> float:
    warm = int(total * warmup_frac)
    if step < warm:
        return (step + 1) / warm
    decay_start = int(total * (1 - decay_frac))
    if decay_frac == 0 or step < decay_start:
        return 1.0
    return max(0.0, (total - step) / max(1, total - decay_start))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("sae.device is 'cuda' but no CUDA device is available: use 'auto' or 'cpu'")
    return torch.device(name)


def make_optimizer(sae: SparseAutoencoder, lr: float, decoder_lr_mult: float = 1.0) -> torch.optim.Adam:
    """Adam; on a GPU its fused kernel (one launch for all parameters). The
    decoder's group carries `lr_mult`, applied on top of the schedule."""
    fused = next(sae.parameters()).is_cuda
    others = [p for n, p in sae.named_parameters() if n != "W_dec"]
    groups = [{"params": others, "lr_mult": 1.0}, {"params": [sae.W_dec], "lr_mult": decoder_lr_mult}]
    return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), fused=fused or None)


def optimisation_step(sae: SparseAutoencoder, opt, x: torch.Tensor, state: TrainState, autocast, forward=None):
    """One step: loss, backward, decoder-gradient projection, Adam, renormalisation.
    Nothing here waits for the GPU (no .item()), so steps queue back to back.
    forward: the module to run (the SAE under DistributedDataParallel), default the SAE."""
    with autocast:
        out = (forward or sae)(x)
        parts = sae.loss(x, out, state)
    opt.zero_grad(set_to_none=True)
    parts.total.backward()
    if sae.unit_norm_decoder:
        sae.remove_gradient_parallel_to_decoder()
    opt.step()
    if sae.unit_norm_decoder:
        sae.set_decoder_norm_to_unit()
    return out, parts


def fired_latents(out, d_sae: int, w: World) -> torch.Tensor:
    """Which latents fired on any token of the global batch (bool [d_sae])."""
    if out.idx is None:
        fired = (out.vals > 0).any(0)
    else:
        fired = torch.zeros(d_sae, dtype=torch.bool, device=out.vals.device)
        fired[out.idx[out.vals > 0]] = True
    return w.any(fired)


def _load_checkpoint(path: Path, device) -> dict | None:
    """The checkpoint's contents, or None (with a warning line) if it is unreadable:
    it is only a cache of progress, so training starts again from step 0."""
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(ck, dict):
            raise TypeError(f"holds a {type(ck).__name__}, not a checkpoint")
        return ck
    except Exception as e:  # truncated, garbage or foreign file: many exception types
        print(f"warning: ignoring unreadable checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
              "training from step 0", file=sys.stderr)
        return None


def _save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def train_sae(
    buffer: ShuffledBuffer,
    d_in: int,
    cfg: SAEConfig,
    seed: int,
    desc: str = "train_sae",
    checkpoint: Path | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train one SAE on the buffer's rows. `stop_after` (tests) stops after that
    many steps with a checkpoint written, as an interruption would."""
    device = resolve_device(cfg.device)
    w = world(device)
    w.check_batch(cfg.batch_tokens)
    # on a GPU the matmuls run in bf16 (weights and optimizer state stay fp32)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    torch.manual_seed(seed)
    sample = buffer.sample(32768)
    if cfg.normalize == "per_dim":
        scale = 1.0 / sample.std(0).clamp(min=1e-6)
        scale_key = hashlib.sha256(scale.numpy().tobytes()).hexdigest()
    else:
        scale = math.sqrt(d_in) / sample.norm(dim=1).mean().item()
        scale_key = round(scale, 9)
    sae = build_sae(cfg, d_in)
    with torch.no_grad():
        if cfg.b_dec_init == "geometric_median":
            sae.b_dec.copy_(geometric_median(sample * scale))
        elif cfg.b_dec_init == "mean":
            sae.b_dec.copy_((sample * scale).mean(0))
    if sae.unit_norm_decoder:
        sae.set_decoder_norm_to_unit()
    sae.to(device).train()
    forward = w.wrap(sae)
    opt = make_optimizer(sae, cfg.lr, cfg.decoder_lr_mult)
    x_scale = scale.to(device) if isinstance(scale, torch.Tensor) else scale
    total = buffer.n_rows * cfg.epochs // cfg.batch_tokens
    since_fired = torch.zeros(sae.d_sae, dtype=torch.long, device=device)
    curve: list[dict] = []
    fingerprint = hashlib.sha256(
        json.dumps([asdict(cfg), seed, buffer.n_rows, d_in, scale_key], sort_keys=True).encode()
    ).hexdigest()
    start = 0
    ck = _load_checkpoint(checkpoint, device) if checkpoint is not None and checkpoint.exists() else None
    if ck is not None:
        if ck.get("fingerprint") == fingerprint:
            sae.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            since_fired, curve, start = ck["since_fired"].to(device), ck["curve"], ck["step"]

    def state() -> dict:
        return {"fingerprint": fingerprint, "step": step, "model": sae.state_dict(), "opt": opt.state_dict(),
                "since_fired": since_fired, "curve": curve}

    log_every = max(1, total // 50)
    step, trained, t0 = 0, 0, time.perf_counter()
    bar = tqdm(total=total, initial=start, desc=desc, unit="step")
    done = False
    for epoch in range(cfg.epochs):
        for x in buffer.batches(epoch):
            if step >= total:
                break
            if step < start:  # resuming: these batches were seen before the interruption
                step += 1
                continue
            if stop_after is not None and trained >= stop_after:
                done = True
                break
            x = w.local(x).to(device, non_blocking=True) * x_scale
            lr = cfg.lr * lr_factor(step, total, cfg.lr_warmup_frac, cfg.lr_decay_frac)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_mult"]
            dead = since_fired >= cfg.dead_window_tokens
            with w.peers_alive():
                out, parts = optimisation_step(sae, opt, x, TrainState(step, total, dead), autocast, forward)
                with torch.no_grad():
                    since_fired += cfg.batch_tokens
                    since_fired[fired_latents(out, sae.d_sae, w)] = 0
            if step % log_every == 0 or step == total - 1:
                rec = {
                    "step": step,
                    "tokens": (step + 1) * cfg.batch_tokens,
                    "mse": round(w.mean(parts.mse).item() / d_in, 6),
                    "aux": round(w.mean(parts.sparsity).item(), 6),
                    "l0": round(float(w.mean(parts.l0)), 3),
                    "dead_frac": round(dead.float().mean().item(), 6),
                    "lr": lr,
                }
                curve.append(rec)
                bar.set_postfix(l0=rec["l0"], mse=rec["mse"])
            step += 1
            trained += 1
            bar.update(1)
            if checkpoint is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and w.main:
                _save_checkpoint(checkpoint, state())
        if done or step >= total:
            break
    bar.close()
    elapsed = time.perf_counter() - t0
    finished = not done
    w.barrier()  # every process is done with the checkpoint it started from
    if checkpoint is not None and w.main:
        if finished:
            checkpoint.unlink(missing_ok=True)
        else:
            _save_checkpoint(checkpoint, state())
    seen = min(cfg.dead_window_tokens, step * cfg.batch_tokens)
    sae.eval()
    return TrainResult(
        sae=sae.cpu(),
        scale=scale,
        curve=curve,
        dead_frac=float((since_fired >= seen).float().mean()),
        steps=step,
        finished=finished,
        tokens_per_s=trained * cfg.batch_tokens / max(elapsed, 1e-9),
    )
