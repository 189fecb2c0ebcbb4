"""What the app computes with, loaded once at start-up: the profile's model, each
hook's SAE and analysis, and the steer stage's concept judge (`Workbench.load`);
and the two things it computes, a prompt's per-token features (`prompt_view`) and
a steering run beside the unsteered continuation (`steer`).

    wb = Workbench.load(params, "data/saes", "data/analysis", "data/texts/labelled.jsonl")
    wb.prompt_view("blocks.9.hook_resid_post", "def area(r):")
    wb.steer("blocks.9.hook_resid_post", 1808, 2.0, "add", "The weather today is", 20)

Steering is the steer stage's (`steer.generation.steer_generation`): the coefficient
is a multiple of the feature's max activation on the labelled texts (the analysis's
max_act; a feature the analysis does not list gets the median of those it lists),
the continuations are greedy, and each is measured as the stage measures it:
concept score (the feature read back by the unsteered model), the judge's P(category)
(`GenerationSteering.judge`, for a specialist's category only), perplexity under the
unsteered model, fluency and the combined score against the unsteered continuation.
The unsteered side of a (hook, feature, prompt, length) is computed once and reused
(`Workbench.unsteered`, the 64 most recent): a playground session steers one prompt
at coefficient after coefficient. A first request runs both sides in one batch; a
repeat runs the steered side alone, whose measures can differ from the batched run's
in the last float bits (the batch of 1 takes other matrix kernels), and says so
(`unsteered_reused`). bench/app_latency.py times both.

Requests run in threads. TransformerLens registers hooks on the shared modules for
the length of a `run_with_hooks` call, so two calls at once would see each other's
hooks: every call takes the model in turn (`Turns`, first come first served). A
long steering run is some 20-60 calls, so a prompt view waits at most one of them,
not the whole run; a cancelled request (its client gone) stops at its next call.
"""

from __future__ import annotations

import statistics
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..analysis.results import HookAnalysis
from ..cli import finite_or_none, json_safe, read_json
from ..config import COEFFICIENTS, STEER_MODES, Params, in_interval
from ..data import read_texts
from ..kinds import model_kind
from ..models import ModelHandle, load_model
from ..sae.io import load_sae
from ..steer.generation import GenerationSteering, steer_generation
from ..steer.judge import combined, fluency
from ..viz.highlight import token_spans

COEFFICIENT_LIMIT = 100.0
"""|coefficient| <= this (config.COEFFICIENTS, the steer stage's own bound: multiples of max activation)."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask; more is refused with a 4xx naming the limit."""

    max_prompt_chars: int = 2000
    """Longer prompts are refused (not cut), with this number in the error."""
    max_prompt_tokens: int = 256
    """Tokens of a prompt read (BOS included); beyond it the prompt is cut, with a notice."""
    max_new_tokens: int = 64
    """Tokens a steering request may generate."""
    top_features: int = 10
    """Features listed for a prompt (strongest on any of its tokens)."""
    top_per_token: int = 5
    """Features listed per token."""
    max_requests: int = 16
    """Model requests in flight at once; one more gets 429 (retry) rather than a queue without end."""
    max_steering: int = 2
    """Steering requests in flight at once (each is some seconds of model time); one more gets 429."""


class RequestError(Exception):
    """A request the app refuses: HTTP `status` and one line saying why and what to do."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Cancelled(Exception):
    """The request's client went away; its model work stopped at the next forward pass."""


class Turns:
    """A lock that threads get in the order they asked for it (first come, first served)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._issued = 0
        self._serving = 0

    @contextmanager
    def turn(self):
        with self._cond:
            ticket = self._issued
            self._issued += 1
            self._cond.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._cond:
                self._serving += 1
                self._cond.notify_all()


class Recent:
    """The `size` most recently stored values by key, shared by the request threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_request = threading.local()
"""The cancel event of the request the current thread works for (Workbench.call)."""


def share_model(handle: ModelHandle, turns: Turns) -> None:
    """Make every forward pass of the model take its turn (module docstring), and stop
    a cancelled request's work before its next pass (every forward pass in this package
    goes through `run_with_hooks` or, a decoding step, `ModelHandle.turn`)."""
    run = handle.model.run_with_hooks

    @contextmanager
    def step_in_turn():
        cancel = getattr(_request, "cancel", None)
        if cancel is not None and cancel.is_set():
            raise Cancelled("the client went away")
        with turns.turn():
            yield

    def run_in_turn(*args, **kwargs):
        with step_in_turn():
            return run(*args, **kwargs)

    handle.model.run_with_hooks = run_in_turn
    handle.turn = step_in_turn


