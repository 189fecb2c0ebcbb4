"""Greedy decoding steps of a TransformerLens causal LM, byte for byte as its own
key-value-cached forward pass computes them, without its per-step waste.

TransformerLens's `run_with_hooks(step, past_kv_cache=...)` re-applies the rotary
embedding to every cached key at every step (it caches keys before rotating them),
normalises each block's input three times (once each for queries, keys and values),
and walks some 30 hook points and their Python plumbing per block: a 20-token
continuation of 2 rows of Gemma 3 270M on 2 cores took 2.78 s on its cache and 2.40 s
here (bench/results/generation_step.json), and the re-rotation grows with the prompt
(the explain stage's prompts run to 1,024 tokens).

`Decoder` runs the prompt through TransformerLens itself (its key-value cache), rotates
the cached keys once, and then steps one token at a time through the same modules and
the same kernels on the same inputs (ln1 once, the new key rotated at its own position,
the cached keys already rotated): every step's residual has the bytes TransformerLens
gives it (tests/test_decode.py compares them, and greedy tokens, on Gemma 3 with
left padding and steering hooks). Rotation is elementwise, so rotating a key once or at
every step gives the same bytes.

It handles the architectures it mirrors (`supports`: rotary, pre-norm blocks with
optional post-norms, grouped or plain attention, RMS or Layer norm, no attention result
hook) and hooks on a block's residual stream, attention output or MLP output (what
`edits` writes); anything else (GPT-2's learned positions, other hook points, hooks
left registered on the model) is TransformerLens's own loop, in
`steer.generation.greedy_continuation`.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from .models import ModelHandle, linear

STEP_HOOKS = re.compile(r"blocks\.(\d+)\.hook_(resid_pre|attn_out|resid_mid|mlp_out|resid_post)$")
"""Hook points a decoding step applies fwd_hooks at (everything else: TransformerLens's loop)."""


def supports(model, fwd_hooks=()) -> bool:
    """Whether `Decoder` reproduces this model's cached forward pass with these hooks."""
    from transformer_lens import HookedTransformer
    from transformer_lens.components.abstract_attention import AbstractAttention
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    if not isinstance(model, HookedTransformer):
        return False
    c = model.cfg
    plain = (c.positional_embedding_type == "rotary" and c.normalization_type in ("RMS", "LN") and not c.use_attn_result
             and not c.use_split_qkv_input and not c.use_attn_in and not c.use_hook_mlp_in and not c.parallel_attn_mlp
             and not c.attn_only and c.original_architecture not in POST_NORM_ARCHITECTURES and c.clip_qkv is None
             and not c.use_logn_attn and not c.use_attention_sinks and not c.use_dynamic_ntk_rope and not c.load_in_4bit
             and c.attention_dir == "causal" and not c.post_embedding_ln and not c.use_hook_tokens
             and c.original_architecture not in ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM"))
    if not plain:
        return False
    for b in model.blocks:
        a = b.attn
        if not isinstance(a, AbstractAttention) or a._attention_dir_override not in (None, "causal"):
            return False
    if any(h._forward_hooks or h._forward_pre_hooks for h in model.hook_dict.values()):
        return False  # hooks left on the model: TransformerLens applies them where they are
    return all(isinstance(name, str) and STEP_HOOKS.match(name) and int(STEP_HOOKS.match(name).group(1)) < c.n_layers
               for name, _ in fwd_hooks)


class Decoder:
    """One-token steps of `handle`'s model over a key-value cache of rotated keys.

        dec = Decoder(handle, fwd_hooks)
        last = dec.prefill(ids, mask)      # [batch, d_model]: residual after the last block, last position
        last = dec.step(next_ids)          # next_ids [batch, 1]

    fwd_hooks: (name, fn) pairs at STEP_HOOKS points, called fn(x, hook=<the HookPoint>)
    as TransformerLens calls them (a None return keeps x); the prefill runs them through
    `run_with_hooks`. Check `supports(model, fwd_hooks)` first."""

    def __init__(self, handle: ModelHandle, fwd_hooks=()):
        self.handle, self.model = handle, handle.model
        self.fwd_hooks = list(fwd_hooks)
        self.at: dict[tuple[int, str], list] = {}
        for name, fn in self.fwd_hooks:
            m = STEP_HOOKS.match(name)
            self.at.setdefault((int(m.group(1)), m.group(2)), []).append(fn)
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.mask: torch.Tensor | None = None
        self.w_o = [b.attn.W_O.permute(2, 0, 1).reshape(b.attn.W_O.shape[2], -1).contiguous() for b in self.model.blocks]
        """Each block's W_O as TransformerLens rearranges it for its output F.linear
        (d_model, (head d_head)); a view where models.keep_attention_weight_layouts stored it so."""

    def _hook(self, layer: int, point: str, x: torch.Tensor) -> torch.Tensor:
        for fn in self.at.get((layer, point), ()):
            y = fn(x, hook=getattr(self.model.blocks[layer], f"hook_{point}"))
            x = x if y is None else y
        return x

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the prompt ids [batch, pos] (mask: 0 on left padding) through TransformerLens with
        the hooks; keep its keys (rotated once) and values. Returns the last position's residual."""
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        cache = TransformerLensKeyValueCache.init_cache(self.model.cfg, ids.device, ids.shape[0])
        resid = self.model.run_with_hooks(ids, attention_mask=mask, past_kv_cache=cache, fwd_hooks=self.fwd_hooks,
                                          stop_at_layer=self.handle.n_layers)
        self.mask = cache.previous_attention_mask
        self.keys = [b.attn.apply_rotary(e.past_keys, 0, self.mask) for b, e in zip(self.model.blocks, cache.entries)]
        self.values = [e.past_values for e in cache.entries]
        return resid[:, -1]

    @torch.no_grad()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Append one token per row (ids [batch, 1]); the new position's residual after the last block."""
        model = self.model
        offset = self.keys[0].shape[1]
        mask = torch.cat([self.mask, torch.ones_like(ids).to(self.mask.device)], 1)
        x = model.hook_embed(model.embed(ids.to(model.W_E.device)))
        for i, block in enumerate(model.blocks):
            x = self._hook(i, "resid_pre", x)
            a = block.attn
            h = block.ln1(x)
            qk = h + 0.0  # as TransformerBlock adds its (absent) shortformer embedding: -0.0 becomes 0.0
            q, k, v = a.calculate_qkv_matrices(qk, qk, h)
            q = a.apply_rotary(q, offset, mask)
            k = torch.cat([self.keys[i], a.apply_rotary(k, offset, mask)], 1)
            v = torch.cat([self.values[i], v], 1)
            self.keys[i], self.values[i] = k, v
            scores = a.apply_causal_mask(a.calculate_attention_scores(q, k), offset, mask)
            pattern = F.softmax(scores, dim=-1)
            pattern = torch.where(torch.isnan(pattern), torch.zeros_like(pattern), pattern).to(device=v.device, dtype=v.dtype)
            z = a.calculate_z_scores(v, pattern)
            out = linear(z.reshape(z.shape[0], z.shape[1], -1), self.w_o[i], a.b_O)
            if model.cfg.use_normalization_before_and_after:
                out = block.ln1_post(out)
            out = self._hook(i, "attn_out", out)
            mid = self._hook(i, "resid_mid", x + out)
            m = block.mlp(block.ln2(mid))
            if model.cfg.use_normalization_before_and_after:
                m = block.ln2_post(m)
            m = self._hook(i, "mlp_out", m)
            x = self._hook(i, "resid_post", mid + m)
        self.mask = mask
        return x[:, -1]
