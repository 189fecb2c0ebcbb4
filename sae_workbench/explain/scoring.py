"""Writing an explanation and scoring it, with Delphi's definitions (Paulo et al. 2024,
"Automatically interpreting millions of features in LLMs"), offline:

    explain(llm, examples)                    one line from contexts with the firing tokens marked
    detection(llm, explanations, pos, neg)    the judge reads each held-out context (plain), then
                                              an explanation, and answers whether the feature
                                              fires in it; AUROC of log P(Yes) - log P(No),
                                              activating against non-activating contexts
    fuzzing(llm, explanations, pos, rng)      the judge reads activating contexts with the tokens
                                              marked: correctly (the firing tokens) or at as many
                                              random non-firing tokens; AUROC correct vs random
    embedding(embed, explanation, pos, neg)   all-MiniLM-L6-v2 embeds the explanation and each
                                              context; AUROC of cosine similarity, activating
                                              against non-activating

detection and fuzzing score a list of explanations (a feature's own and its controls) on the
same contexts: the judge reads each context once for all of them. An AUROC of 0.5 is
chance. The prompts are few-shot (the embedded judge is a small base
model), their examples generic and about none of the seven categories.
"""

from __future__ import annotations

import numpy as np

from ..analysis.stats import auroc
from ..cli import finite_or_none
from .contexts import MARK_CLOSE, MARK_OPEN, Context

EXPLAIN_PROMPT = f"""Each feature of a language model fires on some words. Below are texts where one feature fires; the words it fires on most are marked with {MARK_OPEN} {MARK_CLOSE}. Write a short explanation of what the feature detects.

Texts:
The train leaves at {MARK_OPEN}7{MARK_CLOSE}:{MARK_OPEN}45{MARK_CLOSE} from platform {MARK_OPEN}3{MARK_CLOSE}.
In {MARK_OPEN}1998{MARK_CLOSE} the company had {MARK_OPEN}120{MARK_CLOSE} employees.
Explanation: numbers written with digits

Texts:
The {MARK_OPEN}dog{MARK_CLOSE} barked at the {MARK_OPEN}cat{MARK_CLOSE} all night.
A {MARK_OPEN}horse{MARK_CLOSE} stood in the field.
Explanation: names of animals

Texts:
{{examples}}
Explanation:"""

DETECTION_HEAD = """A feature of a language model is described by an explanation. Answer Yes if the text contains what the explanation describes, and No if it does not.

Text: The train leaves at 7:45 from platform 3.
Explanation: numbers written with digits
Answer: Yes

Text: She walked slowly along the quiet river.
Explanation: numbers written with digits
Answer: No

Text:"""

FUZZING_HEAD = f"""Some words of a text are marked with {MARK_OPEN} {MARK_CLOSE}. Answer Yes if the marked words are what the explanation describes, and No if they are not.

Text: The {MARK_OPEN}dog{MARK_CLOSE} barked at the {MARK_OPEN}cat{MARK_CLOSE} all night.
Explanation: names of animals
Answer: Yes

Text: The dog {MARK_OPEN}barked{MARK_CLOSE} at the cat all {MARK_OPEN}night{MARK_CLOSE}.
Explanation: names of animals
Answer: No

Text:"""

TEXT = " {text}\n"
TAIL = "Explanation: {explanation}\nAnswer:"
"""A judge's prompt is HEAD + TEXT + TAIL: the text before the explanation, so that the
explanation and its controls are read after the same text (`llm.yes_no_grid`)."""


def _one_line(s: str, limit: int = 400) -> str:
    return " ".join(s.split())[:limit]


def explain(llm, examples: list[Context], max_tokens: int) -> str:
    """One line explaining what fires in `examples` (the train texts' contexts)."""
    return explain_many(llm, [examples], max_tokens)[0]


def explain_many(llm, examples: list[list[Context]], max_tokens: int) -> list[str]:
    """explain() of several features' examples, the llm's completions batched."""
    prompts = [EXPLAIN_PROMPT.format(examples="\n".join(_one_line(c.marked()) for c in ex)) for ex in examples]
    outs = llm.complete_many(prompts, max_tokens)
    return [o.replace(MARK_OPEN, "").replace(MARK_CLOSE, "").strip() or "(no explanation)" for o in outs]


