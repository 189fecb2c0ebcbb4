"""Custom ReLU sparse autoencoder: training, standard metrics, SAELens interop.

    f     = ReLU((x - b_dec) @ W_enc + b_enc)          # feature activations
    x_hat = f @ W_dec + b_dec
    loss  = ||x - x_hat||^2 + l1 * sum_i f_i * ||W_dec[i]||   (Anthropic, April 2024)

Training runs on activations scaled so that E||x||^2 = d_in (one scalar per
hook, fitted on the training tokens); the scale is folded into the weights on
save, so the saved SAE takes raw activations and SAELens's StandardSAE
(`SAE.load_from_disk`) encodes exactly like this module.

Metrics (all on held-out corpus tokens, special tokens excluded, raw scale):
    L0                  mean number of non-zero features per token
    explained_variance  1 - FVU, FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2,
                        mean(x) over the evaluated tokens (not per-batch, not per-dim
                        averaged ratios: libraries differ, this is ours)
    mse                 mean over tokens and dimensions of (x - x_hat)^2
    dead_frac           latents that did not fire on the last `dead_window_tokens`
                        training tokens
    dense_frac          latents firing on > 10% of held-out tokens
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from tqdm import tqdm

from .config import SAEConfig


class SAEOutput(NamedTuple):
    x_hat: torch.Tensor
    """Reconstruction [batch, d_in]."""
    feats: torch.Tensor
    """Feature activations [batch, d_sae], non-negative."""


class ReluSAE(nn.Module):
    def __init__(self, d_in: int, d_sae: int):
        super().__init__()
        self.d_in, self.d_sae = d_in, d_sae
        w = torch.randn(d_sae, d_in)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc = nn.Parameter(w.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> SAEOutput:
        f = self.encode(x)
        return SAEOutput(self.decode(f), f)


@dataclass
class TrainResult:
    sae: ReluSAE
    """Trained SAE on the normalised scale."""
    scale: float
    """Inputs were multiplied by this before training."""
    curve: list[dict]
    """Per-log-step training records: step, tokens, mse, l1, l0, lr."""
    dead_frac: float
    """Fraction of latents that did not fire in the last dead_window_tokens."""


def _lr_factor(step: int, total: int, decay_frac: float) -> float:
    decay_start = int(total * (1 - decay_frac))
    if step < decay_start or decay_frac == 0:
        return 1.0
    return max(0.0, (total - step) / max(1, total - decay_start))


def train_relu_sae(acts: torch.Tensor, cfg: SAEConfig, seed: int, desc: str = "train_sae") -> TrainResult:
    """Train on `acts` [n_tokens, d_in] (already masked, training split only)."""
    if acts.ndim != 2 or acts.shape[0] < cfg.batch_tokens:
        raise ValueError(
            f"SAE training needs at least sae.batch_tokens={cfg.batch_tokens} tokens, got {acts.shape[0]}: "
            "enlarge the corpus (data.corpus_*) or lower sae.batch_tokens"
        )
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n, d_in = acts.shape
    scale = math.sqrt(d_in) / acts.norm(dim=1).mean().item()
    x_all = acts * scale
    sae = ReluSAE(d_in, d_in * cfg.expansion)
    with torch.no_grad():
        sae.b_dec.copy_(x_all.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    steps_per_epoch = n // cfg.batch_tokens
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(total * cfg.l1_warmup_frac))
    since_fired = torch.zeros(sae.d_sae, dtype=torch.long)
    curve: list[dict] = []
    log_every = max(1, total // 50)
    step = 0
    bar = tqdm(total=total, desc=desc, unit="step")
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        for b in range(steps_per_epoch):
            x = x_all[perm[b * cfg.batch_tokens : (b + 1) * cfg.batch_tokens]]
            lr = cfg.lr * _lr_factor(step, total, cfg.lr_decay_frac)
            for g in opt.param_groups:
                g["lr"] = lr
            l1_w = cfg.l1_coefficient * min(1.0, (step + 1) / warm)
            x_hat, f = sae(x)
            mse = (x - x_hat).pow(2).sum(-1).mean()
            l1 = (f * sae.W_dec.norm(dim=1)).sum(-1).mean()
            loss = mse + l1_w * l1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                fired = (f > 0).any(0)
                since_fired += x.shape[0]
                since_fired[fired] = 0
            if step % log_every == 0 or step == total - 1:
                rec = {
                    "step": step,
                    "tokens": (step + 1) * cfg.batch_tokens,
                    "mse": round(mse.item() / d_in, 6),
                    "l1": round(l1.item(), 4),
                    "l0": round((f > 0).float().sum(-1).mean().item(), 3),
                    "lr": lr,
                }
                curve.append(rec)
                bar.set_postfix(l0=rec["l0"], mse=rec["mse"])
            bar.update(1)
            step += 1
    bar.close()
    dead = (since_fired >= min(cfg.dead_window_tokens, step * cfg.batch_tokens)).float().mean().item()
    return TrainResult(sae=sae, scale=scale, curve=curve, dead_frac=dead)


def fold_scale(result: TrainResult) -> dict[str, torch.Tensor]:
    """Weights that take raw activations: f(x) equals the trained SAE's f(scale * x),
    and x_hat comes back in the raw scale."""
    s, sae = result.scale, result.sae
    return {
        "W_enc": (sae.W_enc.detach() * s).contiguous(),
        "b_enc": sae.b_enc.detach().clone(),
        "W_dec": (sae.W_dec.detach() / s).contiguous(),
        "b_dec": (sae.b_dec.detach() / s).contiguous(),
    }


def save_for_saelens(weights: dict[str, torch.Tensor], path: str | Path, hook: str, model_name: str) -> None:
    """Write cfg.json + sae_weights.safetensors through SAELens's own writer, atomically."""
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    d_sae, d_in = weights["W_dec"].shape
    cfg = StandardSAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        apply_b_dec_to_input=True,
        metadata=SAEMetadata(hook_name=hook, model_name=model_name, prepend_bos=False),
    )
    sae = StandardSAE(cfg)
    sae.load_state_dict(weights)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        sae.save_model(tmp)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@torch.no_grad()
