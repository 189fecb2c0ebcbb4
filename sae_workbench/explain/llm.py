"""The language model that writes and judges explanations, behind one small interface:

    llm.complete(prompt, max_tokens) -> str                the first line of a greedy completion
    llm.complete_many(prompts, max_tokens) -> [str]        the same for several prompts (batched)
    llm.yes_no_grid(head, texts, tails) -> [[float]]       log P(Yes) - log P(No) as the next
                                                           answer after head + texts[i] + tails[j]

A judge reads every text against every explanation (the explanation and its controls), so
it is asked a grid: the text comes before the explanation in each prompt, and the local
model runs the shared head once, each text once after it, and only the short tails (the
explanation and "Answer:") per cell, reusing the keys and values before them.

Two implementations: `LocalLM`, the embedded causal LM (Gemma 3 270M by default) read
through TransformerLens, few-shot prompted; and `EndpointLM`, any OpenAI-compatible
chat endpoint (a local llama.cpp, vLLM or Ollama server), its key read from an
environment variable. `Cached` wraps either: every answer is stored by a hash of
(model, call, prompt parts) in a JSON-lines file under the workbench cache
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
"""Longest prompt the local model reads (longer ones keep their end; a judged text is cut
to fit beside its head and tails)."""


class LocalLM:
    """A causal LM of this machine (a models.ModelHandle), greedy and deterministic."""

    def __init__(self, handle, batch_size: int = 8, grid_batch: int = 16):
        self.handle, self.batch_size, self.grid_batch = handle, batch_size, grid_batch
        self.ident = f"local:{handle.profile.name}"
        tok = handle.tokenizer
        self.yes = tok.encode(" Yes", add_special_tokens=False)[0]
        self.no = tok.encode(" No", add_special_tokens=False)[0]
        self._heads: dict[str, tuple] = {}

    def _ids(self, prompt: str) -> list[int]:
        tok = self.handle.tokenizer
        ids = tok.encode(prompt, add_special_tokens=False)[-(PROMPT_TOKENS - 1):]
        return [tok.bos_token_id] + ids

    def complete(self, prompt: str, max_tokens: int) -> str:
        return self.complete_many([prompt], max_tokens)[0]

    @torch.no_grad()
    def complete_many(self, prompts: list[str], max_tokens: int) -> list[str]:
        """complete() of each prompt, batch_size at a time (left-padded, shortest first): a
        generation step reads the weights once for the whole batch, and the batch stops as soon
        as every row's first line is complete (what follows it is never read)."""
        from ..steer.generation import greedy_continuation, left_pad

        decode = lambda g: self.handle.tokenizer.decode(g.tolist(), skip_special_tokens=True)  # noqa: E731
        seqs = [torch.tensor([self._ids(p)]) for p in prompts]
        out = [""] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: (seqs[i].shape[1], i))
        for b in range(0, len(order), self.batch_size):
            rows = order[b : b + self.batch_size]
            ids, mask = left_pad([seqs[i] for i in rows], self.handle.pad_id)
            gen = greedy_continuation(self.handle, ids, max_tokens, mask=mask,
                                      stop=lambda new: all(first_line_done(decode(g)) for g in new))[:, ids.shape[1]:]
            for r, i in enumerate(rows):
                out[i] = first_line(decode(gen[r]))
        return out

    def _head(self, head: str):
        """(the key-value cache of BOS + head, batch 1, its token count): run once per head."""
        if head not in self._heads:
            from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

            model = self.handle.model
            cache = TransformerLensKeyValueCache.init_cache(model.cfg, torch.device("cpu"), 1)
            ids = torch.tensor([self._ids(head)])
            model.run_with_hooks(ids, attention_mask=torch.ones_like(ids), past_kv_cache=cache, stop_at_layer=self.handle.n_layers)
            self._heads[head] = (cache, ids.shape[1])
        return self._heads[head]

    @torch.no_grad()
    def yes_no_grid(self, head: str, texts: list[str], tails: list[str]) -> list[list[float]]:
        """out[i][j]: log P(" Yes") - log P(" No") after BOS + head + texts[i] + tails[j], each part
        tokenized on its own. The head runs once (and is kept for the next call), each text once
        after it in batches of grid_batch (right-padded: the padding is masked and takes no
        position), then every tail after each batch's texts. (40 texts x 3 tails, best of 2 in one
        run on 2 cores, bench/results/judge_grid.json: batches of 8 texts 6.35 s, 16 5.92 s, 32
        6.30 s; all tails of a batch in one forward, its cache repeated per tail, 6.74 s.)"""
        from ..kinds.causal_lm import token_logits
        from ..models import pad_batch

        tok, model, n = self.handle.tokenizer, self.handle.model, self.handle.n_layers
        if not texts or not tails:
            return [[] for _ in texts]
        tail_ids = [tok.encode(t, add_special_tokens=False) for t in tails]
        if not all(tail_ids):
            raise ValueError("yes_no_grid: every tail must hold a token (it ends with the question the judge answers)")
        base, n_head = self._head(head)
        room = max(1, PROMPT_TOKENS - n_head - max(map(len, tail_ids)))
        text_ids = [tok.encode(t, add_special_tokens=False)[:room] or [self.handle.pad_id] for t in texts]
        out = [[0.0] * len(tails) for _ in texts]
        order = sorted(range(len(texts)), key=lambda i: (len(text_ids[i]), i))
        for b in range(0, len(order), self.grid_batch):
            rows = order[b : b + self.grid_batch]
            ids, mask = pad_batch([text_ids[i] for i in rows], self.handle.pad_id)
            cache = _repeated(base, len(rows), frozen=False)
            model.run_with_hooks(ids, attention_mask=mask, past_kv_cache=cache, stop_at_layer=n)
            cache.freeze()
            for j, t in enumerate(tail_ids):
                tids = torch.tensor([t]).expand(len(rows), -1)
                resid = model.run_with_hooks(tids, attention_mask=torch.ones_like(tids), past_kv_cache=cache, stop_at_layer=n)
                yn = token_logits(model, resid[:, -1], [self.yes, self.no])
                for r, i in enumerate(rows):
                    out[i][j] = float(yn[r, 0] - yn[r, 1])
        return out


