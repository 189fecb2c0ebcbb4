"""The rendered report read as a reader reads it, through `python -m
sae_workbench.render` exactly as the render stage runs it: real Quarto (HTML
book + Typst PDF) where `quarto` is on PATH, else the pandoc fallback, which
this module then says in the test output (real Quarto was not tested).

The book is small but shaped like the real one (preface, an unnumbered
abstract, numbered chapters with figures, tables and cross-references, a hook
chapter with token highlights), and its data text is hostile: Typst and
Markdown markup, URLs, code, emoji and Chinese, Arabic and Devanagari text.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pypdf
import pytest
import yaml

from sae_workbench import fonts, render, viz

from helpers import ROOT as REPO

pytestmark = pytest.mark.slow  # real renders (Quarto where installed)

QUARTO = shutil.which("quarto")
RENDERER = "Quarto" if QUARTO else "the pandoc fallback"

HOSTILE_TOKENS = [
    "= None finally", "#set text(red)", "*bold*", "_under_", "$x^2$", "@fig-missing", "<b>", "[link]", "\\n", "// c",
    "www.cedarlakecampground.com/reser", "def f(x): return x**2", "1. item",
]
SCRIPTS = {"chinese": "你好，世界。机器学习", "arabic": "مرحبا بالعالم", "devanagari": "नमस्ते दुनिया", "emoji": "🙂🚀🎉"}
FONT_FOR = {"chinese": "NotoSansCJK", "arabic": "NotoSansArabic", "devanagari": "NotoSansDevanagari", "emoji": "NotoEmoji"}
"""The family of the project's fonts (sae_workbench.fonts) that must set each script, in regular and bold."""
BUILT_IN_FONTS = ("LibertinusSerif", "NewCM", "DejaVuSansMono", "FontAwesome")
"""Fonts that Typst embeds in itself or Quarto ships (formats/typst/fonts): the only others a PDF may use."""
TITLES = ["Preface", "Abstract", "Methods", "Hook blocks.1.hook_resid_pre", "Limitations"]


def _md(text: str):
    return nbformat.v4.new_output("display_data", data={"text/markdown": text, "text/plain": "<IPython.core.display.Markdown object>"})


def _chapter(title: str, outputs: list) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("md(...)")
    cell.outputs = [_md(viz.html_only(viz.PLOTLY_MARKER + "<script>/* plotly.js stand-in */</script>"))] + outputs
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(title), cell])


def _record(text: str, rid: str, category: str) -> dict:
    offsets = [[0, 0]] + [[m.start(), m.end()] for m in re.finditer(r"\S+", text)]
    return {"id": rid, "category": category, "text": text, "offsets": offsets, "special": [1] + [0] * (len(offsets) - 1)}


def build_book(root: Path, broken_typst: bool = False) -> Path:
    """report/ as dvc repro leaves it: the project's _quarto.yml, index.qmd,
    filter and .gitignore, and executed notebooks."""
    report = root / "report"
    (report / "executed").mkdir(parents=True)
    for f in ("_quarto.yml", "index.qmd", "typst_safe.lua", ".gitignore"):
        shutil.copy(REPO / "report" / f, report / f)
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    bar = viz.bar(["python", "math"], [0.5, 1.25], "Held-out score", "category", "score")
    lines = viz.lines([1, 2, 3], {"mse": [0.3, 0.2, 0.1]}, "Training MSE", "tokens", "MSE")
    hostile_rows = "\n".join(f"| {viz.md_escape(t)} | {i} |" for i, t in enumerate(HOSTILE_TOKENS))
    context = " ".join(viz.md_escape(t) for t in HOSTILE_TOKENS[:6])
    chapters = {
        "abstract": _chapter(
            "<!-- unnumbered -->\n# Abstract {.unnumbered}",
            [_md("We find things, as " + viz.ref("mse") + " and " + viz.ref("quality", "tbl") + " show.")],
        ),
        "methods": _chapter(
            "# Methods",
            [
                _md(viz.table_md("| hook | EV |\n|:--|--:|\n| `blocks.10.hook_resid_post` | 0.912 |", "quality", "SAE quality per hook.")),
                _md(viz.figure_md(lines, "mse", "Training curve.")),
                _md("As " + viz.ref("mse") + " shows. " + " ".join(["Filler text for a longer chapter."] * 60)),
            ],
        ),
        "hook-blocks.1.hook_resid_pre": _chapter(
            "# Hook `blocks.1.hook_resid_pre`",
            [
                _md(viz.figure_md(bar, "score-blocks.1.hook_resid_pre", "Held-out score per category.")),
                _md("| token | n |\n|:--|--:|\n" + hostile_rows + "\n\n: Tokens from the data. {#tbl-tokens}"),
                _md(f"**Feature 7** context: {context} **www**.cedarlakecampground.com and {' '.join(SCRIPTS.values())}"),
                _md(f"In bold: **{' '.join(SCRIPTS.values())}**"),
                _md(viz.highlight_md([
                    (_record(" ".join(HOSTILE_TOKENS), "python-01", "python"), np.linspace(0, 2, 40).astype(np.float32), 2.0, True),
                    (_record(" ".join(SCRIPTS.values()), "non_english-02", "non_english"), np.ones(12, dtype=np.float32), 1.0, False),
                ])),
                _md("See " + viz.ref("score-blocks.1.hook_resid_pre") + " and @tbl-tokens.")
                if not broken_typst else _md(viz.raw_block("#let x = (", "typst")),
            ],
        ),
        "discussion": _chapter("# Limitations", [_md("- Small labelled set.\n- " + viz.md_escape("= not a heading"))]),
    }
    for name, nb in chapters.items():
        nbformat.write(nb, report / "executed" / f"{name}.ipynb")
    return report


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def no_system_fonts_env() -> dict:
    """The environment with every system font hidden from Typst (its font
    search reads fontconfig's file: point it at one that lists an empty
    directory) and no TYPST_FONT_PATHS, so a PDF can only use fonts that the
    render hands Typst itself, whatever this machine has installed."""
    tmp = Path(tempfile.mkdtemp(prefix="no-system-fonts-"))
    conf = tmp / "fonts.conf"
    conf.write_text('<?xml version="1.0"?>\n<fontconfig><dir>' + str(tmp / "no-fonts-here") + "</dir></fontconfig>\n")
    env = {k: v for k, v in os.environ.items() if k != "TYPST_FONT_PATHS"}
    return env | {"FONTCONFIG_FILE": str(conf)}


