"""SAE interpretability workbench: extract, encode, analyse, steer, report.

Modules: config (params.yaml), data (texts), models (loading, tokenising),
activations (per-token activation sets on disk), sae (custom SAE), features
(encoded feature tables), analysis, steering, viz (figures, token highlights),
render (report to HTML).
"""
