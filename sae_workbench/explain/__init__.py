"""Automatic explanations of SAE features, scored offline (the explain stage).

    contexts.py   where a feature fires, as readable contexts; quantile-band sampling
    llm.py        the explainer and judge: the embedded causal LM or an OpenAI-compatible endpoint, cached
    scoring.py    explain; Delphi's detection, fuzzing and embedding scorers
    study.py      which features, the controls (shuffled, top tokens), the typed result
"""
