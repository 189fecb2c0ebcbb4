"""Our TopK trainer against SAELens's SAETrainer, side by side in one run.

$ python bench/trainer_vs_saelens.py [--hook blocks.3.hook_resid_pre] [--epochs 2] [--device cpu]

Same activations (the corpus activations of one hook, held-out texts left out
for the evaluation), same architecture (TopK + AuxK, same k, width, AuxK
weight), same learning rate and schedule, same batch size, same token count,
same device. SAELens gets the activations already normalised, in memory, from
a plain shuffled iterator (no disk, no buffer: the cheapest feed it can have);
ours streams them from the safetensors file through its shuffled buffer.
Prints tokens/s of each and their ratio, and explained variance and L0 of each
on the same held-out tokens (metric definitions: sae_workbench/sae/metrics.py).
Beside them, the same run's plain fp32 matmul rate at the step's encoder shape
([batch, d_in] x [d_in, d_sae], best of 20) and our step's dense-equivalent rate,
tokens/s x 6 x d_in x d_sae FLOP (encoder forward, its two backward products;
the sparse decoder and top-k not counted): the step's fraction of what the
matmul alone reaches. Writes --out as JSON (default: print only).
Needs `dvc repro -s extract@corpus` first.
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

from sae_workbench.sae.train import held_out_texts as split_texts  # noqa: E402

from sae_workbench.activations import load_token_table  # noqa: E402
from sae_workbench.config import load_params  # noqa: E402
from sae_workbench.sae.buffer import ShuffledBuffer, safetensors_reader# noqa: E402
from sae_workbench.sae.io import to_saelens# noqa: E402
from sae_workbench.sae.metrics import reconstruction_metrics# noqa: E402
from sae_workbench.sae.train import train_sae# noqa: E402


def saelens_run(x_train: torch.Tensor, cfg, d_in: int, device: str, seed: int):
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(seed)
    total = x_train.shape[0] * cfg.epochs // cfg.batch_tokens
    sae = TopKTrainingSAE(
        TopKTrainingSAEConfig(d_in=d_in, d_sae=d_in * cfg.expansion, k=cfg.k, aux_loss_coefficient=cfg.aux_coefficient,
                              device=device, metadata=SAEMetadata(hook_name="bench"))
    )
    tcfg = SAETrainerConfig(
        total_training_samples=total * cfg.batch_tokens, train_batch_size_samples=cfg.batch_tokens, lr=cfg.lr,
        lr_end=0.0, lr_scheduler_name="constant", lr_warm_up_steps=int(total * cfg.lr_warmup_frac),
        lr_decay_steps=int(total * cfg.lr_decay_frac), device=device, dead_feature_window=cfg.dead_window_tokens // cfg.batch_tokens,
        logger=LoggingConfig(log_to_wandb=False),
    )

    def batches():
        g = torch.Generator().manual_seed(seed)
        while True:
            perm = torch.randperm(x_train.shape[0], generator=g)
            for b in range(0, len(perm) - cfg.batch_tokens + 1, cfg.batch_tokens):
                yield x_train[perm[b : b + cfg.batch_tokens]].to(device)

    trainer = SAETrainer(tcfg, sae, batches())
    t0 = time.perf_counter()
    trainer.fit()
    if device == "cuda":
        torch.cuda.synchronize()
    return sae.cpu().eval(), total * cfg.batch_tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hook", default="blocks.3.hook_resid_pre")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--acts", default=str(ROOT / "data/activations/corpus"))
    ap.add_argument("--out", help="write the figures as JSON here (e.g. bench/results/trainer_vs_saelens.json)")
    a = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    cfg = dataclasses.replace(p.sae, architecture="topk", epochs=a.epochs, device=a.device, checkpoint_every=0)
    table = load_token_table(a.acts)
    held = split_texts(len(table.texts), cfg.eval_frac, p.seed)[table.text_index]
    read, n, d_in = safetensors_reader(Path(a.acts) / f"{a.hook}.safetensors")
    acts = read(0, n)
    x_eval = acts[torch.from_numpy(np.flatnonzero(held))]

    buffer = ShuffledBuffer(read, np.flatnonzero(~held), cfg.batch_tokens, cfg.buffer_tokens, p.seed)
    ours = train_sae(buffer, d_in, cfg, p.seed, desc="ours")
    m_ours = reconstruction_metrics(to_saelens(ours.sae, ours.scale, a.hook, "bench"), x_eval)

    x_train = acts[torch.from_numpy(np.flatnonzero(~held))] * ours.scale  # same normalisation as ours
    theirs, tps = saelens_run(x_train, cfg, d_in, a.device, p.seed)
    with torch.no_grad():
        class Raw:  # SAELens's SAE trained on scaled inputs, evaluated on raw ones
            W_dec = theirs.W_dec
            encode = staticmethod(lambda x: theirs.encode(x * ours.scale))
            decode = staticmethod(lambda f: theirs.decode(f) / ours.scale)
        m_theirs = reconstruction_metrics(Raw, x_eval)

    print(f"hook {a.hook}, TopK k={cfg.k}, d_sae={d_in * cfg.expansion}, batch {cfg.batch_tokens}, "
          f"{ours.steps} steps x {cfg.batch_tokens} tokens each, device {a.device}, torch threads {torch.get_num_threads()}")
    print(f"{'':10s} {'tokens/s':>10s} {'EV':>8s} {'L0':>6s}")
    print(f"{'ours':10s} {ours.tokens_per_s:10.0f} {m_ours['explained_variance']:8.4f} {m_ours['l0']:6.1f}")
    print(f"{'SAELens':10s} {tps:10.0f} {m_theirs['explained_variance']:8.4f} {m_theirs['l0']:6.1f}")
    print(f"throughput ratio (ours / SAELens): {ours.tokens_per_s / tps:.2f}x")
    d_sae = d_in * cfg.expansion
    x, w = torch.randn(cfg.batch_tokens, d_in), torch.randn(d_in, d_sae)
    best = float("inf")
    for _ in range(20):
        t = time.perf_counter()
        x @ w
        best = min(best, time.perf_counter() - t)
    mm = 2 * cfg.batch_tokens * d_in * d_sae / best
    step = ours.tokens_per_s * 6 * d_in * d_sae
    print(f"plain fp32 matmul [{cfg.batch_tokens}, {d_in}] x [{d_in}, {d_sae}]: {mm / 1e9:.1f} GFLOP/s; "
          f"our step, dense-equivalent: {step / 1e9:.1f} GFLOP/s = {step / mm:.2f} of it")
    if a.out:
        import json
        import platform
        from datetime import datetime, timezone

        Path(a.out).write_text(json.dumps({
            "what": __doc__.splitlines()[0], "hook": a.hook, "architecture": "topk", "k": cfg.k, "d_in": d_in, "d_sae": d_sae,
            "batch_tokens": cfg.batch_tokens, "steps": ours.steps, "normalize": cfg.normalize, "device": a.device,
            "threads": torch.get_num_threads(),
            "ours": {"tokens_per_s": round(ours.tokens_per_s, 1), "explained_variance": m_ours["explained_variance"], "l0": m_ours["l0"]},
            "saelens": {"tokens_per_s": round(tps, 1), "explained_variance": m_theirs["explained_variance"], "l0": m_theirs["l0"]},
            "ratio": round(ours.tokens_per_s / tps, 3),
            "matmul_gflop_s": round(mm / 1e9, 2), "step_dense_equivalent_gflop_s": round(step / 1e9, 2),
            "step_fraction_of_matmul": round(step / mm, 3),
            "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": __import__("os").cpu_count()},
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=1) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
