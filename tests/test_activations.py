"""Extraction on the real MiniLM: padding invariance, masking, offsets, on-disk format."""

import json

import pytest
import torch

from sae_workbench.activations import load_acts, load_token_table
from sae_workbench.extraction import extract_activations, token_activations
from sae_workbench.data import Text

from helpers import fired_hooks

TEXTS = [
    "def add(a, b):\n    return a + b",
    "Short one.",
    "Der schnelle braune Fuchs springt über den faulen Hund, und dann noch ein bisschen weiter.",
    "lol that was sooo good 😂 #friday",
]
HOOKS = ["blocks.1.hook_resid_pre", "blocks.3.hook_mlp_out", "blocks.4.hook_attn_out"]


def test_padded_batch_matches_each_text_alone(minilm):
    toks = [minilm.tokenize(t, 128) for t in TEXTS]
    lengths = {len(t.ids) for t in toks}
    assert len(lengths) > 1, "texts must differ in length for padding to matter"
    batched = token_activations(minilm, toks, HOOKS, batch_size=len(toks))
    for i, tk in enumerate(toks):
        alone = token_activations(minilm, [tk], HOOKS, batch_size=1)
        for h in HOOKS:
            assert batched[h][i].shape == alone[h][0].shape
            torch.testing.assert_close(batched[h][i], alone[h][0], atol=1e-4, rtol=1e-4)


def test_special_tokens_masked_and_offsets_point_into_text(minilm):
    tk = minilm.tokenize(TEXTS[2], 128)
    assert tk.special[0] and tk.special[-1]  # [CLS] ... [SEP]
    assert not any(tk.special[1:-1])
    for (a, b), s, tok in zip(tk.offsets, tk.special, tk.tokens):
        if not s:
            assert TEXTS[2][a:b] == tok and b > a
    acts = token_activations(minilm, [tk], HOOKS[:1], 1)[HOOKS[0]][0]
    assert acts.shape == (len(tk.ids) - 2, minilm.d_model)


def test_truncation_and_empty_text(minilm):
    tk = minilm.tokenize("word " * 500, 32)
    assert len(tk.ids) == 32 and tk.special[-1]
    with pytest.raises(ValueError, match="empty"):
        minilm.tokenize("   ", 32)


def test_on_disk_format_round_trip(minilm, tmp_path):
    texts = [Text(id=f"t{i}", category="python", split="train", text=t) for i, t in enumerate(TEXTS)]
    table = extract_activations(minilm, texts, HOOKS[:2], tmp_path, max_tokens=64, batch_size=2)
    again = load_token_table(tmp_path)
    assert again.n_kept == table.n_kept
    raw = json.loads((tmp_path / "tokens.json").read_text())
    assert [t["id"] for t in raw["texts"]] == ["t0", "t1", "t2", "t3"]
    acts = load_acts(tmp_path, HOOKS[1], again)
    assert acts.shape == (table.n_kept, minilm.d_model)
    # row r is token position[r] of text text_index[r], never a special token
    for r in range(table.n_kept):
        rec = again.texts[again.text_index[r]]
        assert rec["special"][again.position[r]] == 0


def test_corrupt_and_missing_caches_give_one_line_errors(minilm, tmp_path):
    texts = [Text(id="a", category="python", split="train", text="x = 1")]
    extract_activations(minilm, texts, HOOKS[:1], tmp_path, max_tokens=16, batch_size=1)
    (tmp_path / f"{HOOKS[0]}.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt"):
        load_acts(tmp_path, HOOKS[0])
    with pytest.raises(ValueError, match="no activations for hook"):
        load_acts(tmp_path, "blocks.2.hook_resid_pre")
    (tmp_path / "tokens.json").write_text("{trunc")
    with pytest.raises(ValueError, match="corrupt"):
        load_token_table(tmp_path)


def test_unknown_hook_rejected(minilm):
    with pytest.raises(ValueError, match="not supported"):
        minilm.check_hooks(["blocks.1.hook_nonsense"])
    with pytest.raises(ValueError, match="does not exist"):
        minilm.check_hooks(["blocks.9.hook_resid_pre"])


@pytest.mark.parametrize("fixture", ["minilm", "tiny_gpt2"])
def test_forward_pass_stops_after_the_deepest_hook(fixture, request):
    handle = request.getfixturevalue(fixture)
    ids = torch.tensor([[1, 5, 6, 7, 2]])
    out, fired = fired_hooks(handle, ["blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out"], ids)
    assert set(out) == {"blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out"}
    assert "blocks.1.hook_mlp_out" in fired and "blocks.1.hook_resid_post" not in fired  # stopped right after it
    assert not any(n.startswith(("blocks.2.", "ln_final")) for n in fired)  # blocks 2.. and the head never ran
    # resid_pre of layer 1: block 1 never starts
    _, fired = fired_hooks(handle, ["blocks.1.hook_resid_pre"], ids)
    pre = handle.model.hook_dict["blocks.1.hook_resid_pre"]  # a bridge also names it blocks.1.hook_in
    assert "blocks.1.hook_resid_pre" in fired and all(handle.model.hook_dict[n] is pre for n in fired if n.startswith("blocks.1."))
    # the activations are those of a full forward pass
    with torch.no_grad():
        _, cache = handle.model.run_with_cache(ids, attention_mask=torch.ones_like(ids), names_filter=["blocks.1.hook_mlp_out"])
    torch.testing.assert_close(out["blocks.1.hook_mlp_out"], cache["blocks.1.hook_mlp_out"].float(), atol=1e-5, rtol=1e-5)
