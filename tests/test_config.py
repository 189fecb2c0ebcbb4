"""params.yaml validation and stage errors: one actionable line, exit status 2."""

import subprocess
import sys

import pytest
import yaml

from sae_workbench.config import load_params

from helpers import ROOT


def _params(tmp_path, **changes):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, v in changes.items():
        node = raw
        *path, last = dotted.split(".")
        for k in path:
            node = node[k]
        node[last] = v
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": "gpt3"}, "not a profile"),
        ({"hooks": ["blocks.18.hook_resid_pre"]}, "beyond gemma's 18 layers"),
        ({"model": "minilm"}, "beyond minilm's 6 layers.*own hooks and steer.hook"),
        ({"profiles.gemma.has_lm_head": True}, "unknown key.*has_lm_head"),
        ({"profiles.gemma.tl_name": None}, "tl_name"),
        ({"profiles.gemma.sae_id": "layer_{depth}"}, "sae_id"),
        ({"profiles.gemma.sae_release": {"resid_mid": "x"}}, "sae_release keys"),
        ({"hooks": ["blocks.1.hook_bogus"]}, "not supported"),
        ({"hooks": []}, "hooks: is empty"),
        ({"sae.expansion": 0}, "sae.expansion"),
        ({"sae.lr": 5}, "sae.lr"),
        ({"data.max_tokens": 4}, "data.max_tokens"),
        ({"steer.category": "poetry"}, "steer.category"),
        ({"steer.hook": "blocks.2.hook_resid_pre"}, "steer.hook"),
        ({"steer.hook": "blocks.5.hook_resid_pre"}, "steer.hook"),
        ({"sae.l2_coefficient": 1.0}, "unknown key"),
        ({"sae.lr": "fast"}, r"^sae.lr must be a number, got 'fast' \(params.yaml\)$"),
        ({"sae.lr": "0.004"}, r"sae.lr must be a number, got '0.004' \(a quoted string: remove the quotes\)"),
        ({"sae.epochs": 1.5}, "sae.epochs must be an integer, got 1.5"),
        ({"sae.k": True}, "sae.k must be an integer, got True"),
        ({"seed": "abc"}, "seed must be an integer, got 'abc'"),
        ({"hokks": ["blocks.5.hook_resid_post"]}, "unknown key 'hokks' in params.yaml; did you mean 'hooks'"),
        ({"steer.coeficients": [1.0]}, "unknown key 'steer.coeficients' in params.yaml; did you mean 'steer.coefficients'"),
        ({"steer.prompts": [3]}, "steer.prompts must be a list of strings, got \\[3\\]"),
        ({"steer.coefficients": "1,2"}, "steer.coefficients must be a list of numbers"),
        ({"steer.ablation_texts": -1}, r"^steer.ablation_texts must be an integer in \[0, 1000\], got -1 \(params.yaml\)$"),
        # NaN, infinity and absurd sizes: every bound is written so that NaN fails it
        ({"sae.aux_coefficient": float("nan")}, r"^sae.aux_coefficient must be a number in \[0, 100\], got nan"),
        ({"steer.max_ppl_ratio": float("nan")}, r"^steer.max_ppl_ratio must be a number in \[1, 1000\], got nan"),
        ({"sae.lr": float("inf")}, r"^sae.lr must be a number in \(0, 1\), got inf"),
        ({"steer.coefficients": [1.0, float("nan")]}, r"^steer.coefficients must be numbers in \[-100, 100\].*got nan"),
        ({"steer.coefficients": [-1e30]}, r"^steer.coefficients must be numbers in \[-100, 100\].*got -1e\+30"),
        ({"steer.max_new_tokens": 100000}, r"^steer.max_new_tokens must be an integer in \[1, 2048\], got 100000 \(params.yaml\)$"),
        ({"steer.prompts": []}, r"^steer.prompts is empty"),
        ({"steer.prompts": [""]}, r"^steer.prompts\[0\] must be a non-blank string"),
        ({"report.n_specialists": -3}, r"^report.n_specialists must be an integer in \[1, 7\], got -3 \(params.yaml\)$"),
        ({"report.n_other_texts": 10**30}, r"^report.n_other_texts must be an integer in \[0, 20\]"),
        ({"seed": -1}, r"^seed must be an integer in \[0, 4294967295\] \(numpy's seed range\), got -1"),
        ({"seed": 2**32}, r"^seed must be an integer in \[0, 4294967295\]"),
        ({"profiles.minilm.n_layers": -6}, r"^profiles.minilm.n_layers must be an integer in \[1, 512\]"),
        ({"profiles.gemma.name": ""}, r"^profiles.gemma.name is empty"),
        ({"profiles": 3}, r"^profiles in params.yaml must be a mapping"),
        ({"sae": 0}, r"^sae in params.yaml must be a mapping"),
        ({"steer.hook": "blocks.x"}, r"^steer.hook: hook 'blocks.x' is not supported"),
        ({"model": "gema"}, "did you mean 'gemma'"),
        ({"sae": "topk"}, "sae in params.yaml must be a mapping"),
        ({"sae": {k: v for k, v in yaml.safe_load((ROOT / "params.yaml").read_text())["sae"].items() if k != "k"}},
         r"^params.yaml has no sae.k; add it \(for example k: 64\)$"),
        ({"control": None}, "params.yaml has no control.hook"),
        ({"sae.seed_hooks": ["blocks.4.hook_resid_post"]}, "sae.seed_hooks lists 'blocks.4.hook_resid_post', which is not in hooks"),
        ({"control.hook": "blocks.4.hook_resid_post"}, "control.hook 'blocks.4.hook_resid_post' is not in hooks"),
        ({"cross_model.hook": "blocks.4.hook_resid_post"}, r"^cross_model.hook 'blocks.4.hook_resid_post' is not in hooks"),
        ({"cross_model.profiles": ["minlm"]}, r"^cross_model.profiles: 'minlm' is not a profile in params.yaml \(did you mean 'minilm'\?\)"),
        ({"cross_model.profiles": ["gemma"]}, r"^cross_model.profiles lists 'gemma', the chosen model itself"),
        ({"cross_model.profiles": ["minilm", "minilm"]}, r"^cross_model.profiles lists a profile twice"),
        ({"cross_model.profiles": "minilm"}, r"^cross_model.profiles must be a list of strings"),
        ({"cross_model.corpus_texts": -5}, r"^cross_model.corpus_texts must be an integer in \[0, 100000\], got -5 \(params.yaml\)$"),
        ({"cross_model.hook": "blocks.x"}, r"^cross_model.hook: hook 'blocks.x' is not supported"),
        ({"cross_model": None}, r"^params.yaml has no cross_model.profiles"),
        ({"cross_modl": {}}, "did you mean 'cross_model'"),
    ],
)
def test_bad_params_are_rejected(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        load_params(_params(tmp_path, **change))


def test_params_file_itself(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_bytes(b"\xef\xbb\xbf" + (ROOT / "params.yaml").read_bytes())  # a UTF-8 BOM is fine
    assert load_params(p).model_key == "gemma"
    p.write_bytes((ROOT / "params.yaml").read_bytes().replace(b"seed: 0", b"seed: \xff"))
    with pytest.raises(ValueError, match="is not valid UTF-8 YAML"):
        load_params(p)
    p.write_text("seed: [0\n")
    with pytest.raises(ValueError, match="is not valid UTF-8 YAML"):
        load_params(p)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("  k: 64", "  k: 64\n  k: 32"),
     r"params.yaml has a duplicate key 'k' at line \d+, column 3 \(first at line \d+\); keep one \(DVC rejects the file too\)$"),
    (lambda t: t.replace("seed: 0", "seed: 0\nseed: 1"), r"duplicate key 'seed' at line 3, column 1 \(first at line 2\)"),
    (lambda t: t.replace("  k: 64", "  k: [64"), r"params.yaml is not valid UTF-8 YAML at line \d+, column \d+: while parsing a flow sequence"),
    (lambda t: t.replace("  k: 64", "   k: 64"), r"params.yaml is not valid UTF-8 YAML at line \d+, column 4: while parsing a block mapping; expected <block end>"),
    (lambda t: t.replace("  k: 64", "\tk: 64"), r"is not valid UTF-8 YAML at line \d+, column \d+: .*'\\t'"),
    (lambda t: "", r"params.yaml is empty: params.yaml must hold the pipeline's keys"),
    (lambda t: "# nothing but a comment\n", r"params.yaml is empty"),
    (lambda t: "- a list\n", r"params.yaml must be a mapping of keys to values, got list"),
    (lambda t: t.replace("lr: 0.004", "lr: 1e30"),
     r"^sae.lr must be a number, got '1e30' \(PyYAML reads an unquoted 1e30 as a string, not a number: write 1.0e\+30\)"),
    (lambda t: t.replace("lr: 0.004", "lr: 4e-3"), r"unquoted 4e-3 as a string, not a number: write 4.0e-3"),
    (lambda t: t.replace("lr: 0.004", "lr: nan"), r"^sae.lr must be a number, got 'nan' \(a string to YAML; it writes NaN and infinity .nan and .inf\)"),
    (lambda t: t.replace("lr: 0.004", "lr: .nan"), r"^sae.lr must be a number in \(0, 1\), got nan"),
    (lambda t: t.replace("seed: 0", "seed: 1e30"), r"^seed must be an integer, got '1e30' \(PyYAML reads an unquoted 1e30 as a string"),
])
def test_yaml_errors_name_file_line_column_and_cause(tmp_path, edit, message):
    p = tmp_path / "params.yaml"
    p.write_text(edit((ROOT / "params.yaml").read_text()))
    with pytest.raises(ValueError, match=message):
        load_params(p)


