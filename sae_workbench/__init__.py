"""SAE interpretability workbench: extract, encode, analyse, steer, report.

The modules, layer by layer, are listed in README.md ("Library"): base
(config, atomic, offline, determinism, cli), data, models (model_cache,
models, edits), activations (activations, extraction), sae/, kinds/,
features, analysis, steer/, report (report_kit, viz/, render, fonts,
expdiff). A lower layer never imports a higher one.
"""

# Before anything imports torch or numpy: pin what decides floating-point
# results (kernel instruction sets, MKL reproducibility, thread counts), so the
# same commit gives the same bytes on any x86-64 machine. See determinism.py.
from . import determinism as _determinism

_determinism.pin()
