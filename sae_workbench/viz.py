"""Figures and token highlights for the report, for its HTML and its PDF.

Token highlights follow Scaling Monosemanticity: each token's background
opacity is proportional to the feature's activation on it (relative to the
feature's maximum), the exact value is in the hover title and in a
`data-act` attribute; orange for texts of the target category, grey for others.
No JavaScript and no web fonts, so they render offline and in any viewer.

Notebook cells show figures and highlights as Markdown that Quarto and the
pandoc fallback (sae_workbench.render) both understand:

    display(Markdown(viz.figure_md(fig, "score-" + hook, "Held-out score per category.")))
    display(Markdown(f"As {viz.ref('score-' + hook)} shows, ..."))
    display(Markdown(viz.specialist_highlights_md(ft, table, feature, category)))

`figure_md` gives a cross-referenceable figure div (`::: {#fig-...}`, caption
as its last paragraph) holding the interactive plotly figure for HTML and a
static PNG drawn with matplotlib from the same figure data for every other
format (the PDF); the highlights carry a raw HTML block and a raw Typst block
that draws the same tokens as shaded text with their values.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import re

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

ORANGE = (255, 140, 0)
GREY = (120, 120, 120)
PLOTLY_MARKER = "<!-- plotly.js (inline, once per notebook) -->"

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


def highlight_block_typst(record: dict, acts: np.ndarray, max_act: float, target: bool) -> str:
    """The same block as `highlight_block`, as Typst code for the PDF: tokens
    as shaded boxes (opacity ∝ activation, orange or grey) with the value as a
    subscript on every token the feature fires on; all text goes in as string
    literals, so nothing in it is read as markup."""
    r, g, b = ORANGE if target else GREY
    peak = float(acts.max()) if len(acts) else 0.0
    parts = []
    for v, piece in token_pieces(record["text"], record["offsets"], record["special"], acts):
        if v is None or v <= 0:
            parts.append(typst_str(piece))
        else:
            parts.append(
                f"box(fill: rgb({r}, {g}, {b}, {100 * _alpha(v, max_act):.1f}%), outset: (y: 0.25em), radius: 1pt, "
                f"[#{typst_str(piece)}#sub(text(fill: luma(60), size: 0.75em)[{v:.2f}])])"
            )
    meta = typst_str(f'{record["id"]} · {record["category"]} · max {peak:.2f}')
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


def code_fence(content: str, char: str = "`") -> str:
    """A code fence longer than any run of `char` inside `content`."""
    runs = re.findall(re.escape(char) + "+", content)
    return char * max(3, 1 + max((len(r) for r in runs), default=0))


def raw_block(content: str, fmt: str) -> str:
    """A pandoc/Quarto raw block: passed through for `fmt`, dropped for every other format."""
    fence = code_fence(content)
    return f"{fence}{{={fmt}}}\n{content}\n{fence}"


def highlight_md(blocks: list[tuple[dict, np.ndarray, float, bool]]) -> str:
    """Markdown for highlighted texts, one (record, acts, max_act, target) per
    text: a raw HTML block (spans with hover values, as `highlight_block`)
    and a raw Typst block (shaded text with values) for the PDF."""
    html_part = HIGHLIGHT_CSS + "".join(highlight_block(*blk) for blk in blocks)
    typst_part = "\n".join(highlight_block_typst(*blk) for blk in blocks)
    return raw_block(html_part, "html") + "\n\n" + raw_block(typst_part, "typst") + "\n"


def html_only(html_text: str) -> str:
    """Markdown that carries `html_text` to HTML output only (a raw HTML block
    inside Quarto's conditional div; the pandoc fallback's filter reads it too)."""
    return '::: {.content-visible when-format="html"}\n\n' + raw_block(html_text, "html") + "\n\n:::\n"


def plotly_js_once() -> str:
    """The plotly.js bundle inline, to emit once at the top of a notebook so its
    figures work offline (the HTML fallback keeps only the first copy)."""
    return f'{PLOTLY_MARKER}<script type="text/javascript">{get_plotlyjs()}</script>'


def figure_html(fig: go.Figure) -> str:
    """A plotly figure as an HTML div that relies on plotly.js already on the page.

    The div id derives from the figure's content (plotly's default is a random
    UUID), so re-running a notebook gives the same bytes."""
    div_id = "fig-" + hashlib.sha1(fig.to_json().encode()).hexdigest()[:16]
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, config={"displaylogo": False})


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


def _plotly_text(t) -> str:
    if t is None:
        return ""
    txt = getattr(t, "text", t)
    return re.sub(r"<br\s*/?>", "\n", str(txt or ""))


def _colormap(colorscale):
    from matplotlib.colors import LinearSegmentedColormap, to_rgb

    def rgb(c):
        m = re.match(r"rgba?\(([^)]*)\)", c.strip())
        if m:
            return tuple(float(v) / 255 for v in m.group(1).split(",")[:3])
        return to_rgb(c)

    if not colorscale:
        return "viridis"
    return LinearSegmentedColormap.from_list("plotly", [(float(p), rgb(c)) for p, c in colorscale])


def _axis_positions(values, categories: dict) -> list[float]:
    """x or y values as numbers: numeric values as they are, other values as
    positions in order of first appearance (plotly's categorical axis)."""
    vals = list(values)
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in vals):
        return [float(v) for v in vals]
    for v in vals:
        categories.setdefault(str(v), len(categories))
    return [float(categories[str(v)]) for v in vals]


