"""Per-hook feature statistics over the labelled evaluation texts.

Definitions (n = kept tokens, i.e. special tokens excluded):
    frequency(f)      fraction of tokens on which f > 0
    max_act(f)        strongest activation of f on any token
    mean_active(f)    mean activation over the tokens where f fires
    composite(f)      frequency * mean_active  (= mean activation over all tokens)
    selectivity(f)    max_act / mean activation over all tokens, for features
                      firing on >= min_active_tokens tokens: high when a feature
                      fires rarely but strongly
    text strength     s(t, f) = max activation of f over the tokens of text t
    specialist score  score(f, c) = mean_{t in c} s(t, f) - mean_{t not in c} s(t, f)
                      (the seed's "strong inside the category minus outside").
                      The specialist of c is argmax_f over the *train* texts;
                      its score is then re-measured on the held-out texts,
                      with a bootstrap interval and a permutation p-value
                      (see "statistics" below).
    co-activation     Jaccard / PMI of the token sets two features fire on
    coverage(k)       fraction of tokens on which one of the k most frequent features fires
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .config import CATEGORIES
from .features import FeatureTable

NAN = float("nan")


@dataclass
class Specialist:
    """One category's specialist feature: selected on the train texts
    (find_specialists), measured on the held-out texts (specialist_statistics)."""

    feature: int
    train_score: float
    train_auroc: float
    heldout_score: float
    mean_in_heldout: float
    heldout_auroc: float = NAN
    auroc_ci_low: float = NAN
    auroc_ci_high: float = NAN
    ci_low: float = NAN
    """Bootstrap 95% interval of the held-out score (ci_low, ci_high)."""
    ci_high: float = NAN
    p_value: float = NAN
    """Permutation p-value of the held-out AUROC, the null repeating the whole search."""
    significant: bool = False
    """p_value < alpha and auroc_ci_low > 0.5."""
    register_holdout: dict | None = None
    """leave_one_register_out's entry for the category, when texts have registers."""
    max_act: float | None = None
    """Strongest activation of the feature on any evaluation token (analyze_hook)."""

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class SpecialistCount:
    """How many of the categories' specialists are positive / significant on the held-out texts."""

    positive: int
    significant: int
    positive_ci: list[float]
    """Bootstrap 95% interval of the number positive."""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class HookAnalysis:
    """Everything analyze_hook measures on one hook: `to_json()` is the report's
    data/analysis/<hook>.json, `metrics_json()` the numbers for `dvc metrics`."""

    rankings: dict[str, list[dict]]
    specialists: dict[str, Specialist]
    count: SpecialistCount
    score_matrix: dict[str, list[float]]
    """score_matrix[c][j]: held-out score for category c of category j's specialist."""
    coactivation: list[dict]
    cards: dict[str, dict]
    neuronpedia: str | None
    summary: dict = field(default_factory=dict)
    """Token-level numbers: n_tokens, L0, alive features, coverage, ..."""

    def to_json(self) -> dict:
        return {
            "rankings": self.rankings,
            "specialists": {c: s.to_json() for c, s in self.specialists.items()},
            "specialist_count": self.count.to_json(),
            "specialist_score_matrix": self.score_matrix,
            "coactivation": self.coactivation,
            "cards": self.cards,
            "neuronpedia": self.neuronpedia,
        }

    def metrics_json(self) -> dict:
        r6 = lambda x: round(float(x), 6)  # noqa: E731
        spec = self.specialists
        return {
            **self.summary,
            "specialists_heldout_positive": self.count.positive,
            "specialists_heldout_positive_ci_low": self.count.positive_ci[0],
            "specialists_heldout_positive_ci_high": self.count.positive_ci[1],
            "specialists_significant": self.count.significant,
            "mean_heldout_auroc": r6(np.mean([v.heldout_auroc for v in spec.values()])),
            "specialists": {
                c: {
                    "feature": v.feature,
                    "train_score": r6(v.train_score),
                    "heldout_score": r6(v.heldout_score),
                    "ci_low": r6(v.ci_low),
                    "ci_high": r6(v.ci_high),
                    "heldout_auroc": r6(v.heldout_auroc),
                    "auroc_ci_low": r6(v.auroc_ci_low),
                    "auroc_ci_high": r6(v.auroc_ci_high),
                    "p_value": r6(v.p_value),
                    "significant": v.significant,
                    **({"register_holdout_auroc": r6(v.register_holdout["mean_auroc"]),
                        "register_holdout_min_auroc": r6(v.register_holdout["min_auroc"])} if v.register_holdout else {}),
                }
                for c, v in spec.items()
            },
        }


