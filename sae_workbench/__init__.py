"""SAE interpretability workbench: extract, encode, analyse, steer, report.

Modules: config (params.yaml), data (texts), models (loading, tokenising),
activations (per-token activation sets on disk), sae (custom SAE), features
(encoded feature tables), analysis (statistics, co-activation, cards,
cross-layer comparison), concept (concept-search command), steering (steering,
ablation, attribution), viz (figures, token highlights for HTML and Typst),
render (report to HTML and PDF, Quarto or pandoc + typst).
"""
