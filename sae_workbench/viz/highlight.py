"""Token highlights (as in Scaling Monosemanticity): each token's background
opacity proportional to the feature's activation, the exact value in the hover
title and a `data-act` attribute; orange for texts of the target category, grey
for others. A raw HTML block for the HTML and a raw Typst block (shaded text with
values) for the PDF; no JavaScript, no web fonts."""

from __future__ import annotations

import html

import numpy as np

from .markup import raw_block, typst_str


ORANGE = (255, 140, 0)


GREY = (120, 120, 120)


VALUE_FRACTION = 0.5
"""The PDF prints a token's value only where it is at least this fraction of the text's
largest activation (every firing token is still shaded), so the text stays readable."""


HIGHLIGHT_CSS = """<style>
.tokhl{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.85em;line-height:1.9;
white-space:pre-wrap;border-left:3px solid #ddd;padding:0.2em 0.6em;margin:0.3em 0}
.tokhl .tok{border-radius:2px}
.tokhl .meta{display:block;color:#666;font-family:sans-serif;font-size:0.85em}
</style>"""


def token_pieces(text: str, offsets: list[list[int]], special: list[int], acts: np.ndarray):
    """The text cut into pieces: (None, gap) for characters between tokens
    (spaces, newlines, copied as they are) and (value, token text) for each
    non-special, non-empty token."""
    cursor = 0
    for pos, ((a, b), sp) in enumerate(zip(offsets, special)):
        if sp or b <= a:
            continue
        if a > cursor:
            yield None, text[cursor:a]
        yield float(acts[pos]), text[a:b]
        cursor = b
    if cursor < len(text):
        yield None, text[cursor:]


def _alpha(v: float, max_act: float) -> float:
    return min(1.0, max(0.0, v / max(float(max_act), 1e-9)))


def token_spans(text: str, offsets: list[list[int]], special: list[int], acts: np.ndarray, max_act: float, color=ORANGE) -> str:
    """HTML of one text with each non-special token's span shaded by `acts[position]`.

    Characters between tokens (spaces, newlines) are copied as they are."""
    out = []
    r, g, bl = color
    for v, piece in token_pieces(text, offsets, special, acts):
        if v is None:
            out.append(html.escape(piece))
        else:
            out.append(
                f'<span class="tok" style="background:rgba({r},{g},{bl},{_alpha(v, max_act):.3f})" '
                f'title="{v:.3f}" data-act="{v:.4f}">{html.escape(piece)}</span>'
            )
    return "".join(out)


def highlight_block(record: dict, acts: np.ndarray, max_act: float, target: bool) -> str:
    """One text as a highlighted block with its id, category and peak activation."""
    body = token_spans(record["text"], record["offsets"], record["special"], acts, max_act, ORANGE if target else GREY)
    peak = float(acts.max()) if len(acts) else 0.0
    meta = f'<span class="meta">{html.escape(record["id"])} · {html.escape(record["category"])} · max {peak:.2f}</span>'
    return f'<div class="tokhl">{meta}{body}</div>'


def highlight_block_typst(record: dict, acts: np.ndarray, max_act: float, target: bool) -> str:
    """The same block as `highlight_block`, as Typst code for the PDF: tokens
    as shaded boxes (opacity ∝ activation, orange or grey), the value as a
    subscript only on tokens at or above VALUE_FRACTION of the text's peak
    (stated in the block's header); all text goes in as string literals, so
    nothing in it is read as markup."""
    r, g, b = ORANGE if target else GREY
    peak = float(acts.max()) if len(acts) else 0.0
    parts = []
    for v, piece in token_pieces(record["text"], record["offsets"], record["special"], acts):
        if v is None or v <= 0:
            parts.append(typst_str(piece))
        else:
            value = f"#sub(text(fill: luma(60), size: 0.75em)[{v:.2f}])" if v >= VALUE_FRACTION * peak else ""
            parts.append(
                f"box(fill: rgb({r}, {g}, {b}, {100 * _alpha(v, max_act):.1f}%), outset: (y: 0.25em), radius: 1pt, "
                f"[#{typst_str(piece)}{value}])"
            )
    shown = f" · values on tokens ≥ {VALUE_FRACTION:.0%} of it" if peak > 0 else ""
    meta = typst_str(f'{record["id"]} · {record["category"]} · max {peak:.2f}{shown}')
    body = "\n  ".join(parts)
    return (
        "#block(width: 100%, breakable: true, inset: (left: 0.6em, y: 0.35em), stroke: (left: 2pt + luma(220)), {\n"
        "  set par(justify: false, leading: 0.9em)\n"
        f"  text(size: 0.75em, fill: luma(100), {meta})\n"
        "  linebreak()\n"
        '  set text(font: ("DejaVu Sans Mono",), size: 0.8em)\n'
        f"  {body}\n"
        "})"
    )


def highlight_md(blocks: list[tuple[dict, np.ndarray, float, bool]]) -> str:
    """Markdown for highlighted texts, one (record, acts, max_act, target) per
    text: a raw HTML block (spans with hover values, as `highlight_block`)
    and a raw Typst block (shaded text with values) for the PDF."""
    html_part = HIGHLIGHT_CSS + "".join(highlight_block(*blk) for blk in blocks)
    typst_part = "\n".join(highlight_block_typst(*blk) for blk in blocks)
    return raw_block(html_part, "html") + "\n\n" + raw_block(typst_part, "typst") + "\n"


def specialist_blocks(ft, table, feature: int, category: str, n_own: int = 4, n_other: int = 3, split: str = "heldout") -> list[tuple]:
    """(record, acts, max_act, target) for up to n_own held-out texts of the
    specialist's category (target) and its n_other strongest texts from other
    categories."""
    vals = ft.feature_values(feature)
    per_text_arr = [np.zeros(len(t["tokens"]), dtype=np.float32) for t in table.texts]
    for r in np.flatnonzero(vals > 0):
        per_text_arr[int(table.text_index[r])][int(table.position[r])] = vals[r]
    max_act = max(float(vals.max()) if len(vals) else 0.0, 1e-9)
    own = [i for i, t in enumerate(table.texts) if t["category"] == category and t["split"] == split][:n_own]
    others = [i for i, t in enumerate(table.texts) if t["category"] != category and t["split"] == split]
    others = sorted(others, key=lambda i: (-float(per_text_arr[i].max(initial=0.0)), i))[:n_other]
    return [(table.texts[i], per_text_arr[i], max_act, True) for i in own] + [
        (table.texts[i], per_text_arr[i], max_act, False) for i in others
    ]


def specialist_highlights_md(ft, table, feature: int, category: str, n_own: int = 4, n_other: int = 3, split: str = "heldout") -> str:
    """Highlighted held-out texts for one specialist (`specialist_blocks`: its
    category's in orange, the other categories' strongest in grey), as
    Markdown for both report formats (see `highlight_md`); show with
    display(Markdown(...))."""
    return highlight_md(specialist_blocks(ft, table, feature, category, n_own, n_other, split))