@dataclass
class HookState:
    """One hook's SAE and what the analysis found there (None: not analysed yet)."""

    hook: str
    sae: object
    analysis: HookAnalysis | None
    browser: bool
    """Whether the static feature browser has pages for this hook (report/browser/<hook>/)."""
    max_acts: dict[int, float] = field(default_factory=dict)
    """Max activation on the labelled texts of every feature the analysis lists (specialists, rankings)."""
    category_of: dict[int, str] = field(default_factory=dict)
    """Specialist feature -> its category."""

    def __post_init__(self) -> None:
        a = self.analysis
        if a is None:
            return
        for rows in a.rankings.values():
            for r in rows:
                self.max_acts[int(r["feature"])] = float(r["max_act"])
        for c, s in a.specialists.items():
            self.category_of.setdefault(s.feature, c)
            if s.max_act is not None:
                self.max_acts[s.feature] = float(s.max_act)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    def scale(self, feature: int) -> tuple[float, str]:
        """(what coefficient 1 adds, in activation units; where that number comes from)."""
        if feature in self.max_acts and self.max_acts[feature] > 0:
            return self.max_acts[feature], "the feature's max activation on the labelled texts"
        known = [v for v in self.max_acts.values() if v > 0]
        if known:
            return statistics.median(known), f"median max activation of the {len(known)} features the analysis lists (this one is not among them)"
        return 1.0, "no analysis at this hook: raw activation units"

    def link(self, feature: int) -> str:
        if self.browser:
            return f"/browser/{self.hook}/feature.html#{feature}"
        return f"/api/feature/{self.hook}/{feature}"


