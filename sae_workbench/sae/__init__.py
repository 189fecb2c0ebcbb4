"""Custom sparse autoencoders: one file per architecture, a shared trainer.

    base.py     shared parameters, encode/decode, decoder-norm constraint
    relu.py     ReLU + decoder-norm-weighted L1 (Anthropic, April 2024)
    topk.py     TopK and BatchTopK with AuxK (Gao et al. 2024; Bussmann et al. 2024)
    buffer.py   streaming shuffled activation buffer, bounded memory
    train.py    training loop: warm-up/decay, dead latents, checkpoints and resume
    metrics.py  L0, explained variance, MSE, dead/dense latents, downstream fidelity
    io.py       SAELens export (SAE.load_from_disk) and loading
"""

from .base import SAEOutput, SparseAutoencoder
from .buffer import ShuffledBuffer, safetensors_reader, tensor_reader
from .io import folded_state, load_sae, save_for_saelens, to_saelens
from .metrics import ce_loss_recovered, embedding_fidelity, reconstruction_metrics
from .relu import ReluSAE
from .topk import BatchTopKSAE, TopKSAE
from .train import TrainResult, build_sae, geometric_median, train_sae

__all__ = [
    "SAEOutput", "SparseAutoencoder", "ShuffledBuffer", "safetensors_reader", "tensor_reader",
    "folded_state", "load_sae", "save_for_saelens", "to_saelens", "ce_loss_recovered",
    "embedding_fidelity", "reconstruction_metrics", "ReluSAE", "BatchTopKSAE", "TopKSAE",
    "TrainResult", "build_sae", "geometric_median", "train_sae",
]
