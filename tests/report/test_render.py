"""The report renderer's pandoc fallback, on real pandoc, real typst and pypdf:
small executed notebooks built here (outputs set directly, no kernel) become
report/_output/index.html and report/_output/report.pdf."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pypdf
import pytest
import typst

from sae_workbench import render, viz

from helpers import HOSTILE, ROOT as REPO, _figures

TYPST_SAFE = REPO / "report" / "typst_safe.lua"
MAGIC = "4242.17"  # a number that must reach both outputs


def _record(text: str, rid: str = "t-1", category: str = "python") -> dict:
    """A token-table record: one token per whitespace-separated word, a special token first."""
    offsets = [[0, 0]] + [[m.start(), m.end()] for m in re.finditer(r"\S+", text)]
    return {"id": rid, "category": category, "text": text, "offsets": offsets, "special": [1] + [0] * (len(offsets) - 1)}


def _md(s: str):
    return nbformat.v4.new_output("display_data", data={"text/markdown": s})


def _html(s: str):
    return nbformat.v4.new_output("display_data", data={"text/html": s})


def _notebook(outputs: list, markdown: str | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("display(...)")
    cell.outputs = outputs
    cells = ([nbformat.v4.new_markdown_cell(markdown)] if markdown else []) + [cell]
    return nbformat.v4.new_notebook(cells=cells)


def _build_report(root: Path) -> Path:
    report = root / "report"
    (report / "executed").mkdir(parents=True)
    for f in ("_quarto.yml", "typst_safe.lua"):  # the project's real book config and its filter
        shutil.copy(REPO / "report" / f, report / f)
    bar, heat, lines = _figures()
    rec = _record(HOSTILE)
    acts = np.linspace(0, 3, len(rec["offsets"])).astype(np.float32)
    code = _record("def tick(self, step=1):\n    self.value += step\n    return self.value", "python-03")
    code_acts = np.array([0, 0, 2.5, 0, 0, 1.0, 0, 0, 0, 0, 0.5], dtype=np.float32)[: len(code["offsets"])]
    filler = "\n\n".join(f"Paragraph {i}: the specialists keep their held-out scores across layers. " * 12 for i in range(14))
    summary = _notebook(
        [
            _md(viz.html_only(viz.PLOTLY_MARKER + "<script>/* plotly.js stand-in */</script>")),
            _md("# Summary\n\nAs " + viz.ref("score-blocks.1.hook_resid_pre") + " shows, and [-@fig-depth], see also " + viz.ref("tab", "tbl") + "."),
            _md(viz.figure_md(bar, "score-blocks.1.hook_resid_pre", "Held-out specialist score per *category*.")),
            _md(viz.figure_md(lines, "depth", "Score by depth.")),
            nbformat.v4.new_output("stream", name="stdout", text=f"explained variance {MAGIC}\n"),
            nbformat.v4.new_output("stream", name="stderr", text="a progress bar\n"),
            _md(viz.table_md("| hook | EV |\n|:--|--:|\n| `blocks.1` | 0.9 |", "tab", "Explained variance per hook.")),
            _md(filler),
        ],
        markdown="Intro cell, before the outputs.",
    )
    hook = _notebook(
        [
            _md(viz.html_only(viz.PLOTLY_MARKER + "<script>/* plotly.js stand-in */</script>")),
            _md("# Hook `blocks.1.hook_resid_pre`\n\nThe matrix is " + viz.ref("matrix-blocks.1") + "."),
            _md(viz.figure_md(heat, "matrix-blocks.1", "Score of each specialist in each category.")),
            _html('<div class="raw-html-only">raw html output</div>'),
            _md(viz.highlight_md([(rec, acts, 3.0, True), (code, code_acts, 3.0, True), (rec, acts, 3.0, False)])),
        ]
    )
    nbformat.write(summary, report / "executed" / "abstract.ipynb")
    nbformat.write(hook, report / "executed" / "hook-blocks.1.hook_resid_pre.ipynb")
    return report


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    report = _build_report(tmp_path_factory.mktemp("book"))
    out = render.render(report, force_fallback=True)
    return report, out


def _pdf_text(path: Path) -> tuple[int, str]:
    reader = pypdf.PdfReader(path)
    text = "\n".join(p.extract_text() for p in reader.pages)
    return len(reader.pages), re.sub(r"\s+", " ", text)


def test_outputs_and_chapter_list(rendered):
    report, out = rendered
    assert out.html == report / "_output" / "index.html" and out.pdf == report / "_output" / "report.pdf"
    assert out.html.exists() and out.pdf.exists()
    assert not [p for p in out.html.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    chapters = (report / "_pipeline.yml").read_text()
    assert chapters.index("executed/abstract.ipynb") < chapters.index("executed/hook-blocks.1.hook_resid_pre.ipynb")
    title, files = render.book_chapters(report)
    assert title.startswith("What is the model thinking about")
    assert [f.name for f in files] == ["abstract.ipynb", "hook-blocks.1.hook_resid_pre.ipynb"]


def test_html_figures_captions_refs_and_highlights(rendered):
    _, out = rendered
    html = out.html.read_text()
    assert html.count("Plotly.newPlot") == 3 and 'class="plotly-graph-div"' in html
    assert html.count(viz.PLOTLY_MARKER) == 1  # bundle once over both notebooks
    caps = re.findall(r"<strong>(Figure|Table)(?:\xa0|&nbsp;| )(\d+):</strong>", html)
    assert caps == [("Figure", "1"), ("Figure", "2"), ("Table", "1"), ("Figure", "3")]
    assert re.search(r'<figure id="fig-score-blocks-1-hook-resid-pre"', html)
    assert re.search(r'<a href="#fig-score-blocks-1-hook-resid-pre"\s+class="quarto-xref">Figure(\xa0|&nbsp;| )1</a>', html)
    assert re.search(r'<a href="#fig-depth"\s+class="quarto-xref">2</a>', html)
    assert re.search(r'<a href="#tbl-tab"\s+class="quarto-xref">Table(\xa0|&nbsp;| )1</a>', html)
    assert re.search(r'<a href="#fig-matrix-blocks-1"\s+class="quarto-xref">Figure(\xa0|&nbsp;| )3</a>', html)
    assert 'class="report-caption"' in html and "@fig-" not in html.split("</nav>", 1)[1].split("<style>")[0]
    spans = re.findall(r'<span class="tok" style="background:rgba\([^"]+\)" title="([0-9.]+)" data-act="([0-9.]+)">', html)
    assert len(spans) > 20 and any(float(v) > 0 for _, v in spans)
    assert "&lt;/b&gt;" in html  # hostile token escaped in HTML
    assert "raw html output" in html and MAGIC in html
    assert "#box(" not in html and "box(fill:" not in html and "#figure(" not in html  # no Typst in HTML
    assert "data:image/png" not in html  # static images are for the PDF only
    assert "a progress bar" not in html and "display(...)" not in html


def test_pdf_pages_numbers_captions_and_no_html(rendered):
    _, out = rendered
    assert out.pdf.read_bytes()[:5] == b"%PDF-"
    pages, text = _pdf_text(out.pdf)
    assert pages > 1
    assert MAGIC in text
    assert "Figure 1: Held-out specialist score per category." in text
    assert "Figure 3: Score of each specialist" in text and "Table 1: Explained variance per hook." in text
    assert "As Figure 1 shows, and 2, see also Table 1." in text
    assert "The matrix is Figure 3." in text
    for tag in ("<span", "<div", "<script", "<style", "raw html output", "plotly", "Plotly"):
        assert tag not in text
    assert "#set" in text and "a#b" in text and "$5" in text and "@g" in text and "python-03" in text
    assert "box(fill" not in text and "typst" not in text.lower()


def test_html_and_pdf_are_byte_identical_across_renders(rendered, tmp_path):
    _, out = rendered
    report = _build_report(tmp_path)
    again = render.render(report, force_fallback=True)
    assert again.html.read_bytes() == out.html.read_bytes()
    assert again.pdf.read_bytes() == out.pdf.read_bytes()


def test_error_output_gives_value_error(tmp_path):
    report = tmp_path / "report"
    (report / "executed").mkdir(parents=True)
    shutil.copy(REPO / "report" / "_quarto.yml", report / "_quarto.yml")
    nb = _notebook([nbformat.v4.new_output("error", ename="KeyError", evalue="'x'", traceback=[])])
    nbformat.write(nb, report / "executed" / "abstract.ipynb")
    with pytest.raises(ValueError, match="holds an error"):
        render.render(report, force_fallback=True)
    r = subprocess.run([sys.executable, "-m", "sae_workbench.render", str(report), "--fallback"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "KeyError" in r.stderr
    assert not (report / "_output" / "index.html").exists() and not (report / "_output" / "report.pdf").exists()


def test_missing_notebooks_give_value_error(tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    with pytest.raises(ValueError, match="no executed notebooks"):
        render.render(report, force_fallback=True)


def test_chapter_order_and_quarto_config(tmp_path):
    report = tmp_path / "report"
    (report / "executed").mkdir(parents=True)
    for name in ["hook-blocks.10.x.ipynb", "hook-blocks.2.x.ipynb", "abstract.ipynb"]:
        nbformat.write(_notebook([_md("text")]), report / "executed" / name)
    (report / "index.qmd").write_text("---\ntitle: Preface\n---\n\nWhat this is.\n")
    shutil.copy(REPO / "report" / "_quarto.yml", report / "_quarto.yml")
    assert render.write_chapters(report) == [
        "index.qmd",
        "executed/abstract.ipynb",
        "executed/hook-blocks.2.x.ipynb",
        "executed/hook-blocks.10.x.ipynb",
    ]
    cfg = render.project_config(report)
    assert cfg["project"]["type"] == "book" and cfg["book"]["output-file"] == "report"
    assert cfg["book"]["chapters"][0] == "index.qmd" and "metadata-files" not in cfg
    assert cfg["execute"]["enabled"] is False and {"html", "typst"} <= set(cfg["format"])
    md = render.book_markdown(render.book_chapters(report)[1], html=True)
    assert md.startswith("# Preface\n\nWhat this is.")


def _filter(markdown: str, to: str) -> str:
    import pypandoc

    r = subprocess.run(
        [pypandoc.get_pandoc_path(), "-f", "markdown", "-t", to, f"--lua-filter={render.FILTER}", f"--lua-filter={TYPST_SAFE}"],
        input=markdown, capture_output=True, text=True, check=True,
    )
    return r.stdout


def test_filter_conditional_content():
    md = (
        '::: {.content-visible when-format="html"}\nHTMLONLY\n:::\n\n'
        '::: {.content-visible unless-format="html"}\nNOTHTML\n:::\n\n'
        '::: {.content-hidden when-format="typst"}\nNOTTYPST\n:::\n\n'
        '::: {.content-hidden unless-format="typst"}\nTYPSTONLY\n:::\n\n'
        'Inline [in html]{.content-visible when-format="html"}[in pdf]{.content-visible when-format="typst"}.\n'
    )
    html, typ = _filter(md, "html5"), _filter(md, "typst")
    assert "HTMLONLY" in html and "NOTTYPST" in html and "in html" in html
    assert "NOTHTML" not in html and "TYPSTONLY" not in html and "in pdf" not in html
    assert "NOTHTML" in typ and "TYPSTONLY" in typ and "in pdf" in typ
    assert "HTMLONLY" not in typ and "NOTTYPST" not in typ and "in html" not in typ


def test_filter_unknown_and_duplicate_refs_still_compile(tmp_path):
    md = "::: {#fig-a}\n\nA\n\nCap a.\n\n:::\n\n::: {#fig-a}\n\nB\n\nCap b.\n\n:::\n\nSee @fig-a, @fig-missing and mail @someone.\n"
    typ = _filter(md, "typst")
    assert "?\\@fig-missing" in typ and "\\@someone" in typ and typ.count("<fig-a>") == 2  # one label, one ref
    pdf = typst.compile(typ.encode(), format="pdf", ignore_system_fonts=True)
    path = tmp_path / "x.pdf"
    path.write_bytes(pdf)
    _, text = _pdf_text(path)
    assert "Figure 1: Cap a." in text and "See Figure 1, ?@fig-missing and mail @someone." in text


def test_text_right_after_bold_does_not_continue_the_typst_call(tmp_path):
    # pandoc writes **www** as #strong[www]; ".dl" right after it would be a field access
    md = "A card: **www**.dl.example.org, **f**(x) and *g*[0] end.\n"
    typ = _filter(md, "typst")
    path = tmp_path / "x.pdf"
    path.write_bytes(typst.compile(typ.encode(), format="pdf", ignore_system_fonts=True))
    _, text = _pdf_text(path)
    assert "www.dl.example.org, f(x) and g[0] end." in text


def test_table_cells_starting_with_markup_stay_text(tmp_path):
    md = "| a | b |\n|:--|:--|\n| = None finally | - x |\n| + y | / z |\n"
    typ = _filter(md, "typst")
    path = tmp_path / "x.pdf"
    path.write_bytes(typst.compile(typ.encode(), format="pdf", ignore_system_fonts=True))
    _, text = _pdf_text(path)
    assert "= None finally" in text and "- x" in text and "+ y" in text and "/ z" in text


@pytest.mark.parametrize("to", ["html5", "typst"])
def test_md_escape_keeps_data_text_literal(to, tmp_path):
    text = r"$\sqrt{2}$ **x** <b>|c|</b> \begin{pmatrix} a \\ b \end{pmatrix} _y_ #h [l](u) `c` ~s~ ^t^ @cite 1. 2)"
    md = "| v | context |\n|--:|:--|\n| 1 | " + viz.md_escape(text) + " |\n\nAfter.\n\n## Next heading\n"
    out = _filter(md, to)
    if to == "html5":
        import html as _html

        plain = re.sub(r"\s+", " ", _html.unescape(re.sub(r"<[^>]+>", "", out)))
        assert text in plain and "<h2" in out and "math" not in out
    else:
        path = tmp_path / "x.pdf"
        path.write_bytes(typst.compile(out.encode(), format="pdf", ignore_system_fonts=True))
        _, pdf_text = _pdf_text(path)
        assert "Next heading" in pdf_text and "pmatrix" in pdf_text and "sqrt" in pdf_text


def test_quarto_table_captions_are_numbered_and_referenced(tmp_path):
    md = "| a |\n|--|\n| 1 |\n\n: Cap one {#tbl-x}\n\n::: {#fig-y}\nimg\n\nFig cap\n:::\n\n| b |\n|--|\n| 2 |\n\n: Cap two {#tbl-z}\n\nSee @tbl-x, @tbl-z and @fig-y.\n"
    html = _filter(md, "html5")
    assert re.findall(r"<strong>Table\xa0(\d):</strong> Cap (\w+)", html) == [("1", "one"), ("2", "two")]
    assert re.sub(r"[ \n]+", " ", html).count('class="quarto-xref">Table\xa02</a>') == 1
    path = tmp_path / "x.pdf"
    path.write_bytes(typst.compile(_filter(md, "typst").encode(), format="pdf", ignore_system_fonts=True))
    _, text = _pdf_text(path)
    assert "Table 1: Cap one" in text and "Table 2: Cap two" in text and "See Table 1, Table 2 and Figure 1." in text


def test_long_pipe_table_columns_are_sized_by_content(tmp_path):
    # rows over 72 characters: pandoc would give each column the share of its separator's dashes
    row = "| `blocks.10.hook_resid_post_long_name` | 0.912 | " + "a long note " * 6 + "|"
    md = "| hook | EV | note |\n|:--|--:|:--|\n" + row + "\n"
    typ = _filter(md, "typst")
    assert re.search(r"columns: 3,", typ) and "%" not in typ.split("table.header")[0]
    path = tmp_path / "x.pdf"
    path.write_bytes(typst.compile(typ.encode(), format="pdf", ignore_system_fonts=True))
    _, text = _pdf_text(path)
    assert "blocks.10.hook_resid_post_long_name 0.912" in text
