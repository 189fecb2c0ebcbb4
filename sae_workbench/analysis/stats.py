"""Every statistical test and interval of the analyses.

    specialist_scores, find_specialists   each category's specialist, selected on the train texts
    specialist_statistics                 its held-out AUROC and score with bootstrap intervals and
                                          a permutation p-value whose null repeats the search
    leave_one_register_out                does a specialist carry over to a register it never saw?
    paired_auroc_test                     one hook's specialists against another's on the same texts
    bootstrap_mean, paired_difference     a mean over prompts or texts with its interval; two paired means
                                          (steering against unsteered, specialist ablation against control)
    auroc, column_ranks                   Mann-Whitney AUROC
    unit_rows, unit_decoder, best_match, pair_stability, mean_and_spread
                                          seed-to-seed stability (below)

Seed-to-seed stability: do the features survive another training seed?
Decoder-direction matching between SAEs trained on the same activations with different seeds.

For SAEs A and B with unit decoder rows a_i, b_j, feature i of A has the
best-match cosine  max_j cos(a_i, b_j).  Following the feature-universality
literature (e.g. Paulo & Belrose 2025, "SAEs trained on the same data learn
different features"), a feature is *stable* when its best match is >= 0.7;
published runs report median best-match cosines near 0.5. Only features alive
in A (firing at least once on the held-out corpus tokens) are counted: a dead
latent's direction is its initialisation.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import CATEGORIES
from .results import NAN, Specialist, SpecialistCount


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


# ---------------------------------------------------------------- paired test


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
    interval, verdict = _bootstrap_verdict(boot, alpha, ("stronger", "weaker"))
    return {"auroc_diff": float(observed), **interval, "n_texts": int(len(lab)), "n_boot": int(n_boot), "verdict": verdict}


def _bootstrap_verdict(boot: np.ndarray, alpha: float, words: tuple[str, str]) -> tuple[dict, str]:
    """The shared tail of the paired tests, from the bootstrap replicates of a
    difference: its (1 - alpha) percentile interval, the two-sided p-value
    2 min(P(d* <= 0), P(d* >= 0)), and the verdict words[0] if the interval lies
    above 0, words[1] if below, else 'no_difference'. Returns
    ({ci_low, ci_high, p_value, alpha}, verdict)."""
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    p = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean())))
    verdict = words[0] if lo > 0 else words[1] if hi < 0 else "no_difference"
    return {"ci_low": float(lo), "ci_high": float(hi), "p_value": p, "alpha": alpha}, verdict


# ---------------------------------------------------------------- means over prompts or texts


def bootstrap_mean(values, rng: np.random.Generator, n_boot: int = 1000, alpha: float = 0.05) -> dict:
    """Mean of `values` (one per prompt or text) with its (1 - alpha) percentile
    bootstrap interval over them: {mean, ci_low, ci_high, n, n_boot}."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0, "n_boot": int(n_boot)}
    boot = v[rng.integers(len(v), size=(n_boot, len(v)))].mean(1)
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"mean": float(v.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": int(len(v)), "n_boot": int(n_boot)}


def paired_difference(a, b, rng: np.random.Generator, n_boot: int = 1000, alpha: float = 0.05) -> dict:
    """Is mean(a) different from mean(b), a and b paired (the same prompts or texts)?
    Statistic d = mean(a - b); the units resampled with replacement n_boot times;
    (1 - alpha) percentile interval, two-sided p = 2 min(P(d* <= 0), P(d* >= 0)).
    Verdict: 'higher' if the interval lies above 0, 'lower' below, else 'no_difference'."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or not len(a):
        raise ValueError(f"paired_difference needs two equally long non-empty samples, got {len(a)} and {len(b)}")
    d = a - b
    boot = d[rng.integers(len(d), size=(n_boot, len(d)))].mean(1)
    interval, verdict = _bootstrap_verdict(boot, alpha, ("higher", "lower"))
    return {"diff": float(d.mean()), **interval, "n": int(len(d)), "n_boot": int(n_boot), "verdict": verdict}


# ---------------------------------------------------------------- seed-to-seed stability

STABLE_COSINE = 0.7


def unit_rows(W) -> torch.Tensor:
    """Rows of a matrix (array or tensor) scaled to unit norm (float32; zero rows stay zero)."""
    w = torch.as_tensor(W).detach().float()
    return w / w.norm(dim=1, keepdim=True).clamp(min=1e-12)


def unit_decoder(sae) -> torch.Tensor:
    """[d_sae, d_in] decoder rows scaled to unit norm (float32)."""
    return unit_rows(sae.W_dec)


def best_match(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each unit row of a: (max cosine with the rows of b, index of that row)."""
    vals, idx = [], []
    for s in range(0, a.shape[0], chunk):
        v, i = (a[s : s + chunk] @ b.T).max(1)
        vals.append(v)
        idx.append(i)
    return torch.cat(vals).numpy(), torch.cat(idx).numpy()


def pair_stability(a: torch.Tensor, b: torch.Tensor, alive_a: np.ndarray, threshold: float = STABLE_COSINE) -> dict:
    """Best-match statistics of A's alive features in B."""
    cos, _ = best_match(a, b)
    cos = cos[alive_a]
    if not len(cos):
        return {"n_features": 0, "frac_stable": float("nan"), "median_best_cosine": float("nan")}
    return {"n_features": int(len(cos)), "frac_stable": float((cos >= threshold).mean()),
            "median_best_cosine": float(np.median(cos)), "mean_best_cosine": float(cos.mean())}


def mean_and_spread(values: list[float]) -> dict:
    """{mean, std (ddof 1), min, max, values} of one metric over seeds."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "values": [float(x) for x in v]}