def feature_stats(ft: FeatureTable) -> dict[str, np.ndarray]:
    n = max(ft.n_rows, 1)
    count = np.bincount(ft.feature, minlength=ft.d_sae).astype(np.float64)
    total = np.bincount(ft.feature, weights=ft.value, minlength=ft.d_sae)
    max_act = np.zeros(ft.d_sae, dtype=np.float64)
    np.maximum.at(max_act, ft.feature, ft.value)
    mean_active = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    mean_all = total / n
    return {
        "count": count,
        "frequency": count / n,
        "max_act": max_act,
        "mean_active": mean_active,
        "composite": (count / n) * mean_active,
        "mean_all": mean_all,
    }


def selectivity(stats: dict[str, np.ndarray], min_active_tokens: int) -> np.ndarray:
    ok = stats["count"] >= min_active_tokens
    out = np.full_like(stats["max_act"], -np.inf)
    out[ok] = stats["max_act"][ok] / stats["mean_all"][ok]
    return out


def top_features(score: np.ndarray, k: int) -> list[int]:
    """Indices of the k highest finite scores, ties broken by lower index (deterministic)."""
    valid = np.flatnonzero(np.isfinite(score) & (score > 0))
    order = valid[np.lexsort((valid, -score[valid]))]
    return [int(i) for i in order[:k]]


def specialist_scores(strength: np.ndarray, labels: list[str], category: str) -> np.ndarray:
    """score(f, c) for every feature: [d_sae]. `strength` is [n_texts, d_sae]."""
    inside = np.asarray([lab == category for lab in labels])
    if inside.all() or not inside.any():
        raise ValueError(f"category {category!r} needs texts both inside and outside it")
    return _category_scores(strength, inside[None].astype(np.float64))[0]


def find_specialists(
    strength: np.ndarray, labels: list[str], splits: list[str], categories=CATEGORIES
) -> dict[str, Specialist]:
    """Per category: the feature whose strongest activation per text best
    separates the category's train texts from the others (train AUROC; ties
    broken by the specialist score), with its score and AUROC on the held-out split."""
    splits_arr = np.asarray(splits)
    tr, ho = splits_arr == "train", splits_arr == "heldout"
    lab = np.asarray(labels)
    cats = list(categories)
    S_tr = strength[tr].astype(np.float64)
    Y_tr = _onehot(lab[tr], cats)
    for c, y in zip(cats, Y_tr):
        if y.all() or not y.any():
            raise ValueError(f"category {c!r} needs train texts both inside and outside it")
    feats = _select(column_ranks(S_tr), S_tr, Y_tr)
    auc_tr = _category_aurocs(column_ranks(S_tr[:, feats]), Y_tr)
    sc_tr = _category_scores(S_tr[:, feats], Y_tr)
    out = {}
    for j, c in enumerate(cats):
        f = int(feats[j])
        s_ho = specialist_scores(strength[ho][:, [f]], list(lab[ho]), c)[0] if ho.any() else float("nan")
        out[c] = Specialist(
            feature=f,
            train_score=float(sc_tr[j, j]),
            train_auroc=float(auc_tr[j, j]),
            heldout_score=float(s_ho),
            mean_in_heldout=float(strength[ho & (lab == c), f].mean()) if (ho & (lab == c)).any() else NAN,
        )
    return out


