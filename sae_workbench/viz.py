"""Figures and token highlights for the report, all self-contained HTML.

Token highlights follow Scaling Monosemanticity: each token's background
opacity is proportional to the feature's activation on it (relative to the
feature's maximum), the exact value is in the hover title and in a
`data-act` attribute; orange for texts of the target category, grey for others.
No JavaScript and no web fonts, so they render offline and in any viewer.
"""

from __future__ import annotations

import hashlib
import html

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


def token_spans(text: str, offsets: list[list[int]], special: list[int], acts: np.ndarray, max_act: float, color=ORANGE) -> str:
    """HTML of one text with each non-special token's span shaded by `acts[position]`.

    Characters between tokens (spaces, newlines) are copied as they are."""
    out, cursor = [], 0
    scale = max(float(max_act), 1e-9)
    for pos, ((a, b), sp) in enumerate(zip(offsets, special)):
        if sp or b <= a:
            continue
        if a > cursor:
            out.append(html.escape(text[cursor:a]))
        v = float(acts[pos])
        alpha = min(1.0, max(0.0, v / scale))
        r, g, bl = color
        out.append(
            f'<span class="tok" style="background:rgba({r},{g},{bl},{alpha:.3f})" '
            f'title="{v:.3f}" data-act="{v:.4f}">{html.escape(text[a:b])}</span>'
        )
        cursor = b
    out.append(html.escape(text[cursor:]))
    return "".join(out)


def highlight_block(record: dict, acts: np.ndarray, max_act: float, target: bool) -> str:
    """One text as a highlighted block with its id, category and peak activation."""
    body = token_spans(record["text"], record["offsets"], record["special"], acts, max_act, ORANGE if target else GREY)
    peak = float(acts.max()) if len(acts) else 0.0
    meta = f'<span class="meta">{html.escape(record["id"])} · {html.escape(record["category"])} · max {peak:.2f}</span>'
    return f'<div class="tokhl">{meta}{body}</div>'


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


def specialist_highlights(ft, table, feature: int, category: str, n_own: int = 4, n_other: int = 3, split: str = "heldout") -> str:
    """Highlighted held-out texts for one specialist: up to n_own of its category
    (orange) and its n_other strongest texts from other categories (grey)."""
    vals = ft.feature_values(feature)
    per_text_arr = [np.zeros(len(t["tokens"]), dtype=np.float32) for t in table.texts]
    for r in np.flatnonzero(vals > 0):
        per_text_arr[int(table.text_index[r])][int(table.position[r])] = vals[r]
    max_act = max(float(vals.max()) if len(vals) else 0.0, 1e-9)
    own = [i for i, t in enumerate(table.texts) if t["category"] == category and t["split"] == split][:n_own]
    others = [i for i, t in enumerate(table.texts) if t["category"] != category and t["split"] == split]
    others = sorted(others, key=lambda i: (-float(per_text_arr[i].max(initial=0.0)), i))[:n_other]
    blocks = [highlight_block(table.texts[i], per_text_arr[i], max_act, True) for i in own]
    blocks += [highlight_block(table.texts[i], per_text_arr[i], max_act, False) for i in others]
    return HIGHLIGHT_CSS + "".join(blocks)