def static_png(fig: go.Figure, width_in: float = 7.0, dpi: int = 150) -> bytes:
    """The plotly figure redrawn with matplotlib as PNG bytes, for the PDF
    (no browser, no kaleido). Draws what `bar`, `heatmap` and `lines` build:
    bar traces, heatmaps (with a colour bar and the values in the cells when
    they are few), line/marker traces on categorical or numeric x; title,
    axis titles and legend. Same figure -> same bytes (no timestamps, no
    version strings in the PNG)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lay = fig.layout
    height_px = lay.height or 400
    style = {k: v for k, v in matplotlib.rcParamsDefault.items() if k != "backend"}  # not the user's matplotlibrc
    style.update({"font.size": 9, "axes.titlesize": 11})
    with matplotlib.rc_context(style):
        mfig = Figure(figsize=(width_in, max(2.5, width_in * height_px / 700)), dpi=dpi, layout="constrained")
        FigureCanvasAgg(mfig)
        ax = mfig.add_subplot()
        xcats: dict = {}
        ycats: dict = {}
        legend = False
        bars = [t for t in fig.data if t.type == "bar"]
        for t in fig.data:
            if t.type == "bar":
                horizontal = t.orientation == "h"
                cats, vals = (t.y, t.x) if horizontal else (t.x, t.y)
                pos = _axis_positions(cats if cats is not None else range(len(vals)), ycats if horizontal else xcats)
                k, n = bars.index(t), len(bars)
                w = 0.8 / n
                pos = [p - 0.4 + w * (k + 0.5) for p in pos] if n > 1 else pos
                vals = [np.nan if v is None else float(v) for v in vals]
                (ax.barh if horizontal else ax.bar)(pos, vals, w, label=t.name or None, color=f"C{k}")
                legend = legend or (n > 1 and bool(t.name))
            elif t.type == "heatmap":
                z = np.array([[np.nan if v is None else float(v) for v in row] for row in t.z], dtype=float)
                xs = list(t.x) if t.x is not None else list(range(z.shape[1]))
                ys = list(t.y) if t.y is not None else list(range(z.shape[0]))
                im = ax.imshow(z, cmap=_colormap(t.colorscale), aspect="auto", origin="lower", interpolation="nearest")
                ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30 if len(xs) > 4 else 0, ha="right" if len(xs) > 4 else "center")
                ax.set_yticks(range(len(ys)), [str(v) for v in ys])
                mfig.colorbar(im, ax=ax)
                if z.size <= 150:
                    lo, hi = np.nanmin(z), np.nanmax(z)
                    for (i, j), v in np.ndenumerate(z):
                        if np.isfinite(v):
                            dark = hi > lo and (v - lo) / (hi - lo) > 0.6
                            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
            elif t.type in ("scatter", "scattergl"):
                ys = [np.nan if v is None else float(v) for v in t.y]
                xs = _axis_positions(t.x if t.x is not None else range(len(ys)), xcats)
                mode = t.mode or "lines+markers"
                style = ("-" if "lines" in mode else "") + ("o" if "markers" in mode else "")
                line = ax.plot(xs, ys, style or "-", markersize=4, label=t.name or None)[0]
                err = t.error_y
                if err is not None and err.array is not None:  # asymmetric or symmetric data error bars
                    up = [float(v) for v in err.array]
                    down = [float(v) for v in (err.arrayminus if err.arrayminus is not None and err.symmetric is False else err.array)]
                    ax.errorbar(xs, ys, yerr=[down, up], fmt="none", ecolor=line.get_color(), capsize=3)
                legend = legend or bool(t.name)
            else:
                raise ValueError(f"static_png cannot draw plotly trace type {t.type!r}")
        if xcats:
            ax.set_xticks(list(xcats.values()), list(xcats), rotation=30 if len(xcats) > 4 else 0, ha="right" if len(xcats) > 4 else "center")
        if ycats:
            ax.set_yticks(list(ycats.values()), list(ycats))
        if lay.yaxis.type == "log":
            ax.set_yscale("log")
        if lay.xaxis.type == "log":
            ax.set_xscale("log")
        ax.set_title(_plotly_text(lay.title))
        ax.set_xlabel(_plotly_text(lay.xaxis.title))
        ax.set_ylabel(_plotly_text(lay.yaxis.title))
        if legend:
            ax.legend(fontsize=7, loc="best")
        if not any(t.type == "heatmap" for t in fig.data):
            ax.grid(axis="y", alpha=0.3)
        buf = io.BytesIO()
        mfig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def figure_md(fig: go.Figure, label: str, caption: str) -> str:
    """Markdown for a numbered, cross-referenceable figure (Quarto's div syntax,
    which the pandoc fallback's filter reads too): the interactive plotly div
    for HTML, a static PNG drawn by matplotlib for every other format (the
    PDF), the caption as the div's last paragraph. Reference it with
    `ref(label)`; labels must be unique across the report."""
    png = base64.b64encode(static_png(fig)).decode("ascii")
    return "\n\n".join(
        [
            f"::: {{#{fig_id(label)}}}",
            '::: {.content-visible when-format="html"}',
            raw_block(figure_html(fig), "html"),
            ":::",
            '::: {.content-visible unless-format="html"}',
            f"![](data:image/png;base64,{png}){{width=100%}}",
            ":::",
            _caption(caption),
            ":::",
        ]
    ) + "\n"


def table_md(table: str, label: str, caption: str) -> str:
    """A Markdown (pipe) table as a numbered, cross-referenceable table with a
    caption; reference it with `ref(label, "tbl")`."""
    return f"::: {{#{tbl_id(label)}}}\n\n{table.strip()}\n\n{_caption(caption)}\n\n:::\n"


def bar(labels: list[str], values: list[float], title: str, xlabel: str, ylabel: str) -> go.Figure:
    fig = go.Figure(go.Bar(x=labels, y=values))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=360, margin=dict(l=50, r=20, t=50, b=80))
    return fig


def heatmap(z: list[list[float]], x: list[str], y: list[str], title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, colorscale="Oranges"))
    fig.update_layout(title=title, height=420, margin=dict(l=110, r=20, t=50, b=80))
    return fig


def lines(x: list[float], series: dict[str, list[float]], title: str, xlabel: str, ylabel: str) -> go.Figure:
    fig = go.Figure([go.Scatter(x=x, y=y, mode="lines+markers", name=k) for k, y in series.items()])
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=400, margin=dict(l=50, r=20, t=50, b=50))
    return fig


def neuronpedia_url(neuronpedia_id: str | None, feature: int) -> str | None:
    """Link to a feature's Neuronpedia page, e.g. gpt2-small/8-res-jb -> .../gpt2-small/8-res-jb/123."""
    if not neuronpedia_id:
        return None
    return f"https://www.neuronpedia.org/{neuronpedia_id}/{feature}"


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
