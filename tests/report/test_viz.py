"""viz/: static PNG figures (valid, deterministic, log axes and error bars) and
Typst token highlights that survive hostile text, on real typst."""

import json

import numpy as np
import pytest
import typst

from sae_workbench import viz

from helpers import HOSTILE, _figures


def test_static_png_is_valid_and_deterministic():
    for fig in _figures():
        a, b = viz.static_png(fig), viz.static_png(fig)
        assert a == b
        assert a[:8] == b"\x89PNG\r\n\x1a\n" and a[12:16] == b"IHDR" and a.endswith(b"IEND\xaeB`\x82")
        width, height = int.from_bytes(a[16:20], "big"), int.from_bytes(a[20:24], "big")
        assert width == 1050 and 300 < height < 1000
        assert b"Software" not in a and b"tIME" not in a and b"matplotlib" not in a.lower()
    md = viz.figure_md(_figures()[0], "x", "cap")
    assert md == viz.figure_md(_figures()[0], "x", "cap")
    assert md.startswith("::: {#fig-x}") and md.rstrip().endswith("cap\n\n:::")


@pytest.mark.parametrize(
    "text",
    [HOSTILE, "\\", '"', "]", "[", "#", "$", "`", "```", "@", "<", ">", "//", "/*", "*/", "\t\r\n", "\u0000\u001f\u007f", "\u2028", "é ü 中 🙂"],
)
def test_typst_escaping_survives_hostile_tokens(text):
    rec = {"id": 'id"#[', "category": "cat]$", "text": "A " + text + " Z", "offsets": [[0, 1], [2, 2 + len(text)], [3 + len(text), 4 + len(text)]], "special": [0, 0, 0]}
    src = viz.highlight_block_typst(rec, np.array([0.0, 1.5, 0.2], dtype=np.float32), 1.5, True)
    pdf = typst.compile(src.encode("utf-8"), format="pdf", ignore_system_fonts=True)
    assert pdf[:5] == b"%PDF-"
    assert viz.typst_str(text).startswith('"') and "\n" not in viz.typst_str(text)
    assert json.loads(typst.Compiler().eval(viz.typst_str(text), format="json")) == text  # the literal is the text exactly


def test_pdf_highlight_prints_values_only_near_the_peak():
    """Every firing token is shaded; only those at >= VALUE_FRACTION of the text's peak carry their value."""
    words = ["tok%d" % i for i in range(6)]
    text = " ".join(words)
    offsets, pos = [], 0
    for w in words:
        offsets.append([pos, pos + len(w)])
        pos += len(w) + 1
    rec = {"id": "t1", "category": "python", "text": text, "offsets": offsets, "special": [0] * 6}
    acts = np.array([0.0, 0.01, 0.2, 0.49, 0.5, 1.0], dtype=np.float32)
    src = viz.highlight_block_typst(rec, acts, 1.0, True)
    assert src.count("box(fill") == 5  # every token the feature fires on is shaded
    assert [v for v in ("0.01", "0.20", "0.49", "0.50", "1.00") if f"[{v}]" in src] == ["0.50", "1.00"]
    assert f"values on tokens ≥ {viz.highlight.VALUE_FRACTION:.0%} of it" in src
    assert typst.compile(src.encode("utf-8"), format="pdf", ignore_system_fonts=True)[:5] == b"%PDF-"


def test_static_png_honours_log_axes_and_error_bars():
    import plotly.graph_objects as go

    def png(**kw):
        f = go.Figure()
        f.add_scatter(x=["a", "b"], y=[3, 50], **kw.pop("trace", {}))
        f.update_layout(**kw)
        return viz.static_png(f)

    plain = png()
    assert png(yaxis_type="log") != plain
    assert png(trace={"error_y": dict(type="data", symmetric=False, array=[1, 0], arrayminus=[1, 2])}) != plain
