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

The package, by job: `markup` (escaping, raw blocks, cross-reference ids,
captions, tables, links), `figures` (plotly figures and their static PDF
versions), `highlight` (token highlights). Every public name is re-exported
here, so notebooks write `viz.lines(...)`, `viz.figure_md(...)`.
"""

import plotly.graph_objects as go  # noqa: F401  (viz.go in notebooks)

from .figures import PLOTLY_MARKER, bar, figure_html, figure_md, heatmap, lines, plotly_js_once, static_png  # noqa: F401
from .highlight import (  # noqa: F401
    GREY, HIGHLIGHT_CSS, ORANGE, highlight_block, highlight_block_typst, highlight_md, specialist_blocks,
    specialist_highlights_md, token_pieces, token_spans,
)
from .markup import code_fence, fig_id, html_only, md_escape, neuronpedia_url, raw_block, ref, table_md, tbl_id, typst_str  # noqa: F401