def analyze_hook(
    ft: FeatureTable,
    raw_acts: np.ndarray,
    table,
    cfg,
    rng: np.random.Generator,
    unembed: tuple[np.ndarray, np.ndarray, list[str]] | None = None,
) -> HookAnalysis:
    """All per-hook analyses of the labelled texts.

    table: the activation set's TokenTable (texts, text_index, position);
    cfg: AnalysisConfig; unembed: (W_dec [d_sae, d], W_U [d, vocab], vocab) for
    models with an LM head, else None."""
    texts, text_index = table.texts, table.text_index
    n_texts = len(texts)
    stats = feature_stats(ft)
    sel = selectivity(stats, cfg.min_active_tokens)
    strength = ft.per_text_max(text_index, n_texts)
    labels = [t["category"] for t in texts]
    splits = [t["split"] for t in texts]
    registers = [t.get("register", "") for t in texts]
    specialists, count = specialist_statistics(
        strength, labels, splits, rng, cfg.n_bootstrap, cfg.n_permutations, cfg.alpha,
        registers=registers if any(registers) else None,
    )
    for v in specialists.values():
        v.max_act = float(stats["max_act"][v.feature])

    l0_tok = np.bincount(ft.row, minlength=ft.n_rows)
    l0_text = (strength > 0).sum(1)
    rank = {
        "strongest": top_features(stats["max_act"], cfg.top_k),
        "most_frequent": top_features(stats["frequency"], cfg.top_k),
        "most_selective": top_features(sel, cfg.top_k),
        "composite": top_features(stats["composite"], cfg.top_k),
    }

    def describe(f: int) -> dict:
        m = ft.feature == f
        best = int(np.argmax(np.where(m, ft.value, -1)))
        r = int(ft.row[best])
        return {
            "feature": f,
            "max_act": float(stats["max_act"][f]),
            "frequency": float(stats["frequency"][f]),
            "mean_active": float(stats["mean_active"][f]),
            "composite": float(stats["composite"][f]),
            "selectivity": float(sel[f]) if np.isfinite(sel[f]) else None,
            "top_row": r,
            "top_text": texts[int(text_index[r])]["id"],
        }

    # score_matrix[c][j]: held-out score for category c of category j's specialist
    ho = np.asarray(splits) == "heldout"
    ho_labels = [lab for lab, s in zip(labels, splits) if s == "heldout"]
    spec_feats = [specialists[c].feature for c in CATEGORIES]
    score_matrix = {c: specialist_scores(strength[ho][:, spec_feats], ho_labels, c).tolist() for c in CATEGORIES}

    card_feats = list(dict.fromkeys(spec_feats + rank["strongest"][: cfg.card_strongest]))
    cards = {}
    for f in card_feats:
        card = feature_card(ft, texts, text_index, table.position, f, cfg.card_top_tokens, cfg.card_bins)
        if unembed is not None:
            W_dec, W_U, vocab = unembed
            card["logit_effects"] = logit_effects(W_dec[f], W_U, vocab, cfg.card_top_tokens)
        cards[str(f)] = card
    pairs = coactivation(ft, cfg.coact_min_tokens, cfg.top_k)
    r6 = lambda x: round(float(x), 6)  # noqa: E731
    summary = {
        "n_tokens": int(ft.n_rows),
        "n_texts": n_texts,
        "d_sae": int(ft.d_sae),
        "frac_nonzero_raw": r6((np.abs(raw_acts) > 1e-6).mean()),
        "frac_nonzero_sae": r6(len(ft.value) / max(1, ft.n_rows * ft.d_sae)),
        "l0_per_token": r6(l0_tok.mean()),
        "l0_per_text": r6(l0_text.mean()),
        "alive_features": int((stats["count"] > 0).sum()),
        "top_strongest_act": r6(stats["max_act"].max()),
        "top_frequency": r6(stats["frequency"].max()),
        "top_coactivation_jaccard": r6(pairs[0]["jaccard"]) if pairs else 0.0,
        "coverage_top_frequent": {k: r6(v) for k, v in coverage(stats, ft).items()},
    }
    return HookAnalysis(
        rankings={k: [describe(f) for f in v] for k, v in rank.items()},
        specialists=specialists,
        count=count,
        score_matrix=score_matrix,
        coactivation=pairs,
        cards=cards,
        neuronpedia=ft.neuronpedia,
        summary=summary,
    )


