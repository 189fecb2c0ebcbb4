"""Text for the report's two outputs: Markdown escaping, Typst strings, raw
blocks that reach one format only, cross-reference ids and captions, table
Markdown, Neuronpedia links."""

from __future__ import annotations

import re


_MD_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def md_escape(text: str) -> str:
    """Data text (token contexts, generations) as literal Markdown: every ASCII
    punctuation character backslash-escaped (so `$x$`, `\\begin{..}`, `**`,
    `<tag>`, `|` stay text in pandoc and Quarto), newlines as spaces."""
    return _MD_PUNCT.sub(r"\\\1", text.replace("\r", " ").replace("\n", " "))


def typst_str(s: str) -> str:
    """A Typst string literal holding `s` exactly: whatever the text holds
    (#, $, *, _, [, ], @, <, backticks, backslashes, quotes, newlines), it is
    data, never markup."""
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029":
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def code_fence(content: str, char: str = "`") -> str:
    """A code fence longer than any run of `char` inside `content`."""
    runs = re.findall(re.escape(char) + "+", content)
    return char * max(3, 1 + max((len(r) for r in runs), default=0))


def raw_block(content: str, fmt: str) -> str:
    """A pandoc/Quarto raw block: passed through for `fmt`, dropped for every other format."""
    fence = code_fence(content)
    return f"{fence}{{={fmt}}}\n{content}\n{fence}"


def html_only(html_text: str) -> str:
    """Markdown that carries `html_text` to HTML output only (a raw HTML block
    inside Quarto's conditional div; the pandoc fallback's filter reads it too)."""
    return '::: {.content-visible when-format="html"}\n\n' + raw_block(html_text, "html") + "\n\n:::\n"


def _slug(label: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", str(label).lower()).strip("-")
    if not s:
        raise ValueError(f"empty figure/table label: {label!r}")
    return s


def fig_id(label: str) -> str:
    """The cross-reference id of a figure label: "fig-" + the label in lower
    case with every run of other characters than a-z, 0-9 as one hyphen
    (hook names hold dots and underscores, which Quarto and Typst labels avoid)."""
    s = _slug(label)
    return s if s.startswith("fig-") else "fig-" + s


def tbl_id(label: str) -> str:
    """The cross-reference id of a table label ("tbl-" + slug, as `fig_id`)."""
    s = _slug(label)
    return s if s.startswith("tbl-") else "tbl-" + s


def ref(label: str, kind: str = "fig") -> str:
    """Markdown that cross-references a figure (kind "fig") or table ("tbl")
    made with the same label: "@fig-..." renders as "Figure N", linked."""
    return "@" + (fig_id(label) if kind == "fig" else tbl_id(label))


def _caption(caption: str) -> str:
    """One paragraph (Quarto takes a float's last paragraph as its caption)."""
    cap = " ".join(str(caption).split())
    if not cap:
        raise ValueError("a figure or table needs a caption")
    return cap


def table_md(table: str, label: str, caption: str) -> str:
    """A Markdown (pipe) table as a numbered, cross-referenceable table with a
    caption; reference it with `ref(label, "tbl")`."""
    return f"::: {{#{tbl_id(label)}}}\n\n{table.strip()}\n\n{_caption(caption)}\n\n:::\n"


def neuronpedia_url(neuronpedia_id: str | None, feature: int) -> str | None:
    """Link to a feature's Neuronpedia page, e.g. gpt2-small/8-res-jb -> .../gpt2-small/8-res-jb/123."""
    if not neuronpedia_id:
        return None
    return f"https://www.neuronpedia.org/{neuronpedia_id}/{feature}"