def test_check_stage_stops_before_anything(tmp_path):
    """The pipeline's first stage: one line for a bad value; the passed marker is the same bytes for any good params."""
    out = tmp_path / "checked.txt"
    run = lambda p: subprocess.run([sys.executable, str(ROOT / "stages/check.py"), "--params", str(p), "--out", str(out)],
                                   capture_output=True, text=True, cwd=ROOT)
    r = run(_params(tmp_path, **{"sae.epochs": 1.5}))
    assert r.returncode == 2 and r.stderr == "error: sae.epochs must be an integer, got 1.5 (params.yaml)\n" and not out.exists()
    assert run(_params(tmp_path, **{"sae.epochs": 2})).returncode == 0
    first = out.read_bytes()
    assert run(_params(tmp_path, **{"sae.epochs": 5, "steer.category": "math"})).returncode == 0 and out.read_bytes() == first


@pytest.mark.parametrize("change, message", [
    ({"profiles.gemma.kind": "seq2seq"}, "error: profiles.gemma.kind must be one of causal_lm, encoder, got 'seq2seq' (params.yaml)\n"),
    ({"sae.architecture": "gated"}, "error: sae.architecture must be one of relu, topk, batchtopk, got 'gated'\n"),
])
def test_check_stage_rejects_names_its_registries_lack(tmp_path, change, message):
    """Model kinds and SAE architectures are named once, in their registries (kinds.KINDS,
    sae.train.ARCHITECTURE_BUILDERS); the check stage validates params.yaml against them."""
    out = tmp_path / "checked.txt"
    r = subprocess.run([sys.executable, str(ROOT / "stages/check.py"), "--params", str(_params(tmp_path, **change)), "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert (r.returncode, r.stderr) == (2, message) and not out.exists()


def test_default_params_load():
    p = load_params(ROOT / "params.yaml")
    assert p.model_key == "gemma" and p.model.loader == "gguf" and p.model.kind == "causal_lm" and p.steer.hook in p.hooks
    assert {"blocks.5.hook_resid_post", "blocks.9.hook_resid_post", "blocks.12.hook_resid_post"} <= set(p.hooks)
    assert p.model.sae_source == "custom"  # the hub is unreachable offline


def test_other_profiles_load(minilm_params, tmp_path):
    from helpers import raw_params, write_params

    assert minilm_params.model.kind == "encoder" and minilm_params.model.loader == "bridge"
    raw = raw_params()
    raw["model"], raw["hooks"], raw["steer"]["hook"] = "gpt2", ["blocks.8.hook_resid_pre"], "blocks.8.hook_resid_pre"
    raw["sae"]["seed_hooks"], raw["control"]["hook"], raw["explain"]["hook"], raw["cross_model"]["hook"] = [], "", "", ""
    gpt2 = load_params(write_params(raw, tmp_path / "params.yaml"))
    assert gpt2.model.kind == "causal_lm" and gpt2.model.pretrained_sae("blocks.8.hook_resid_pre") == ("gpt2-small-res-jb", "blocks.8.hook_resid_pre")


def test_pretrained_sae_ids_of_the_gemma_profile(params):
    """Gemma Scope 2's ids for the default hooks exist in SAELens's registry, reading those very hooks."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    for hook in params.hooks:
        if hook.endswith("attn_out"):  # Gemma Scope 2's attention SAEs read attn.hook_z (n_heads * d_head), not hook_attn_out
            with pytest.raises(ValueError, match="no pre-trained SAE release for attn_out"):
                params.model.pretrained_sae(hook)
            continue
        release, sae_id = params.model.pretrained_sae(hook)
        assert sae_id in directory[release].saes_map, (hook, release, sae_id)
        folder = directory[release].saes_map[sae_id]
        assert folder.startswith(("resid_post/", "mlp_out/")) and folder.split("/")[0] in hook
    assert directory["gemma-scope-2-270m-pt-res"].neuronpedia_id["layer_9_width_16k_l0_medium"].startswith(params.model.neuronpedia)


def test_stage_exits_2_with_one_line(tmp_path):
    p = _params(tmp_path, **{"sae.expansion": -1})
    r = subprocess.run([sys.executable, str(ROOT / "stages/prepare.py"), "--params", str(p), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: sae.expansion")
    assert not (tmp_path / "out").exists()


def test_bad_labelled_texts(tmp_path):
    bad = tmp_path / "labelled.jsonl"
    bad.write_text('{"id": "a", "category": "python", "split": "train", "text": ""}\n')
    r = subprocess.run([sys.executable, str(ROOT / "stages/prepare.py"), "--params", str(ROOT / "params.yaml"),
                        "--labelled", str(bad), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2 and "is empty" in r.stderr and not (tmp_path / "out").exists()
