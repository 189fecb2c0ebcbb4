"""The language model that writes and judges explanations, behind one small interface:

    llm.complete(prompt, max_tokens) -> str        the first line of a greedy completion
    llm.yes_no(prompts) -> list[float]             log P(Yes) - log P(No) as the next answer

Two implementations: `LocalLM`, the embedded causal LM (Gemma 3 270M by default) read
through TransformerLens, few-shot prompted; and `EndpointLM`, any OpenAI-compatible
chat endpoint (a local llama.cpp, vLLM or Ollama server), its key read from an
environment variable. `Cached` wraps either: every answer is stored by a hash of
(model, call, prompt) in a JSON-lines file under the workbench cache
(<cache>/explain/), so a re-run with the same prompts costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import torch

from ..offline import cache_root

PROMPT_TOKENS = 1024
"""Longest prompt the local model reads (longer ones keep their end)."""


class LocalLM:
    """A causal LM of this machine (a models.ModelHandle), greedy and deterministic."""

    def __init__(self, handle, batch_size: int = 8):
        self.handle, self.batch_size = handle, batch_size
        self.ident = f"local:{handle.profile.name}"
        tok = handle.tokenizer
        self.yes = tok.encode(" Yes", add_special_tokens=False)[0]
        self.no = tok.encode(" No", add_special_tokens=False)[0]

    def _ids(self, prompt: str) -> list[int]:
        tok = self.handle.tokenizer
        ids = tok.encode(prompt, add_special_tokens=False)[-(PROMPT_TOKENS - 1):]
        return [tok.bos_token_id] + ids

    @torch.no_grad()
    def complete(self, prompt: str, max_tokens: int) -> str:
        from ..steer.generation import greedy_continuation

        ids = torch.tensor([self._ids(prompt)])
        out = greedy_continuation(self.handle, ids, max_tokens)[0, ids.shape[1]:]
        return first_line(self.handle.tokenizer.decode(out.tolist(), skip_special_tokens=True))

    @torch.no_grad()
    def yes_no(self, prompts: list[str], prefix: str | None = None) -> list[float]:
        """prefix: a start every prompt shares (the few-shot examples and the explanation): it is
        run once and its keys and values reused for each prompt's rest (TransformerLens's
        key-value cache), for the prompts whose tokens are the prefix's followed by the rest's;
        the others, and all without a prefix, run whole."""
        seqs = [self._ids(p) for p in prompts]
        out = [0.0] * len(seqs)
        rest = list(range(len(seqs)))
        if prefix and len(prompts) > 1:
            pre = self._ids(prefix)
            tails = {i: seqs[i][len(pre):] for i in rest if prompts[i].startswith(prefix) and seqs[i][: len(pre)] == pre and len(seqs[i]) > len(pre)}
            if tails:
                self._score(list(tails), [tails[i] for i in tails], out, pre)
                rest = [i for i in rest if i not in tails]
        if rest:
            self._score(rest, [seqs[i] for i in rest], out)
        return out

    def _score(self, index: list[int], seqs: list[list[int]], out: list[float], prefix: list[int] | None = None) -> None:
        from ..kinds.causal_lm import log_probs
        from ..models import pad_batch

        model = self.handle.model
        base = None
        if prefix is not None:
            from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

            base = TransformerLensKeyValueCache.init_cache(model.cfg, torch.device("cpu"), 1)
            pre = torch.tensor([prefix])
            model.run_with_hooks(pre, attention_mask=torch.ones_like(pre), past_kv_cache=base, stop_at_layer=self.handle.n_layers)
        order = sorted(range(len(seqs)), key=lambda k: (len(seqs[k]), k))
        for b in range(0, len(order), self.batch_size):
            ks = order[b : b + self.batch_size]
            ids, mask = pad_batch([seqs[k] for k in ks], self.handle.pad_id)
            kw = {}
            if base is not None:
                kw["past_kv_cache"] = _repeated(base, len(ks))
            resid = model.run_with_hooks(ids, attention_mask=mask, stop_at_layer=self.handle.n_layers, **kw)
            lp = log_probs(model, resid[torch.arange(len(ks)), mask.sum(1) - 1])
            for r, k in enumerate(ks):
                out[index[k]] = float(lp[r, self.yes] - lp[r, self.no])


def _repeated(cache, n: int):
    """A frozen copy of a batch-1 key-value cache with its keys, values and mask repeated n times."""
    import copy

    c = copy.copy(cache)
    c.entries = []
    for e in cache.entries:
        e2 = copy.copy(e)
        e2.past_keys, e2.past_values = e.past_keys.expand(n, -1, -1, -1), e.past_values.expand(n, -1, -1, -1)
        c.entries.append(e2)
    c.previous_attention_mask = cache.previous_attention_mask.expand(n, -1)
    c.freeze()
    return c


class EndpointLM:
    """An OpenAI-compatible chat endpoint (POST <base>/chat/completions), temperature 0.
    yes_no reads the first answer token's log-probabilities (top_logprobs) where the server
    returns them, else the answer's first word (+/- 10 for Yes / No, 0 otherwise)."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "", timeout: float = 120.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.timeout = model, timeout
        self.ident = f"endpoint:{base_url.rstrip('/')}:{model}"
        self.key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key_env and not self.key:
            raise ValueError(f"explain.api_key_env names {api_key_env}, which is not set in the environment")

    def _post(self, prompt: str, max_tokens: int, logprobs: bool) -> dict:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}
        if logprobs:
            body.update(logprobs=True, top_logprobs=10)
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {self.key}"} if self.key else {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read().decode())
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RuntimeError(f"explain.endpoint {self.url} did not answer ({e}); start the server or set explain.endpoint: '' "
                               "for the embedded model") from None

    def complete(self, prompt: str, max_tokens: int) -> str:
        d = self._post(prompt, max_tokens, False)
        try:
            return first_line(d["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise RuntimeError(f"explain.endpoint {self.url} answered without choices[0].message.content") from None

    def yes_no(self, prompts: list[str], prefix: str | None = None) -> list[float]:
        return [self._yes_no(p) for p in prompts]

    def _yes_no(self, prompt: str) -> float:
        d = self._post(prompt, 1, True)
        try:
            choice = d["choices"][0]
            top = ((choice.get("logprobs") or {}).get("content") or [{}])[0].get("top_logprobs") or []
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise RuntimeError(f"explain.endpoint {self.url} answered without choices[0].message") from None
        best = {}
        for t in top:
            word = str(t.get("token", "")).strip().lower()
            if word in ("yes", "no") and word not in best:
                best[word] = float(t["logprob"])
        if best:
            floor = min(best.values()) - 10.0
            return best.get("yes", floor) - best.get("no", floor)
        word = text.strip().split()[0].strip(".,!").lower() if text.strip() else ""
        return 10.0 if word == "yes" else -10.0 if word == "no" else 0.0


class Cached:
    """An llm whose answers are stored by (llm.ident, call, prompt[, max_tokens]) in a JSON-lines
    file; `hits` and `calls` count what the cache saved."""

    def __init__(self, llm, path: str | Path | None = None):
        self.llm, self.ident = llm, llm.ident
        self.path = Path(path) if path is not None else cache_root() / "explain" / (hashlib.sha256(llm.ident.encode()).hexdigest()[:16] + ".jsonl")
        self.store: dict[str, object] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    d = json.loads(line)
                    self.store[d["k"]] = d["v"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by an interrupted run: asked again
        self.hits = self.calls = 0

    def _key(self, *parts) -> str:
        return hashlib.sha256(json.dumps([self.ident, *parts]).encode()).hexdigest()

    def _save(self, items: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for k, v in items.items():
                f.write(json.dumps({"k": k, "v": v}) + "\n")
        self.store.update(items)

    def complete(self, prompt: str, max_tokens: int) -> str:
        k = self._key("complete", prompt, max_tokens)
        self.calls += 1
        if k in self.store:
            self.hits += 1
            return self.store[k]
        v = self.llm.complete(prompt, max_tokens)
        self._save({k: v})
        return v

    def yes_no(self, prompts: list[str], prefix: str | None = None) -> list[float]:
        keys = [self._key("yes_no", p) for p in prompts]
        self.calls += len(prompts)
        todo = [i for i, k in enumerate(keys) if k not in self.store]
        self.hits += len(prompts) - len(todo)
        if todo:
            got = self.llm.yes_no([prompts[i] for i in todo], prefix)
            self._save({keys[i]: v for i, v in zip(todo, got)})
        return [self.store[k] for k in keys]


def first_line(text: str, limit: int = 200) -> str:
    """The first non-blank line of a completion, stripped and at most `limit` characters."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def make_llm(cfg, profiles: dict) -> Cached:
    """The cached explainer and judge that explain.* names: the endpoint, or the embedded profile."""
    if cfg.endpoint:
        return Cached(EndpointLM(cfg.endpoint, cfg.endpoint_model, cfg.api_key_env))
    from ..models import load_model

    return Cached(LocalLM(load_model(profiles[cfg.explainer])))