def reconstruction_metrics(sae, acts: torch.Tensor, batch: int = 8192) -> dict[str, float]:
    """L0, explained variance (1 - FVU), MSE and dense fraction of any SAE with
    encode/decode (ours or SAELens's) on raw activations [n, d_in]."""
    n, d = acts.shape
    if n == 0:
        raise ValueError("no tokens to evaluate the SAE on")
    mean = acts.mean(0)
    sse = tot = l0 = 0.0
    fire_counts = None
    for b in range(0, n, batch):
        x = acts[b : b + batch]
        f = sae.encode(x)
        x_hat = sae.decode(f)
        sse += (x - x_hat).pow(2).sum().item()
        tot += (x - mean).pow(2).sum().item()
        active = f > 0
        l0 += active.sum().item()
        c = active.sum(0)
        fire_counts = c if fire_counts is None else fire_counts + c
    return {
        "l0": l0 / n,
        "explained_variance": 1.0 - sse / tot,
        "mse": sse / (n * d),
        "dense_frac": (fire_counts.float() / n > 0.10).float().mean().item(),
        "n_tokens": n,
    }


def load_sae(profile, hook: str, sae_dir: str | Path, device: str = "cpu"):
    """The SAELens SAE for a hook: ours from disk, or the profile's pre-trained release.

    Returns (sae, neuronpedia_id or None)."""
    from sae_lens import SAE

    if profile.sae_source == "custom":
        path = Path(sae_dir) / hook
        if not (path / "cfg.json").exists():
            raise ValueError(f"no trained SAE at {path}: run the train_sae stage (dvc repro)")
        return SAE.load_from_disk(path, device=device), None
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    from .models import ModelUnavailable, hub_error_line, use_hub_or_cache

    lookup = get_pretrained_saes_directory()[profile.sae_release]
    if hook not in lookup.saes_map:
        raise ValueError(f"release {profile.sae_release!r} has no SAE for {hook!r}; it has {', '.join(lookup.saes_map)}")
    use_hub_or_cache()
    try:
        sae = SAE.from_pretrained(profile.sae_release, hook, device=device)
    except Exception as e:  # offline: hub errors come in many types
        raise ModelUnavailable(hub_error_line(f"SAE release {profile.sae_release!r}", e)) from None
    return sae, lookup.neuronpedia_id.get(hook)
