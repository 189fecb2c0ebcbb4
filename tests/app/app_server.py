"""Builders for the app's tests (fixtures in conftest.py). The app runs as a user
starts it, `python -m sae_workbench serve` in its own process on a free port of 127.0.0.1, with the real Gemma 3 270M, an SAE in the
train_sae stage's on-disk format (SAELens's, via `sae.io.save_for_saelens`) and an
analysis in the analyze stage's (`HookAnalysis.to_json`), both written here: a fresh
clone has no data/saes until `dvc repro`. The SAE is a randomly initialised TopK SAE
at one hook (these tests check the app, not the SAE), and the analysis names one of its
features the python specialist, so the judge's path is exercised too; a stand-in page
stands for the static feature browser's (report/browser/<hook>/feature.html). One server per
test session (loading Gemma takes 15-35 s); every test using it is slow."""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request

from helpers import ROOT, raw_params, write_params

HOOK = "blocks.5.hook_resid_post"
"""The one hook the test server serves (the forward pass stops after layer 5: quick)."""
D_SAE = 512
SPECIALIST = 3
"""The feature the test analysis names the python specialist."""
SPECIALIST_MAX_ACT = 40.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, path: str, body=None, raw: bytes | None = None, method: str | None = None, timeout: float = 300):
    """(status, parsed JSON body) of one request; body: a JSON-able object, raw: bytes sent as they are."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def write_inputs(tmp) -> dict:
    """params.yaml limited to HOOK, an SAE and an analysis for it; the serve command's arguments."""
    import torch

    from sae_workbench.analysis.results import HookAnalysis, Specialist, SpecialistCount
    from sae_workbench.sae.io import save_for_saelens
    from sae_workbench.sae.topk import TopKSAE

    raw = raw_params()
    raw["hooks"] = [HOOK]
    raw["steer"]["hook"] = raw["control"]["hook"] = raw["explain"]["hook"] = raw["cross_model"]["hook"] = HOOK
    raw["sae"]["seed_hooks"] = [HOOK]
    params = write_params(raw, tmp / "params.yaml")
    torch.manual_seed(0)
    save_for_saelens(TopKSAE(640, D_SAE, k=16), 1.0, tmp / "saes" / HOOK, HOOK, raw["profiles"]["gemma"]["name"])
    spec = Specialist(feature=SPECIALIST, train_score=1.0, train_auroc=0.9, heldout_score=0.8, mean_in_heldout=1.0,
                      heldout_auroc=0.9, significant=True, max_act=SPECIALIST_MAX_ACT)
    analysis = HookAnalysis(rankings={}, specialists={"python": spec}, count=SpecialistCount(1, 1, [1.0, 1.0]), score_matrix={},
                            coactivation=[], cards={}, neuronpedia=None)
    pages = tmp / "browser" / HOOK  # a stand-in for the static feature browser's page of the hook
    pages.mkdir(parents=True)
    (pages / "feature.html").write_text("<!doctype html><title>feature</title><p>feature page</p>")
    (tmp / "analysis").mkdir()
    (tmp / "analysis" / f"{HOOK}.json").write_text(json.dumps({**analysis.to_json(), "hook": HOOK}))
    return {"--params": params, "--saes": tmp / "saes", "--analysis": tmp / "analysis", "--browser": tmp / "browser",
            "--texts": ROOT / "data/texts/labelled.jsonl"}


def serve_command(args: dict, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sae_workbench", "serve", "--port", str(port), *[str(x) for kv in args.items() for x in kv], *extra]