def top_tokens_explanation(tokens: list[str]) -> str:
    """The control explanation: only the tokens it fires on most, no description."""
    return "the tokens " + ", ".join(f'"{t}"' for t in tokens) if tokens else "(no tokens)"


def _auroc_and_accuracy(pos: list[float], neg: list[float]) -> dict:
    p, n = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    bal = 0.5 * ((p > 0).mean() + (n <= 0).mean()) if len(p) and len(n) else float("nan")
    return {"auroc": finite_or_none(auroc(p, n)), "balanced_accuracy": finite_or_none(bal), "n_pos": int(len(p)), "n_neg": int(len(n))}


def margins(llm, head: str, texts: list[str], explanations: list[str]) -> np.ndarray:
    """[len(texts), len(explanations)]: the judge's log P(Yes) - log P(No) for each text read
    with each explanation after `head` (DETECTION_HEAD or FUZZING_HEAD)."""
    grid = llm.yes_no_grid(head, [TEXT.format(text=t) for t in texts], [TAIL.format(explanation=e) for e in explanations])
    return np.asarray(grid, dtype=float).reshape(len(texts), len(explanations))


def _grid_scores(llm, head: str, texts: list[str], explanations: list[str], n_pos: int) -> list[dict]:
    m = margins(llm, head, texts, explanations)
    return [_auroc_and_accuracy(m[:n_pos, j].tolist(), m[n_pos:, j].tolist()) for j in range(len(explanations))]


def detection(llm, explanations: list[str], pos: list[Context], neg: list[Context]) -> list[dict]:
    """Delphi's detection score (module docstring) of each explanation on the same contexts:
    [{auroc, balanced_accuracy (threshold 0), n_pos, n_neg}]."""
    return _grid_scores(llm, DETECTION_HEAD, [_one_line(c.plain()) for c in pos + neg], explanations, len(pos))


def random_marks(c: Context, rng: np.random.Generator, frac: float = 0.3) -> set[int]:
    """As many positions as c.marked() marks, drawn among the tokens that do not fire (seeded)."""
    top = c.max_act
    firing = {i for i, a in enumerate(c.acts) if top > 0 and a >= frac * top}
    quiet = [i for i, a in enumerate(c.acts) if a <= 0 and c.tokens[i].strip()]
    k = min(len(firing) or 1, len(quiet))
    return set(int(i) for i in rng.choice(quiet, size=k, replace=False)) if k else set()


def fuzzing(llm, explanations: list[str], pos: list[Context], rng: np.random.Generator) -> list[dict]:
    """Delphi's fuzzing score (module docstring) of each explanation: correctly against randomly
    marked activating contexts, the same marks for every explanation."""
    right = [_one_line(c.marked()) for c in pos]
    wrong = [_one_line(c.marked(random_marks(c, rng))) for c in pos]
    return _grid_scores(llm, FUZZING_HEAD, right + wrong, explanations, len(right))


def memo_embed(embed):
    """embed (list of str -> [n, d]) remembering each string's vector: contexts scored against
    several explanations are embedded once."""
    seen: dict[str, np.ndarray] = {}

    def fn(texts: list[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in seen))
        if new:
            seen.update(zip(new, np.asarray(embed(new), dtype=float)))
        return np.stack([seen[t] for t in texts])

    return fn


def embedding(embed, explanation: str, pos: list[Context], neg: list[Context]) -> dict:
    """Delphi's embedding score: embed(list of str) -> [n, d] unit vectors (MiniLM, mean-pooled;
    wrap it in memo_embed when contexts repeat)."""
    e = np.asarray(embed([explanation] + [_one_line(c.plain()) for c in pos + neg]), dtype=float)
    sim = e[1:] @ e[0]
    return {"auroc": finite_or_none(auroc(sim[: len(pos)], sim[len(pos):])), "n_pos": len(pos), "n_neg": len(neg)}