# ---------------------------------------------------------------- statistics
#
# The seed picked, among thousands of features, the one that best separates a
# category's texts and scored it on those same texts: a winner's-curse number.
# Here the specialist is selected on the train split and scored on the held-out
# split, with
#   - a bootstrap 95% interval: held-out texts resampled with replacement within
#     each category (B resamples), the specialist's held-out score recomputed;
#   - a permutation p-value whose null repeats the *whole* search: category
#     labels shuffled within each split, the best feature re-selected on the
#     shuffled train split and scored on the shuffled held-out split;
#     p = (1 + #{null >= observed}) / (1 + P).
#   - held-out AUROC: probability that a random held-out text of the category
#     has a higher strength than a random held-out text outside it (ties 1/2).
#     Scale-free, so it compares hooks whose activations differ in size.
# A specialist is *significant* when its held-out score is > 0 and p < alpha.


def _category_scores(strength: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """[n_cat, d]: mean strength inside each category minus mean outside, in
    float64 (specialist_scores, the bootstrap and the permutation null all
    use this one computation, so a shuffle that restores the labels ties exactly).
    onehot: [n_cat, n_texts] 0/1."""
    strength = np.asarray(strength, dtype=np.float64)
    n_in = onehot.sum(-1, keepdims=True)
    n = onehot.shape[-1]
    inside = onehot @ strength
    total = strength.sum(0)
    return inside / n_in - (total - inside) / (n - n_in)


def _onehot(labels: np.ndarray, cats: list[str]) -> np.ndarray:
    """[n_cat, n_texts] float64 0/1."""
    return (np.asarray(labels)[None, :] == np.asarray(cats)[:, None]).astype(np.float64)


def column_ranks(strength: np.ndarray) -> np.ndarray:
    """Each feature's texts ranked by strength (1 = weakest; ties share their average rank), float64."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(strength, dtype=np.float64), axis=0, method="average")


def _category_aurocs(ranks: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """[n_cat, d]: AUROC of each feature for each category from column ranks
    (Mann-Whitney U over n_in * n_out, ties counted 1/2)."""
    n_in = onehot.sum(-1, keepdims=True)
    n_out = onehot.shape[-1] - n_in
    rank_sum = onehot @ ranks
    return (rank_sum - n_in * (n_in + 1) / 2) / (n_in * n_out)


def _select(ranks: np.ndarray, strength: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """Per category, the feature with the highest AUROC; among features within
    1e-12 of it, the highest specialist score; then the lowest index."""
    auc = _category_aurocs(ranks, onehot)
    top = auc >= auc.max(1, keepdims=True) - 1e-12
    score = np.where(top, _category_scores(strength, onehot), -np.inf)
    return score.argmax(1)


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + P(pos == neg) / 2 over all pairs (Mann-Whitney U / n_pos n_neg)."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    d = pos[:, None] - neg[None, :]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def specialist_statistics(
    strength: np.ndarray,
    labels: list[str],
    splits: list[str],
    rng: np.random.Generator,
    n_boot: int = 1000,
    n_perm: int = 1000,
    alpha: float = 0.05,
    categories=CATEGORIES,
    registers: list[str] | None = None,
) -> tuple[dict[str, Specialist], SpecialistCount]:
    """find_specialists plus, per category: held-out AUROC with its bootstrap
    interval, the held-out score's interval, the permutation p-value of the
    held-out AUROC (the null repeats the whole search), the verdict, and, given
    each text's register, the leave-one-register-out AUROC
    (`register_holdout`). Returns ({category: Specialist}, SpecialistCount)."""
    spec = find_specialists(strength, labels, splits, categories)
    sp, lab = np.asarray(splits), np.asarray(labels)
    tr, ho = sp == "train", sp == "heldout"
    S_tr, S_ho = strength[tr].astype(np.float64), strength[ho].astype(np.float64)
    lab_tr, lab_ho = lab[tr], lab[ho]
    cats = list(categories)
    feats = np.array([spec[c].feature for c in cats])
    R_tr, R_ho = column_ranks(S_tr), column_ranks(S_ho)

    # bootstrap: resample held-out texts within each category
    groups = [np.flatnonzero(lab_ho == c) for c in cats]
    boot = np.empty((n_boot, len(cats)))
    boot_auc = np.empty((n_boot, len(cats)))
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        Y = _onehot(lab_ho[idx], cats)
        S_b = S_ho[idx][:, feats]
        boot[b] = np.diag(_category_scores(S_b, Y))  # [n_cat, n_cat] -> own feature
        boot_auc[b] = np.diag(_category_aurocs(column_ranks(S_b), Y))

    # permutation: shuffle labels within each split, redo the selection, score the held-out AUROC
    observed_auc = np.diag(_category_aurocs(R_ho[:, feats], _onehot(lab_ho, cats)))
    observed = np.array([spec[c].heldout_score for c in cats])
    exceed = np.zeros(len(cats))
    for _ in range(n_perm):
        Ytr, Yho = _onehot(rng.permutation(lab_tr), cats), _onehot(rng.permutation(lab_ho), cats)
        best = _select(R_tr, S_tr, Ytr)  # re-selected feature per category
        null = np.diag(_category_aurocs(R_ho[:, best], Yho))
        exceed += null >= observed_auc - 1e-12
    pvals = (1 + exceed) / (1 + n_perm)

    loro = leave_one_register_out(strength, labels, splits, registers, cats) if registers is not None else {}
    for j, c in enumerate(cats):
        lo, hi = np.percentile(boot[:, j], [2.5, 97.5])
        alo, ahi = np.percentile(boot_auc[:, j], [2.5, 97.5])
        s = spec[c]
        s.heldout_auroc, s.auroc_ci_low, s.auroc_ci_high = float(observed_auc[j]), float(alo), float(ahi)
        s.ci_low, s.ci_high, s.p_value = float(lo), float(hi), float(pvals[j])
        s.significant = bool(pvals[j] < alpha and alo > 0.5)
        s.register_holdout = loro.get(c)
    counts = (boot > 0).sum(1)
    count = SpecialistCount(
        positive=int((observed > 0).sum()),
        significant=int(sum(spec[c].significant for c in cats)),
        positive_ci=[float(np.percentile(counts, 2.5)), float(np.percentile(counts, 97.5))],
    )
    return spec, count


def leave_one_register_out(
    strength: np.ndarray, labels: list[str], splits: list[str], registers: list[str], categories=CATEGORIES
) -> dict[str, dict]:
    """Does a category's specialist carry over to a register it never saw?

    For each register r of category c: the specialist is re-selected on the
    train split without c's texts of register r, then scored by AUROC on all
    of c's texts of register r (train and held-out: none was seen) against the
    held-out texts of the other categories. Returns per category
    {"by_register": {r: {"feature", "auroc", "n"}}, "mean_auroc", "min_auroc"}."""
    lab, sp, reg = np.asarray(labels), np.asarray(splits), np.asarray(registers)
    cats = list(categories)
    out = {}
    for c in cats:
        by_reg = {}
        for r in sorted(set(reg[lab == c]) - {""}):
            left_out = (lab == c) & (reg == r)
            train = (sp == "train") & ~left_out
            S = strength[train].astype(np.float64)
            Y = _onehot(lab[train], cats)
            j = cats.index(c)
            if Y[j].sum() == 0:
                continue
            f = int(_select(column_ranks(S), S, Y[j : j + 1])[0])
            neg = (sp == "heldout") & (lab != c)
            by_reg[r] = {"feature": f, "auroc": auroc(strength[left_out, f], strength[neg, f]), "n": int(left_out.sum())}
        if by_reg:
            vals = [v["auroc"] for v in by_reg.values()]
            out[c] = {"by_register": by_reg, "mean_auroc": float(np.mean(vals)), "min_auroc": float(np.min(vals))}
    return out


# ---------------------------------------------------------------- co-activation


def coactivation(ft: FeatureTable, min_count: int, top_n: int) -> list[dict]:
    """Top feature pairs by Jaccard similarity of the token sets they fire on.

    jaccard(i, j) = |T_i ∩ T_j| / |T_i ∪ T_j|,  pmi(i, j) = log(n |T_i ∩ T_j| / (|T_i| |T_j|)),
    over the n kept tokens; pairs co-firing on fewer than min_count tokens are ignored."""
    from scipy import sparse

    B = sparse.csr_matrix(
        (np.ones(len(ft.feature), dtype=np.float32), (ft.row, ft.feature)), shape=(ft.n_rows, ft.d_sae)
    )
    B.data[:] = 1.0  # duplicate (row, feature) entries count once
    count = np.asarray(B.sum(0)).ravel()
    C = sparse.triu(B.T @ B, k=1).tocoo()
    keep = C.data >= min_count
    i, j, c = C.row[keep], C.col[keep], C.data[keep].astype(np.float64)
    jac = c / (count[i] + count[j] - c)
    order = np.lexsort((j, i, -jac))[:top_n]
    n = max(ft.n_rows, 1)
    return [
        {
            "a": int(i[o]),
            "b": int(j[o]),
            "jaccard": float(jac[o]),
            "pmi": float(np.log(n * c[o] / (count[i[o]] * count[j[o]]))),
            "co_tokens": int(c[o]),
        }
        for o in order
    ]


# ---------------------------------------------------------------- concept search


def concept_search(strength_examples: np.ndarray, strength_rest: np.ndarray, top_n: int = 10) -> list[dict]:
    """Rank features for example texts against reference texts, strength-weighted.

    score(f) = mean over examples of s(t, f) - mean over the rest of s(t, f), where
    s(t, f) is f's strongest activation in text t (the specialist score with the
    examples as the category); also the fraction of examples where f fires."""
    if len(strength_examples) == 0 or len(strength_rest) == 0:
        raise ValueError("concept search needs at least one example text and one reference text")
    score = strength_examples.mean(0) - strength_rest.mean(0)
    return [
        {
            "feature": f,
            "score": float(score[f]),
            "mean_in_examples": float(strength_examples[:, f].mean()),
            "mean_in_rest": float(strength_rest[:, f].mean()),
            "fires_in_examples": float((strength_examples[:, f] > 0).mean()),
        }
        for f in top_features(score, top_n)
    ]


# ---------------------------------------------------------------- feature cards


def feature_card(
    ft: FeatureTable,
    texts: list[dict],
    text_index: np.ndarray,
    position: np.ndarray,
    feature: int,
    top_n: int = 10,
    bins: int = 20,
    context_chars: int = 40,
) -> dict:
    """Top activating tokens with their context and a histogram of the feature's
    non-zero activations (bin edges from 0 to its max)."""
    m = ft.feature == feature
    rows, vals = ft.row[m], ft.value[m]
    order = np.lexsort((rows, -vals))[:top_n]
    top = []
    for o in order:
        r = int(rows[o])
        t = texts[int(text_index[r])]
        a, b = t["offsets"][int(position[r])]
        top.append(
            {
                "text": t["id"],
                "category": t["category"],
                "token": t["text"][a:b],
                "left": t["text"][max(0, a - context_chars) : a],
                "right": t["text"][b : b + context_chars],
                "value": float(vals[o]),
            }
        )
    hi = float(vals.max()) if len(vals) else 1.0
    counts, edges = np.histogram(vals, bins=bins, range=(0.0, hi))
    return {
        "feature": int(feature),
        "n_active": int(len(vals)),
        "top_tokens": top,
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def logit_effects(direction: np.ndarray, W_U: np.ndarray, vocab: list[str], top_n: int = 10) -> dict:
    """Tokens a decoder direction boosts and suppresses most through the
    unembedding: direction @ W_U, highest and lowest (models with an LM head only)."""
    eff = direction @ W_U
    up, down = np.argsort(-eff, kind="stable")[:top_n], np.argsort(eff, kind="stable")[:top_n]
    return {
        "boosted": [{"token": vocab[i], "logit": float(eff[i])} for i in up],
        "suppressed": [{"token": vocab[i], "logit": float(eff[i])} for i in down],
    }


def coverage(stats: dict[str, np.ndarray], ft: FeatureTable, ks=(1, 5, 10, 20)) -> dict[str, float]:
    """Fraction of kept tokens on which at least one of the k most frequent features fires."""
    order = top_features(stats["frequency"], max(ks))
    out = {}
    for k in ks:
        hit = np.zeros(ft.n_rows, dtype=bool)
        hit[ft.row[np.isin(ft.feature, order[:k])]] = True
        out[str(k)] = float(hit.mean()) if ft.n_rows else 0.0
    return out


# ---------------------------------------------------------------- across hooks


def written_into(hook: str, hooks: list[str]) -> str | None:
    """The residual-stream hook a block's mlp_out / attn_out is added into:
    blocks.L.hook_resid_post or blocks.(L+1).hook_resid_pre, if listed."""
    from .config import HOOK_RE

    m = HOOK_RE.match(hook)
    if not m or m.group(2) not in ("mlp_out", "attn_out"):
        return None
    L = int(m.group(1))
    for cand in (f"blocks.{L}.hook_resid_post", f"blocks.{L + 1}.hook_resid_pre"):
        if cand in hooks:
            return cand
    return None


def specialist_strengths(ft: FeatureTable, text_index: np.ndarray, n_texts: int, specialists: dict[str, dict],
                         categories=CATEGORIES) -> np.ndarray:
    """[n_texts, n_cat]: each text's strongest activation of each category's specialist."""
    return ft.per_text_max(text_index, n_texts)[:, [int(specialists[c]["feature"]) for c in categories]]


def paired_auroc_test(sa: np.ndarray, sb: np.ndarray, labels, rng: np.random.Generator, n_boot: int = 1000,
                      alpha: float = 0.05, categories=CATEGORIES) -> dict:
    """Is hook A's set of specialists better than hook B's on the same held-out texts?

    sa, sb: [n_texts, n_cat] strengths of each hook's specialist of each category on
    the held-out texts (specialist_strengths), labels: their categories. Statistic:
    d = mean over categories of AUROC_A - AUROC_B. Paired bootstrap: the texts are
    resampled within category, the same resample for both hooks, n_boot times;
    (1 - alpha) percentile interval, two-sided p = 2 min(P(d* <= 0), P(d* >= 0)).
    Verdict: 'stronger' if the interval lies above 0, 'weaker' below, else 'no_difference'."""
    lab = np.asarray(labels)
    cats = list(categories)
    mean_auc = lambda s, y: float(np.mean(np.diag(_category_aurocs(column_ranks(s), y))))
    Y = _onehot(lab, cats)
    observed = mean_auc(sa, Y) - mean_auc(sb, Y)
    groups = [np.flatnonzero(lab == c) for c in cats]
    boot = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        Yb = _onehot(lab[idx], cats)
        boot[b] = mean_auc(sa[idx], Yb) - mean_auc(sb[idx], Yb)
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    p = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean())))
    verdict = "stronger" if lo > 0 else "weaker" if hi < 0 else "no_difference"
    return {"auroc_diff": float(observed), "ci_low": float(lo), "ci_high": float(hi), "p_value": p, "alpha": alpha,
            "n_texts": int(len(lab)), "n_boot": int(n_boot), "verdict": verdict}


def compare_hooks(hooks: list[str], metrics: dict[str, dict], details: dict[str, dict], heldout: dict | None = None,
                  rng: np.random.Generator | None = None, n_boot: int = 1000, alpha: float = 0.05) -> tuple[dict, dict]:
    """Cross-layer comparison from the per-hook analyses.

    Returns (metrics for DVC, data for the report): significant / positive
    specialist counts per hook with bootstrap intervals, mean held-out AUROC,
    the category x hook specialist table, top-5 strongest activations and
    frequent-feature coverage per hook, and for every mlp_out / attn_out hook
    the comparison with the residual stream it writes into: the verdict comes from
    `paired_auroc_test` on the held-out texts (heldout = {"labels": [n],
    "strength": {hook: [n, n_cat]}}), as does the best hook's margin over the runner-up."""
    if heldout is None:
        raise ValueError("compare_hooks needs the held-out specialist strengths for its paired tests")
    rng = rng if rng is not None else np.random.default_rng(0)
    test = lambda a, b: paired_auroc_test(heldout["strength"][a], heldout["strength"][b], heldout["labels"], rng, n_boot, alpha)
    table = {
        c: {h: {k: metrics[h]["specialists"][c][k] for k in ("feature", "heldout_score", "ci_low", "ci_high", "heldout_auroc", "p_value", "significant")} for h in hooks}
        for c in CATEGORIES
    }
    per_hook = {
        h: {
            "significant": metrics[h]["specialists_significant"],
            "positive": metrics[h]["specialists_heldout_positive"],
            "positive_ci": [metrics[h]["specialists_heldout_positive_ci_low"], metrics[h]["specialists_heldout_positive_ci_high"]],
            "mean_heldout_auroc": metrics[h]["mean_heldout_auroc"],
        }
        for h in hooks
    }
    components = []
    for h in hooks:
        resid = written_into(h, hooks)
        if resid is None:
            continue
        a = [metrics[h]["specialists"][c]["heldout_auroc"] for c in CATEGORIES]
        b = [metrics[resid]["specialists"][c]["heldout_auroc"] for c in CATEGORIES]
        wins = int(sum(x > y for x, y in zip(a, b)))
        losses = int(sum(x < y for x, y in zip(a, b)))
        t = test(h, resid)
        components.append(
            {
                "hook": h,
                "resid_hook": resid,
                "significant": per_hook[h]["significant"],
                "resid_significant": per_hook[resid]["significant"],
                "mean_auroc": round(float(np.mean(a)), 6),
                "resid_mean_auroc": round(float(np.mean(b)), 6),
                "categories_higher_auroc": wins,
                "categories_lower_auroc": losses,
                "verdict": t["verdict"],
                "test": t,
            }
        )
    strongest = {h: [{k: r[k] for k in ("feature", "max_act", "top_text")} for r in details[h]["rankings"]["strongest"][:5]] for h in hooks}
    coverage_by_hook = {h: metrics[h]["coverage_top_frequent"] for h in hooks}
    order = sorted(hooks, key=lambda h: (per_hook[h]["significant"], per_hook[h]["mean_heldout_auroc"]), reverse=True)
    best_test = {"runner_up": order[1], **test(order[0], order[1])} if len(order) > 1 else None
    out_metrics = {
        "significant_by_hook": {h: v["significant"] for h, v in per_hook.items()},
        "mean_auroc_by_hook": {h: v["mean_heldout_auroc"] for h, v in per_hook.items()},
        "best_hook": order[0],
        "best_hook_vs_runner_up": best_test,
        "components_vs_resid": {c["hook"]: {k: v for k, v in c.items() if k != "hook"} for c in components},
    }
    data = {
        "hooks": hooks,
        "per_hook": per_hook,
        "specialist_table": table,
        "heldout_score_matrix": {h: details[h]["specialist_score_matrix"] for h in hooks},
        "top5_strongest": strongest,
        "coverage": coverage_by_hook,
        "components_vs_resid": components,
    }
    return out_metrics, data
