"""Plotly figures for the report: built here (bar, heatmap, lines), shown in the
HTML as interactive divs (plotly.js inline once per notebook) and in the PDF as
a static PNG that matplotlib draws from the same figure data (`figure_md`)."""

from __future__ import annotations

import base64
import hashlib
import io
import re

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from .markup import _caption, fig_id, raw_block


PLOTLY_MARKER = "<!-- plotly.js (inline, once per notebook) -->"


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