@dataclass
class Workbench:
    params: Params
    handle: ModelHandle
    hooks: dict[str, HookState]
    steering: object | None
    """steer.generation.GenerationSteering's context (judge, prompts) for a causal LM; None for an encoder."""
    limits: Limits = field(default_factory=Limits)
    turns: Turns = field(default_factory=Turns)
    unsteered: Recent = field(default_factory=lambda: Recent(64))
    """Unsteered continuations with their measures, by (hook, feature, prompt ids, max_new_tokens) (`steer`)."""

    @classmethod
    def load(cls, params: Params, saes: str | Path, analysis: str | Path, texts: str | Path, hooks: list[str] | None = None,
             browser: str | Path | None = None, limits: Limits | None = None) -> Workbench:
        """Load the model, each hook's SAE (`sae.io.load_sae`) and analysis, and the steer
        stage's judge (fitted on `texts`), once. One-line ValueError if an SAE is missing."""
        hooks = [params.require_hook(h) for h in (hooks or params.hooks)]
        missing_saes(params, saes, hooks, raise_error=True)
        handle = load_model(params.model)
        handle.check_hooks(hooks)
        states = {}
        for h in hooks:
            sae, _ = load_sae(params.model, h, saes)
            sae.eval()
            path = Path(analysis) / f"{h}.json"
            result = HookAnalysis.from_json(read_json(path)) if path.exists() else None
            pages = browser is not None and (Path(browser) / h / "feature.html").exists()
            states[h] = HookState(h, sae, result, pages)
        ctx = None
        if model_kind(params.model).steering == GenerationSteering.name:
            ctx = GenerationSteering().steering_context(handle, read_texts(texts), params.steer, params.data.max_tokens)
        wb = cls(params, handle, states, ctx, limits or Limits())
        share_model(handle, wb.turns)
        return wb

    # ------------------------------------------------------------ checks (each a 4xx)

    def hook(self, hook: str | None) -> HookState:
        if hook is None:
            hook = self.default_hook
        if hook not in self.hooks:
            raise RequestError(404, f"unknown hook {hook!r}; this app serves {', '.join(self.hooks)}")
        return self.hooks[hook]

    @property
    def default_hook(self) -> str:
        return self.params.steer.hook if self.params.steer.hook in self.hooks else next(iter(self.hooks))

    def check_prompt(self, prompt: str) -> str:
        if not prompt.strip():
            raise RequestError(422, "prompt is empty: type some text")
        n = self.limits.max_prompt_chars
        if len(prompt) > n:
            raise RequestError(413, f"prompt is {len(prompt):,} characters; the limit is {n:,}: shorten it")
        return prompt

    def check_feature(self, h: HookState, feature: int) -> int:
        if not 0 <= feature < h.d_sae:
            raise RequestError(404, f"unknown feature {feature} at {h.hook}: ids run from 0 to {h.d_sae - 1}")
        return feature

    # ------------------------------------------------------------ what a request computes

    def call(self, cancel: threading.Event | None, fn: Callable, *args):
        """fn(*args) in this thread, its forward passes stopped once `cancel` is set."""
        _request.cancel = cancel
        try:
            return fn(*args)
        finally:
            _request.cancel = None

    @torch.no_grad()
    def prompt_view(self, hook: str | None, prompt: str) -> dict:
        """The prompt's tokens, each with its strongest features, and the prompt's
        strongest features, each with its token highlights (`viz.highlight.token_spans`)."""
        h = self.hook(hook)
        text = self.check_prompt(prompt)
        lim = self.limits
        tok = self.handle.tokenize(text, lim.max_prompt_tokens)
        n_all = len(self.handle.tokenize(text, 10 * lim.max_prompt_chars).ids)
        ids = torch.tensor([tok.ids])
        x = self.handle.run_hooks(ids, torch.ones_like(ids), [h.hook])[h.hook][0]
        f = h.sae.encode(x.to(h.sae.W_enc.dtype)).float()
        f[torch.tensor(tok.special)] = 0
        peak = f.max(0).values
        top = [i for i in peak.topk(min(lim.top_features, h.d_sae)).indices.tolist() if peak[i] > 0]
        vals, idx = f.topk(min(lim.top_per_token, h.d_sae), dim=1)
        tokens = []
        for p, (t, (a, b), sp) in enumerate(zip(tok.tokens, tok.offsets, tok.special)):
            tops = [] if sp else [{"feature": int(i), "value": round(float(v), 4)} for v, i in zip(vals[p], idx[p]) if v > 0]
            tokens.append({"text": t, "start": a, "end": b, "special": bool(sp), "top": tops})
        features = []
        for i in top:
            acts = f[:, i].numpy()
            scale = h.max_acts.get(i) or float(peak[i])
            features.append({"feature": i, "max": round(float(peak[i]), 4), "category": h.category_of.get(i),
                             "link": h.link(i), "highlight": token_spans(text, tok.offsets, tok.special, acts, scale)})
        notice = (f"the prompt is {n_all} tokens; only the first {len(tok.ids)} (BOS included) are shown "
                  f"(limit {lim.max_prompt_tokens})") if n_all > len(tok.ids) else None
        return {"hook": h.hook, "prompt": text, "tokens": tokens, "features": features,
                "n_tokens": sum(1 for t in tokens if not t["special"] and t["end"] > t["start"]),
                "truncated": notice is not None, "notice": notice}

    @torch.no_grad()
    def steer(self, hook: str | None, feature: int, coefficient: float, mode: str, prompt: str, max_new_tokens: int) -> dict:
        """Greedy continuations of `prompt`, unsteered and steered with `feature` (mode,
        coefficient x its scale), measured as the steer stage measures them (module docstring)."""
        if self.steering is None:
            raise RequestError(422, f"steering needs a causal LM; {self.params.model.name} is a {self.params.model.kind}")
        h = self.hook(hook)
        self.check_feature(h, feature)
        if not in_interval(coefficient, COEFFICIENTS):
            raise RequestError(422, f"coefficient must be a finite number in {COEFFICIENTS} (multiples of the feature's max activation), got {coefficient!r}")
        if mode not in STEER_MODES:
            raise RequestError(422, f"mode must be one of {', '.join(STEER_MODES)}, got {mode!r}")
        if not 1 <= max_new_tokens <= self.limits.max_new_tokens:
            raise RequestError(422, f"max_new_tokens must be in [1, {self.limits.max_new_tokens}], got {max_new_tokens}")
        text = self.check_prompt(prompt)
        ids = torch.tensor([self.handle.tokenize(text, self.limits.max_prompt_tokens).ids])
        scale, source = h.scale(feature)
        category = h.category_of.get(feature)
        judge = GenerationSteering.judge(self.steering, category) if category else None
        cfg = self.params.steer
        run = lambda coefs, m: steer_generation(self.handle, h.sae, feature, h.hook, scale, coefs, [ids], max_new_tokens, m,  # noqa: E731
                                                cfg.top_tokens, judge)
        key = (h.hook, feature, tuple(ids[0].tolist()), max_new_tokens)
        base = self.unsteered.get(key)
        cached = base is not None
        if cached:
            (steered,) = run([float(coefficient)], mode)
        elif mode == "add":
            base, steered = run([0.0, float(coefficient)], "add")
        else:
            (steered,), (base,) = run([float(coefficient)], "clamp"), run([0.0], "add")
        if not cached:
            self.unsteered.put(key, base)
        fl = fluency(steered["nll"], steered["distinct"], base["nll"], base["distinct"], cfg.max_ppl_ratio)

        def side(r, extra=None):
            out = {"continuation": r["continuation"], "concept_score": finite_or_none(r["concept_score"]),
                   "judge_score": finite_or_none(r["classifier_prob"]) if judge else None, "perplexity": finite_or_none(r["perplexity"]),
                   "feature_activation": finite_or_none(r["feature_activation"])}
            return {**out, **(extra or {})}

        judged = f"P({category}) from the steer stage's text classifier" if judge else "no category: not a specialist at this hook, so no judge"
        return {"hook": h.hook, "feature": feature, "mode": mode, "coefficient": coefficient, "scale": scale, "scale_source": source,
                "value": coefficient * scale, "prompt": text, "max_new_tokens": max_new_tokens, "category": category, "judge": judged,
                "max_ppl_ratio": cfg.max_ppl_ratio, "unsteered_reused": cached, "unsteered": side(base),
                "steered": side(steered, {"fluency": fl, "combined": combined(steered["classifier_prob"], fl) if judge else None})}

    def feature_summary(self, hook: str, feature: int) -> dict:
        """What the analysis says about one feature (the link target without the static browser)."""
        h = self.hook(hook)
        self.check_feature(h, feature)
        a = h.analysis
        scale, source = h.scale(feature)
        category = h.category_of.get(feature)
        out = {"hook": h.hook, "feature": feature, "category": category, "scale": scale, "scale_source": source,
               "analysed": a is not None}
        if a is not None:
            if category is not None:
                out["specialist"] = a.specialists[category].to_json()
            out["rankings"] = {name: r for name, rows in a.rankings.items() for r in rows if int(r["feature"]) == feature}
            if str(feature) in a.cards:
                out["card"] = a.cards[str(feature)]
        return json_safe(out)

    def info(self) -> dict:
        """The model, hooks, limits and steering defaults the page starts from."""
        cfg = self.params.steer
        h = self.hooks[self.default_hook]
        spec = h.analysis.specialists.get(cfg.category) if h.analysis else None
        return {
            "model": self.params.model.name, "kind": self.params.model.kind, "steering": self.steering is not None,
            "hooks": [{"hook": s.hook, "d_sae": s.d_sae, "analysed": s.analysis is not None, "browser": s.browser,
                       "specialists": {c: f for f, c in s.category_of.items()}} for s in self.hooks.values()],
            "default_hook": h.hook,
            "limits": {**vars(self.limits), "coefficient": COEFFICIENTS},
            "steer": {"prompt": cfg.prompts[0] if cfg.prompts else "", "feature": spec.feature if spec else 0,
                      "coefficient": 2.0, "mode": cfg.mode, "max_new_tokens": cfg.max_new_tokens},
        }


def missing_saes(params: Params, saes: str | Path, hooks: list[str], raise_error: bool = False) -> list[str]:
    """The hooks without a trained SAE under `saes` (custom SAEs only; a pre-trained release
    loads from the hub); raise_error: a one-line ValueError naming them instead."""
    if params.model.sae_source != "custom":
        return []
    missing = [h for h in hooks if not (Path(saes) / h / "cfg.json").exists()]
    if missing and raise_error:
        raise ValueError(f"no trained SAE for {', '.join(missing)} in {saes}: run dvc repro first (or pass --saes, --hooks)")
    return missing
