"""Steering, ablation and attribution: does a feature cause what it detects?

    study.py        the steer stage's study of one hook's specialists (SteerStudy)
    sweep.py        what every steering method shares (Steering, best_coefficient, slope)
    generation.py   causal LMs: greedy generation with a feature edited in
    embedding.py    encoders: embedding drift towards a category's centroid
    ablation.py     specialists and frequency-matched controls ablated
    attribution.py  act x grad attribution of one text's output to the features
    judge.py        the independent text classifier that judges continuations
    methods.py      the specialists beside DiffMean and prompting (causal LMs)

The edits themselves (add, clamp, ablate, splice, zero) are `sae_workbench.edits`,
below this package, since SAE fidelity splices through them too. Nothing is
imported here: callers import the submodules (DVC stage deps stay exact).
"""
