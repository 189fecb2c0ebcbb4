"""Where a feature fires, as contexts a reader (human or LLM) can read: one context
per evaluation text, the `window` kept tokens around the text's strongest token,
with the feature's activation on each token.

    contexts = text_contexts(ft, table, feature, window)     # every text, in text order
    pick = explainer_examples(train_active, n, rng)           # the strongest half + quantile bands
    pick = quantile_sample(heldout_active, n, rng)            # spread over quantile bands

The explainer reads contexts of the train texts only; the scorers read contexts of
the held-out texts (the split of data/texts, the one the specialists use), so an
explanation is always scored on texts it was not written from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MARK_OPEN, MARK_CLOSE = "<<", ">>"


@dataclass
class Context:
    """One text's window around its strongest token."""

    text: int
    """Index of the text in the token table."""
    split: str
    category: str
    tokens: list[str]
    acts: list[float]
    """The feature's activation on each token of the window (0 where it is silent)."""

    @property
    def max_act(self) -> float:
        return max(self.acts) if self.acts else 0.0

    def plain(self) -> str:
        """The window's text."""
        return "".join(self.tokens).strip()

    def marked(self, positions=None, frac: float = 0.3) -> str:
        """The window's text with <<...>> around the tokens at `positions` (default: those
        firing above frac x the window's strongest activation)."""
        if positions is None:
            top = self.max_act
            positions = {i for i, a in enumerate(self.acts) if top > 0 and a >= frac * top}
        out = []
        for i, t in enumerate(self.tokens):
            if i in positions:
                lead = t[: len(t) - len(t.lstrip())]
                out.append(f"{lead}{MARK_OPEN}{t.lstrip()}{MARK_CLOSE}")
            else:
                out.append(t)
        return "".join(out).strip()

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Context:
        return cls(**d)


def text_contexts(feature_values: np.ndarray, table, window: int) -> list[Context]:
    """One Context per text of `table` (TokenTable) with kept tokens: feature_values [n_kept]
    is the feature's activation on every kept token (FeatureTable.feature_values)."""
    ti = np.asarray(table.text_index)
    out = []
    starts = np.flatnonzero(np.r_[True, ti[1:] != ti[:-1]])
    ends = np.r_[starts[1:], len(ti)]
    for a, b in zip(starts, ends):
        t = int(ti[a])
        vals = feature_values[a:b]
        pos = table.position[a:b]
        toks = shown_tokens(table.texts[t])
        c = int(np.argmax(vals)) if vals.max() > 0 else 0
        lo = max(0, min(c - (3 * window) // 4, len(vals) - window))
        hi = min(len(vals), lo + window)
        out.append(Context(text=t, split=table.texts[t]["split"], category=table.texts[t]["category"],
                           tokens=[toks[int(p)] for p in pos[lo:hi]], acts=[float(v) for v in vals[lo:hi]]))
    return out


def shown_tokens(record: dict) -> list[str]:
    """A token table text's tokens as a reader sees them, each with the whitespace between it and
    the token before: a WordPiece tokenizer (MiniLM's) leaves spaces out of its tokens' offsets,
    where Gemma's tokens carry their leading space already (their tokens come back unchanged)."""
    text, toks, offs = record["text"], record["tokens"], record["offsets"]
    out = list(toks)
    for p in range(1, len(toks)):
        a, prev_end = offs[p][0], offs[p - 1][1]
        if not record["special"][p] and prev_end < a and text[prev_end:a].isspace():
            out[p] = text[prev_end:a] + toks[p]
    return out


def quantile_sample(contexts: list[Context], n: int, rng: np.random.Generator, bands: int = 5) -> list[Context]:
    """Up to n contexts spread over `bands` quantile bands of their max activation (as Delphi
    samples activating examples), strongest band first; seeded."""
    if len(contexts) <= n:
        return sorted(contexts, key=lambda c: -c.max_act)
    order = sorted(contexts, key=lambda c: -c.max_act)
    groups = [g for g in np.array_split(np.arange(len(order)), min(bands, n)) if len(g)]
    per = [n // len(groups) + (1 if i < n % len(groups) else 0) for i in range(len(groups))]
    picked = []
    for g, k in zip(groups, per):
        picked += [order[i] for i in sorted(rng.choice(g, size=min(k, len(g)), replace=False))]
    return picked


def explainer_examples(contexts: list[Context], n: int, rng: np.random.Generator) -> list[Context]:
    """The n contexts an explainer reads: the strongest n // 2, then the rest spread over
    quantile bands of the others (SAEDashboard's top examples and quantile bands, shortened)."""
    order = sorted(contexts, key=lambda c: -c.max_act)
    top = order[: n // 2]
    return top + quantile_sample(order[n // 2 :], n - len(top), rng)


def top_tokens(contexts: list[Context], k: int = 5) -> list[str]:
    """The k tokens most often the strongest of their context (ties: stronger total first)."""
    count: dict[str, list[float]] = {}
    for c in contexts:
        if c.max_act > 0:
            t = c.tokens[int(np.argmax(c.acts))].strip() or repr(c.tokens[int(np.argmax(c.acts))])
            count.setdefault(t, []).append(c.max_act)
    return [t for t, _ in sorted(count.items(), key=lambda kv: (-len(kv[1]), -sum(kv[1]), kv[0]))[:k]]
