"""What the feature browser shows of every alive feature of one hook, computed
from what `dvc repro` already wrote (SAEDashboard's page, offline):

- density (share of evaluation tokens it fires on), max and mean activation, and
  its activation histogram;
- top contexts: the 20 strongest, then 10 equal-width bands of its activation
  range (0, max], 5 contexts sampled from each (seeded), each a window of tokens
  with the feature's value on every token (for the highlights);
- top and bottom logits: the decoder row through the unembedding (W_dec[f] @ W_U),
  for a model with a logit lens;
- nearest features by decoder cosine and by co-firing (Jaccard over tokens);
- selectivity: held-out AUROC of its per-text maximum against each category;
- its best match in each further training seed's SAE (where seeds exist), its
  Neuronpedia link (pre-trained SAEs that have one), its specialist roles and its
  automatic explanation with scores (where the explain stage explained it).

`FeaturePage` and `IndexRow` are the typed records, written by `site` and read
back through `from_json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..activations import TokenTable
from ..analysis.stats import _category_aurocs, _onehot, best_match, column_ranks, unit_rows  # the analysis's own AUROC and matching code
from ..config import CATEGORIES
from ..features import FeatureTable

N_TOP, N_BANDS, PER_BAND = 20, 10, 5
"""SAEDashboard's layout: the top 20 contexts, then 10 bands of 5."""
BEFORE, AFTER = 6, 2
"""Tokens of context shown before and after the token a context is about."""
N_NEAR, N_LOGITS, N_BINS = 5, 10, 24
DIGITS = 3
"""Summary numbers are stored to 3 decimals; a context's token values to 2 (as the pages show them)."""


@dataclass
class Context:
    text: int
    """Index of the text in the evaluation set (tokens.json; the site's texts.js gives its category and split)."""
    focus: int
    """Which piece the context is about."""
    pieces: list[str]
    """The window's tokens, each with the characters up to the next token."""
    values: list[float]
    """The feature's value on each piece, to 2 decimals."""

    def to_json(self) -> list:
        """Compact, as the site stores thousands of them: [text, focus, pieces, values x 100 as integers]."""
        return [self.text, self.focus, self.pieces, [round(v * 100) for v in self.values]]

    @classmethod
    def from_json(cls, d: list) -> Context:
        return cls(text=d[0], focus=d[1], pieces=d[2], values=[v / 100 for v in d[3]])


@dataclass
class FeaturePage:
    feature: int
    density: float
    n_active: int
    max_act: float
    mean_act: float
    histogram: dict
    """{"edges": [N_BINS + 1 floats], "counts": [N_BINS ints]} over (0, max_act]."""
    top: list[Context]
    bands: list[dict]
    """Per band, strongest first: {"low", "high", "n" (tokens in it), "contexts": [Context]}."""
    selectivity: dict[str, float]
    """Held-out AUROC of the per-text maximum, per category."""
    near_decoder: list[dict]
    """[{"feature", "cosine"}]"""
    near_cofiring: list[dict]
    """[{"feature", "jaccard"}]"""
    logits: dict | None = None
    """{"top": [{"token", "logit"}], "bottom": [...]} on a model with a logit lens."""
    seed_match: list[dict] = field(default_factory=list)
    """[{"seed", "feature", "cosine"}]: best decoder match in each further seed's SAE."""
    specialist_for: list[str] = field(default_factory=list)
    explanation: dict | None = None
    """{"text", "scores": {scorer: auroc}} where the explain stage explained it."""
    neuronpedia: str | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["top"] = [c.to_json() for c in self.top]
        d["bands"] = [{**b, "contexts": [c.to_json() for c in b["contexts"]]} for b in self.bands]
        return d

    @classmethod
    def from_json(cls, d: dict) -> FeaturePage:
        d = dict(d)
        d["top"] = [Context.from_json(c) for c in d["top"]]
        d["bands"] = [{**b, "contexts": [Context.from_json(c) for c in b["contexts"]]} for b in d["bands"]]
        return cls(**d)


@dataclass
class IndexRow:
    feature: int
    density: float
    max_act: float
    best_category: str
    best_auroc: float
    top_tokens: list[str]
    text: str
    """The top contexts' text, for search by token or text."""
    specialist_for: list[str] = field(default_factory=list)
    explanation: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> IndexRow:
        return cls(**d)


def _round(x) -> float:
    return round(float(x), DIGITS)


