"""SAE interpretability workbench: extract, encode, analyse, steer, report.

Modules: config (params.yaml), data (texts), models (loading, tokenising, the
early-stopping forward pass), model_cache (GGUF -> cached fp32 Hugging Face
directory), kinds (what a causal LM or an encoder measures), activations
(per-token activation sets on disk), sae (custom SAE), features (encoded feature
tables), analysis (statistics, co-activation, cards, cross-layer comparison),
concept (concept-search command), interventions (edits of a hook: steer,
ablate, splice, zero), causal_lm (next-token log-probs, generation steering),
encoder (pooled embeddings, embedding steering), steering (ablation,
attribution), viz (figures, token highlights for HTML and Typst), render
(report to HTML and PDF, Quarto or pandoc + typst).
"""

# Before anything imports torch or numpy: pin what decides floating-point
# results (kernel instruction sets, MKL reproducibility, thread counts), so the
# same commit gives the same bytes on any x86-64 machine. See determinism.py.
from . import determinism as _determinism

_determinism.pin()
