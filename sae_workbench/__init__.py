"""SAE interpretability workbench: extract, encode, analyse, steer, report.

Modules: config (params.yaml), data (texts), models (loading, tokenising),
activations (per-token activation sets on disk), sae (custom SAE), features
(encoded feature tables), analysis (statistics, co-activation, cards,
cross-layer comparison), concept (concept-search command), steering (steering,
ablation, attribution), viz (figures, token highlights for HTML and Typst),
render (report to HTML and PDF, Quarto or pandoc + typst).
"""

# Before anything imports torch or numpy: pin what decides floating-point
# results (kernel instruction sets, MKL reproducibility, thread counts), so the
# same commit gives the same bytes on any x86-64 machine. See determinism.py.
from . import determinism as _determinism

_determinism.pin()