class _Windows:
    """Token windows of the evaluation texts, by kept-token row."""

    def __init__(self, table: TokenTable):
        self.table = table
        ti = table.text_index
        self.first = np.searchsorted(ti, ti, side="left")
        self.last = np.searchsorted(ti, ti, side="right") - 1

    def pieces(self, t: dict, positions: np.ndarray) -> list[str]:
        """Each token's text up to the next kept token's start (spaces and newlines go with the token before)."""
        offs, text = t["offsets"], t["text"]
        out = []
        for k, p in enumerate(positions):
            a, b = offs[int(p)]
            end = offs[int(positions[k + 1])][0] if k + 1 < len(positions) else b
            out.append(text[a:max(b, end)])
        return out

    def context(self, row: int, values: np.ndarray) -> Context:
        lo, hi = max(int(self.first[row]), row - BEFORE), min(int(self.last[row]), row + AFTER)
        rows = np.arange(lo, hi + 1)
        t = self.table.texts[int(self.table.text_index[row])]
        return Context(text=int(self.table.text_index[row]), focus=int(row - lo),
                       pieces=self.pieces(t, self.table.position[rows]), values=[round(float(v), 2) for v in values[rows]])


def _top_pairs(sim: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the n largest entries (self excluded by the caller): indices and values, largest first,
    ties to the lower index."""
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :n]
    return idx, np.take_along_axis(sim, idx, axis=1)


def decoder_neighbours(W_dec: np.ndarray, n: int = N_NEAR, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the n other features with the highest decoder cosine."""
    u = unit_rows(W_dec)
    idx, val = [], []
    for s in range(0, u.shape[0], chunk):
        sim = (u[s:s + chunk] @ u.T).numpy()
        sim[np.arange(sim.shape[0]), np.arange(s, s + sim.shape[0])] = -np.inf
        i, v = _top_pairs(sim, n)
        idx.append(i)
        val.append(v)
    return np.concatenate(idx), np.concatenate(val)


def cofiring_neighbours(ft: FeatureTable, n: int = N_NEAR, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the n other features with the highest Jaccard index of the tokens they fire on."""
    from scipy.sparse import csc_matrix

    B = csc_matrix((np.ones(len(ft.row), dtype=np.float32), (ft.row, ft.feature)), shape=(ft.n_rows, ft.d_sae))
    count = np.asarray(B.sum(0)).ravel()
    idx, val = [], []
    for s in range(0, ft.d_sae, chunk):
        e = min(ft.d_sae, s + chunk)
        both = (B[:, s:e].T @ B).toarray()
        union = count[s:e, None] + count[None, :] - both
        jac = np.divide(both, union, out=np.zeros_like(both), where=union > 0)
        jac[np.arange(e - s), np.arange(s, e)] = -np.inf
        i, v = _top_pairs(jac, n)
        idx.append(i)
        val.append(v)
    return np.concatenate(idx), np.concatenate(val)


def logit_effects(W_dec: np.ndarray, W_U: torch.Tensor, decode, n: int = N_LOGITS, chunk: int = 64) -> list[dict]:
    """Per feature, the tokens its decoder row raises and lowers most through the unembedding."""
    W = torch.as_tensor(W_dec, dtype=torch.float32)
    tops, bots = [], []
    for s in range(0, W.shape[0], chunk):
        eff = W[s:s + chunk] @ W_U
        tops.append(torch.topk(eff, n, dim=1))
        bots.append(torch.topk(eff, n, dim=1, largest=False))
    ids = sorted({int(i) for t in tops + bots for i in t.indices.flatten()})
    vocab = dict(zip(ids, decode(ids)))
    out = []
    for t, b in zip(tops, bots):
        for k in range(t.indices.shape[0]):
            out.append({"top": [{"token": vocab[int(i)], "logit": _round(v)} for i, v in zip(t.indices[k], t.values[k])],
                        "bottom": [{"token": vocab[int(i)], "logit": _round(v)} for i, v in zip(b.indices[k], b.values[k])]})
    return out


def selectivity(ft: FeatureTable, table: TokenTable, categories=CATEGORIES) -> np.ndarray:
    """[n_cat, d_sae]: held-out AUROC of each feature's per-text maximum, category against the rest."""
    S = ft.per_text_max(table.text_index, len(table.texts))
    ho = np.array([t["split"] == "heldout" for t in table.texts])
    labels = np.array([t["category"] for t in table.texts])[ho]
    return _category_aurocs(column_ranks(S[ho]), _onehot(labels, list(categories)))


def seed_matches(W_dec: np.ndarray, seeds: dict[int, np.ndarray]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per further seed: each feature's best decoder cosine in that seed's SAE, and the matched feature
    (analysis.stats.best_match, as the seeds stage matches them)."""
    mine = unit_rows(W_dec)
    return {s: best_match(mine, unit_rows(W)) for s, W in seeds.items()}


def feature_pages(
    ft: FeatureTable,
    table: TokenTable,
    W_dec: np.ndarray,
    rng: np.random.Generator,
    *,
    logits: list[dict] | None = None,
    seeds: dict[int, np.ndarray] | None = None,
    specialists: dict[str, int] | None = None,
    explanations: dict[int, dict] | None = None,
    neuronpedia_url=None,
    progress=None,
) -> tuple[list[FeaturePage], list[IndexRow]]:
    """A page and an index row for every feature that fires on at least one evaluation token."""
    order = np.lexsort((ft.row, ft.feature))
    feat, rows, vals = ft.feature[order], ft.row[order], ft.value[order]
    starts = np.searchsorted(feat, np.arange(ft.d_sae + 1))
    alive = np.flatnonzero(np.diff(starts) > 0)
    win = _Windows(table)
    sel = selectivity(ft, table)
    cats = list(CATEGORIES)
    dn_i, dn_v = decoder_neighbours(W_dec)
    cf_i, cf_v = cofiring_neighbours(ft)
    matches = seed_matches(W_dec, seeds) if seeds else {}
    roles: dict[int, list[str]] = {}
    for c, f in (specialists or {}).items():
        roles.setdefault(int(f), []).append(c)
    dense = np.zeros(ft.n_rows, dtype=np.float32)
    pages, index = [], []
    for f in progress(alive) if progress else alive:
        r, v = rows[starts[f]:starts[f + 1]], vals[starts[f]:starts[f + 1]]
        dense[r] = v
        hi = float(v.max())
        counts, edges = np.histogram(v, bins=N_BINS, range=(0.0, hi))
        strongest = np.lexsort((r, -v))
        top = [win.context(int(r[k]), dense) for k in strongest[:N_TOP]]
        bands = []
        bounds = np.linspace(0.0, hi, N_BANDS + 1)
        for b in range(N_BANDS - 1, -1, -1):
            inside = np.flatnonzero((v > bounds[b]) & (v <= bounds[b + 1]))
            pick = np.sort(rng.choice(inside, size=min(PER_BAND, len(inside)), replace=False)) if len(inside) else inside
            pick = pick[np.argsort(-v[pick], kind="stable")]
            bands.append({"low": _round(bounds[b]), "high": _round(bounds[b + 1]), "n": int(len(inside)),
                          "contexts": [win.context(int(r[k]), dense) for k in pick]})
        page = FeaturePage(
            feature=int(f), density=round(float(len(v) / ft.n_rows), 7), n_active=int(len(v)), max_act=_round(hi),
            mean_act=_round(v.mean()),
            histogram={"edges": [_round(e) for e in edges], "counts": [int(c) for c in counts]},
            top=top, bands=bands,
            selectivity={c: _round(sel[j, f]) for j, c in enumerate(cats)},
            near_decoder=[{"feature": int(i), "cosine": _round(x)} for i, x in zip(dn_i[f], dn_v[f])],
            near_cofiring=[{"feature": int(i), "jaccard": _round(x)} for i, x in zip(cf_i[f], cf_v[f]) if x > 0],
            logits=logits[f] if logits is not None else None,
            seed_match=[{"seed": int(s), "feature": int(m[1][f]), "cosine": _round(m[0][f])} for s, m in matches.items()],
            specialist_for=roles.get(int(f), []),
            explanation=(explanations or {}).get(int(f)),
            neuronpedia=neuronpedia_url(int(f)) if neuronpedia_url else None,
        )
        dense[r] = 0.0
        pages.append(page)
        j = int(np.argmax(sel[:, f]))
        index.append(IndexRow(
            feature=int(f), density=page.density, max_act=page.max_act, best_category=cats[j], best_auroc=_round(sel[j, f]),
            top_tokens=list(dict.fromkeys(c.pieces[c.focus].strip() for c in top))[:5],
            text=" | ".join("".join(c.pieces) for c in top[:3])[:300],
            specialist_for=page.specialist_for,
            explanation=(page.explanation or {}).get("text", ""),
        ))
    return pages, index
