"""Custom sparse autoencoders: one file per architecture, a shared trainer.

    base.py     shared parameters, encode/decode, decoder-norm constraint
    relu.py     ReLU + decoder-norm-weighted L1 (Anthropic, April 2024)
    topk.py     TopK and BatchTopK with AuxK (Gao et al. 2024; Bussmann et al. 2024)
    buffer.py   streaming shuffled activation buffer, bounded memory
    train.py    training loop: warm-up/decay, dead latents, checkpoints and resume
    metrics.py  L0, explained variance, MSE, dead/dense latents, downstream fidelity
    io.py       SAELens export (SAE.load_from_disk) and loading
"""

# Nothing is imported here: import from the submodule (`from sae_workbench.sae.io import load_sae`),
# so a stage depends only on the files it uses (sae_workbench.deps checks dvc.yaml against that).