def _render_cli(report: Path):
    env = no_system_fonts_env()
    return subprocess.run([sys.executable, "-m", "sae_workbench.render", str(report)], capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    if not QUARTO:
        warnings.warn("real Quarto was not tested: quarto is not on PATH, the pandoc fallback rendered the report")
    root = tmp_path_factory.mktemp("book")
    report = build_book(root)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    r = _render_cli(report)
    assert r.returncode == 0, r.stdout + r.stderr
    return root, report, r


def _html_pages(report: Path) -> dict[str, str]:
    return {p.relative_to(report / "_output").as_posix(): p.read_text(encoding="utf-8") for p in (report / "_output").rglob("*.html")}


def _pdf(report: Path) -> tuple[pypdf.PdfReader, str]:
    reader = pypdf.PdfReader(report / "_output" / "report.pdf")
    return reader, "\n".join(p.extract_text() for p in reader.pages)


def _visible_text(page: str) -> str:
    body = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def test_renders_with_exit_0_and_says_which_renderer(book):
    _, report, r = book
    assert (report / "_output" / "index.html").is_file() and (report / "_output" / "report.pdf").is_file()
    assert r.stdout.count("render: ") >= 2
    assert ("Quarto is not installed" in r.stdout) == (QUARTO is None)
    print(f"rendered with {RENDERER}")


def test_no_file_left_that_git_does_not_know(book):
    root, _, _ = book
    status = _git(root, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert [line for line in status if not line.startswith("A ")] == []  # nothing new, changed or deleted


@pytest.mark.skipif(not QUARTO, reason="the sidebar and prev/next links are Quarto's HTML book")
def test_sidebar_and_prev_next_links_read_as_chapter_titles(book):
    _, report, _ = book
    pages = _html_pages(report)
    side = re.findall(r'class="menu-text">(.*?)</span></a>', pages["index.html"], re.S)
    entries = [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", s))).strip() for s in side]
    assert entries == ["Preface", "Abstract", "1 Methods", "2 Hook blocks.1.hook_resid_pre", "3 Limitations"]
    nav = re.findall(r'class="nav-page-text">(.*?)</a>', pages["executed/methods.html"], re.S)
    nav = [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", s))).strip() for s in nav]
    assert nav == ["Abstract", "2 Hook blocks.1.hook_resid_pre"]


def test_no_unresolved_reference_or_python_repr(book):
    _, report, _ = book
    _, pdf_text = _pdf(report)
    texts = {"PDF": pdf_text} | {name: _visible_text(page) for name, page in _html_pages(report).items()}
    for name, text in texts.items():
        assert "?@" not in text, name
        assert "IPython.core.display" not in text and not re.search(r"<\w+(\.\w+)+ object at 0x", text), name


def test_numbers_are_the_same_in_html_and_pdf(book):
    _, report, _ = book
    _, pdf_text = _pdf(report)
    html_text = " ".join(_visible_text(h) for h in _html_pages(report).values())
    pdf_caps = re.findall(r"(Figure|Table)\s+(\d+(?:\.\d+)?):\s+(\w+)", pdf_text)
    html_caps = re.findall(r"(Figure|Table)\s+(\d+(?:\.\d+)?):\s+(\w+)", html_text)
    assert set(pdf_caps) == set(html_caps) and len(set(pdf_caps)) == 4
    if QUARTO:
        assert ("Table", "1.1", "SAE") in pdf_caps and ("Figure", "2.1", "Held") in pdf_caps  # Methods is chapter 1
        assert re.search(r"^1\. Methods$", pdf_text, re.M) and re.search(r"^Abstract$", pdf_text, re.M)
        assert not re.search(r"^\d+\. Abstract$", pdf_text, re.M)


def test_hostile_data_text_stays_text(book):
    _, report, _ = book
    _, pdf_text = _pdf(report)
    flat = re.sub(r"\s+", "", pdf_text)
    for t in HOSTILE_TOKENS:
        assert re.sub(r"\s+", "", t) in flat, t
    text = " ".join(_visible_text(h) for h in _html_pages(report).values())
    for t in HOSTILE_TOKENS:
        assert t in text, t


def pdf_fonts(pdf: Path) -> set[str]:
    """The PostScript names of the fonts a PDF embeds, without the subset prefix (ABCDEF+)."""
    fonts = set()
    for page in pypdf.PdfReader(pdf).pages:
        for f in (page.get("/Resources") or {}).get("/Font", {}).values():
            f = f.get_object()
            name = str(f.get("/BaseFont") or f["/FontDescriptor"]["/FontName"])  # Type3 fonts have no /BaseFont
            fonts.add(re.sub(r"^/([A-Z]{6}\+)?", "", name).removesuffix("-Identity-H"))
    return fonts


def assert_project_fonts(pdf: Path) -> None:
    """Each script of SCRIPTS is set in the project's own font files (fonts.font_dirs()), regular and bold,
    and the PDF uses no font but those and Typst's or Quarto's built-in ones."""
    own = fonts.postscript_names(fonts.font_dirs())
    used = pdf_fonts(pdf)
    for script, family in FONT_FOR.items():
        for weight in ("Regular", "Bold"):
            assert any(f.startswith(family) and f.endswith(weight) and f in own for f in used), (script, weight, sorted(used))
    assert not [f for f in used if f not in own and not f.startswith(BUILT_IN_FONTS)], sorted(used)


def test_non_latin_scripts_and_emoji_have_real_glyphs_in_the_pdf(book):
    _, report, _ = book
    _, text = _pdf(report)
    assert_project_fonts(report / "_output" / "report.pdf")
    assert SCRIPTS["chinese"][:2] in text and "🚀" in text


@pytest.mark.skipif(not QUARTO, reason="Quarto's font-paths resolution")
def test_the_font_check_fails_where_quarto_gets_an_absolute_font_path(tmp_path):
    """The control: the same book rendered by `quarto render` with the font
    directories written as absolute paths (Quarto joins them onto the project
    directory) has no project font, since Typst sees no system font here."""
    report = build_book(tmp_path)
    (report / "_pipeline.yml").write_text(yaml.safe_dump({
        "book": {"chapters": render.write_chapters(report)},
        "format": {"typst": {"font-paths": [str(d) for d in fonts.font_dirs()]}},
    }))
    r = subprocess.run([QUARTO, "render", str(report), "--to", "typst"], capture_output=True, text=True, timeout=900,
                       env=no_system_fonts_env())
    assert r.returncode == 0, r.stderr[-2000:]
    with pytest.raises(AssertionError):
        assert_project_fonts(report / "_output" / "report.pdf")
    assert not any(f.startswith("NotoSans") for f in pdf_fonts(report / "_output" / "report.pdf"))


def test_render_error_is_one_line_naming_the_chapter_and_keeps_the_previous_output(tmp_path):
    report = build_book(tmp_path)
    if QUARTO:  # a raw Typst block that does not compile, in the hook chapter
        ok = _render_cli(report)
        assert ok.returncode == 0, ok.stderr
        before = {p: p.read_bytes() for p in (report / "_output").rglob("*") if p.is_file()}
        shutil.rmtree(report / "executed")
        build_book(tmp_path / "broken", broken_typst=True)
        shutil.copytree(tmp_path / "broken" / "report" / "executed", report / "executed")
    else:  # the fallback drops raw Typst's errors into typst's; use an error output instead
        before = {}
        nb = _chapter("# Methods", [nbformat.v4.new_output("error", ename="KeyError", evalue="'x'", traceback=[])])
        nbformat.write(nb, report / "executed" / "methods.ipynb")
    listing = sorted(p.relative_to(report).as_posix() for p in report.rglob("*") if "_output" not in p.parts)
    r = _render_cli(report)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("error: "), err
    assert ("Hook blocks.1.hook_resid_pre" in err) if QUARTO else ("KeyError" in err), err
    assert sorted(p.relative_to(report).as_posix() for p in report.rglob("*") if "_output" not in p.parts) == listing
    after = {p: p.read_bytes() for p in (report / "_output").rglob("*") if p.is_file()}
    assert after == before  # the previous report, untouched (none before for the fallback case)