def _repeated(cache, n: int, frozen: bool = True):
    """A copy of a batch-1 key-value cache with its keys, values and mask repeated n times
    (views: a forward that appends to an unfrozen copy makes new tensors, the original stays)."""
    import copy

    c = copy.copy(cache)
    c.entries = []
    for e in cache.entries:
        e2 = copy.copy(e)
        e2.past_keys, e2.past_values = e.past_keys.expand(n, -1, -1, -1), e.past_values.expand(n, -1, -1, -1)
        c.entries.append(e2)
    c.previous_attention_mask = cache.previous_attention_mask.expand(n, -1)
    c.freeze() if frozen else c.unfreeze()
    return c


class EndpointLM:
    """An OpenAI-compatible chat endpoint (POST <base>/chat/completions), temperature 0.
    yes_no_grid reads the first answer token's log-probabilities (top_logprobs) where the server
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

    def complete_many(self, prompts: list[str], max_tokens: int) -> list[str]:
        return [self.complete(p, max_tokens) for p in prompts]

    def complete(self, prompt: str, max_tokens: int) -> str:
        d = self._post(prompt, max_tokens, False)
        try:
            return first_line(d["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise RuntimeError(f"explain.endpoint {self.url} answered without choices[0].message.content") from None

    def yes_no_grid(self, head: str, texts: list[str], tails: list[str]) -> list[list[float]]:
        """One request per cell: the server sees each whole prompt."""
        return [[self._yes_no(head + t + e) for e in tails] for t in texts]

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
        cut = _ends_cut(self.path)
        with open(self.path, "a", encoding="utf-8") as f:
            if cut:
                f.write("\n")  # an interrupted run's last line stays alone
            for k, v in items.items():
                f.write(json.dumps({"k": k, "v": v}) + "\n")
        self.store.update(items)

    def complete(self, prompt: str, max_tokens: int) -> str:
        return self.complete_many([prompt], max_tokens)[0]

    def complete_many(self, prompts: list[str], max_tokens: int) -> list[str]:
        keys = [self._key("complete", p, max_tokens) for p in prompts]
        self.calls += len(prompts)
        todo = [i for i, k in enumerate(keys) if k not in self.store]
        self.hits += len(prompts) - len(todo)
        if todo:
            got = self.llm.complete_many([prompts[i] for i in todo], max_tokens)
            self._save({keys[i]: v for i, v in zip(todo, got)})
        return [self.store[k] for k in keys]

    def yes_no_grid(self, head: str, texts: list[str], tails: list[str]) -> list[list[float]]:
        """The llm's grid, asking it only the texts and tails of the cells not stored yet."""
        keys = [[self._key("yes_no_grid", head, t, e) for e in tails] for t in texts]
        n_cells = len(texts) * len(tails)
        self.calls += n_cells
        rows = [i for i, row in enumerate(keys) if any(k not in self.store for k in row)]
        cols = [j for j in range(len(tails)) if any(keys[i][j] not in self.store for i in rows)]
        self.hits += n_cells - sum(k not in self.store for row in keys for k in row)
        if rows:
            got = self.llm.yes_no_grid(head, [texts[i] for i in rows], [tails[j] for j in cols])
            self._save({keys[i][j]: got[a][b] for a, i in enumerate(rows) for b, j in enumerate(cols)})
        return [[self.store[k] for k in row] for row in keys]


def _ends_cut(path: Path) -> bool:
    """Whether the file's last line lacks its line break (a run interrupted mid-write)."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:  # no file, or an empty one
        return False


def first_line(text: str, limit: int = 200) -> str:
    """The first non-blank line of a completion, stripped and at most `limit` characters."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def first_line_done(text: str) -> bool:
    """Whether more text can no longer change `first_line(text)`: a line break follows its
    first non-blank line."""
    lines = text.lstrip().splitlines(keepends=True)
    return bool(lines) and lines[0] != lines[0].splitlines()[0]


def make_llm(cfg, profiles: dict) -> Cached:
    """The cached explainer and judge that explain.* names: the endpoint, or the embedded profile."""
    if cfg.endpoint:
        return Cached(EndpointLM(cfg.endpoint, cfg.endpoint_model, cfg.api_key_env))
    from ..models import load_model

    return Cached(LocalLM(load_model(profiles[cfg.explainer])))
