"""Render the executed report notebooks to HTML and PDF, with Quarto or without it.

    python -m sae_workbench.render report          # what the render stage runs

report/ is a Quarto book (report/_quarto.yml). Its chapters are index.qmd and
the notebooks papermill executed (report/executed/: FRONT_CHAPTERS, one
hook-<hook>.ipynb per hook of params.yaml, BACK_CHAPTERS); which hooks there
are depends on params, so this command writes report/_pipeline.yml
(`book: chapters:` and the PDF's font paths), which _quarto.yml merges in
through `metadata-files`.

With `quarto` on PATH this is then `quarto render report`: HTML and Typst PDF,
the notebooks are not executed again (`execute: enabled: false`); outputs
report/_output/index.html (and the chapter pages) and report/_output/report.pdf
(`book: output-file: report`).

Without Quarto the same chapters, in the same order, go through pandoc
(pypandoc-binary) and the pandoc filter report_filter.lua, which does what the
report needs of Quarto (conditional content, numbered figure captions, @fig-
cross-references):
  - report/_output/index.html: standalone HTML with a table of contents and
    the inline plotly.js bundle once;
  - report/_output/report.pdf: pandoc's Typst writer, compiled by the `typst`
    package; figures as the static PNGs viz.figure_md embeds, token highlights
    as shaded text; no raw HTML output reaches it.
Code cells are dropped; their Markdown outputs are Markdown, their HTML
outputs raw HTML (HTML only), stdout a code block. Both files are written
atomically. The feature browser (report/browser/, the browser stage's pages) is
hard-linked in as report/_output/browser/, where the hook chapters link to it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import nbformat
import yaml

from .atomic import atomic_dir, write_bytes, write_text
from .fonts import font_dirs
from .viz import PLOTLY_MARKER, code_fence, raw_block

FILTER = Path(__file__).with_name("report_filter.lua")
CHAPTERS_FILE = "_pipeline.yml"
DEFAULT_TITLE = "SAE workbench report"

REPORT_CSS = """<style>
body{max-width:60em;margin:2em auto;padding:0 1em;font-family:Georgia,serif;line-height:1.5;color:#222}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}th,td{border-bottom:1px solid #ddd;padding:0.2em 0.6em}
code{font-size:0.9em}h1{font-size:1.8em}h2{border-bottom:1px solid #eee;padding-bottom:0.2em}
figure.report-float{margin:1em 0}figure.report-float img{max-width:100%}
.report-caption{display:block;font-size:0.9em;color:#444;margin:0.3em 0 0.8em}
</style>"""


class Rendered(NamedTuple):
    html: Path
    pdf: Path


def _natural_key(name: str):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name)]


FRONT_CHAPTERS = ("abstract", "methods", "training")
"""Chapters before the per-hook ones (executed/<name>.ipynb), in order."""
BACK_CHAPTERS = ("compare", "steering", "explain", "models", "discussion")
"""Chapters after the per-hook ones."""


def notebook_order(executed: Path, hooks: list[str] | None = None) -> list[Path]:
    """The front chapters, one executed/hook-<hook>.ipynb per hook (in the order
    of params.yaml's hooks when given, else layers in numeric order), the back
    chapters; files that do not exist are left out."""
    if hooks is None:
        found = sorted(executed.glob("hook-*.ipynb"), key=lambda p: _natural_key(p.name))
    else:
        found = [executed / f"hook-{h}.ipynb" for h in hooks]
    names = [executed / f"{n}.ipynb" for n in FRONT_CHAPTERS] + found + [executed / f"{n}.ipynb" for n in BACK_CHAPTERS]
    return [p for p in names if p.exists()]


def _params_hooks(report_dir: Path) -> list[str] | None:
    """hooks: of the params.yaml beside report/, if there is one."""
    path = report_dir.resolve().parent / "params.yaml"
    try:
        return list(yaml.safe_load(path.read_text())["hooks"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None


def check_chapters(report_dir: Path, hooks: list[str] | None) -> list[Path]:
    """The executed notebooks in book order; with `hooks` (the pipeline's book) every
    chapter the pipeline makes must be there, else a one-line ValueError naming the first missing."""
    executed = report_dir / "executed"
    nbs = notebook_order(executed, hooks) if executed.is_dir() else []
    if not nbs:
        raise ValueError(f"no executed notebooks in {executed}: run dvc repro first")
    if hooks is not None:
        expected = [f"{n}.ipynb" for n in FRONT_CHAPTERS] + [f"hook-{h}.ipynb" for h in hooks] + [f"{n}.ipynb" for n in BACK_CHAPTERS]
        missing = [n for n in expected if not (executed / n).exists()]
        if missing:
            raise ValueError(f"{executed / missing[0]} is missing ({len(missing)} chapter(s) in all): run dvc repro, "
                             "which executes every chapter before rendering")
    return nbs


def quarto_font_paths(report_dir: Path) -> list[str]:
    """fonts.font_dirs() relative to report_dir: Quarto resolves a relative
    font path against the book's directory, but an absolute one (`/...`)
    against the project directory, where it does not exist."""
    return [os.path.relpath(d, report_dir.resolve()) for d in font_dirs()]


def write_chapters(report_dir: Path, hooks: list[str] | None = None) -> list[str]:
    """Write report_dir/_pipeline.yml, which _quarto.yml merges in
    (metadata-files): the book's chapter list (index.qmd, then the executed
    notebooks) and the PDF's font directories (FONT_PACKAGES, where this
    machine installed them). Hook chapters in the order of `hooks` (default:
    params.yaml's beside report_dir). Written only if it changed; returns the chapters."""
    hooks = _params_hooks(report_dir) if hooks is None else hooks
    nbs = check_chapters(report_dir, hooks)
    chapters = (["index.qmd"] if (report_dir / "index.qmd").exists() else []) + [p.relative_to(report_dir).as_posix() for p in nbs]
    text = (
        "# Written by `python -m sae_workbench.render` (the render stage of dvc repro): do not edit.\n"
        "# _quarto.yml merges it in (metadata-files), so `quarto render report` finds the chapters and fonts.\n"
        + yaml.safe_dump({"book": {"chapters": chapters}, "format": {"typst": {"font-paths": quarto_font_paths(report_dir)}}}, sort_keys=False)
    )
    path = report_dir / CHAPTERS_FILE
    if not path.exists() or path.read_text() != text:
        write_text(path, text)
    return chapters


def _merge(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(a[k], v) if k in a else v
        return out
    return b


def project_config(report_dir: Path) -> dict:
    """_quarto.yml with its metadata-files merged in, as Quarto reads it."""
    path = report_dir / "_quarto.yml"
    cfg = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    files = cfg.pop("metadata-files", []) or []
    for f in [files] if isinstance(files, str) else files:
        p = report_dir / f
        if p.exists():
            cfg = _merge(cfg, yaml.safe_load(p.read_text()) or {})
    return cfg


def _flatten_chapters(items) -> list[str]:
    out = []
    for it in items or []:
        if isinstance(it, str):
            out.append(it)
        elif isinstance(it, dict):  # - part: "..."  chapters: [...]
            if isinstance(it.get("part"), str) and it["part"].endswith((".qmd", ".md")):
                out.append(it["part"])
            out += _flatten_chapters(it.get("chapters"))
    return out


def book_chapters(report_dir: Path) -> tuple[str, list[Path]]:
    """(title, chapter files) of the book, from _quarto.yml + _chapters.yml;
    without a `book: chapters:` list, the executed notebooks in order."""
    cfg = project_config(report_dir)
    return _book_chapters(report_dir, cfg)


def _book_chapters(report_dir: Path, cfg: dict) -> tuple[str, list[Path]]:
    book = cfg.get("book") or {}
    title = book.get("title") or cfg.get("title") or DEFAULT_TITLE
    chapters = [report_dir / c for c in _flatten_chapters(book.get("chapters"))]
    if not chapters:
        chapters = notebook_order(report_dir / "executed")
    missing = [c for c in chapters if c.suffix == ".ipynb" and not c.exists()]
    if missing:
        raise ValueError(f"chapter {missing[0]} is missing: run dvc repro first")
    chapters = [c for c in chapters if c.exists()]
    if not any(c.suffix == ".ipynb" for c in chapters):
        raise ValueError(f"no executed notebooks in {report_dir / 'executed'}: run dvc repro first")
    return str(title), chapters


def _code_block(text: str) -> str:
    fence = code_fence(text)
    return f"{fence}\n{text.rstrip()}\n{fence}"


def _strip_front_matter(text: str) -> tuple[dict, str]:
    m = re.match(r"\A---\s*\n(.*?)\n(?:---|\.\.\.)\s*\n", text, re.S)
    if not m:
        return {}, text
    return (yaml.safe_load(m.group(1)) or {}), text[m.end() :]


def notebook_markdown(nb: nbformat.NotebookNode, html: bool, plotly_seen: bool) -> tuple[list[str], bool]:
    """A notebook as pandoc Markdown chunks: Markdown cells as they are; of code
    cells only their outputs (Markdown as Markdown, stdout as a code block,
    HTML as a raw HTML block when `html`, else dropped, the plotly.js bundle
    once, PNG images inline). An error output raises ValueError."""
    chunks = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            chunks.append(cell.source)
            continue
        if cell.cell_type == "raw":
            fmt = cell.metadata.get("format") or cell.metadata.get("raw_mimetype") or ""
            if fmt == "text/html" and html:
                chunks.append(raw_block(cell.source, "html"))
            elif fmt in ("text/markdown", "markdown"):
                chunks.append(cell.source)
            continue
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            data = out.get("data", {})
            if kind == "stream":
                if out.get("name") == "stdout":  # stderr holds warnings and progress bars, not findings
                    chunks.append(_code_block("".join(out.get("text", ""))))
            elif kind == "error":
                raise ValueError(f"an executed notebook holds an error ({out.get('ename')}): re-run dvc repro")
            elif "text/markdown" in data:
                text = "".join(data["text/markdown"])
                if PLOTLY_MARKER in text:  # report_kit.setup's plotly.js loader: HTML only, once
                    if plotly_seen or not html:
                        continue
                    plotly_seen = True
                chunks.append(text)
            elif "text/html" in data:
                if not html:
                    continue  # raw HTML never reaches the PDF
                text = "".join(data["text/html"])
                if text.startswith(PLOTLY_MARKER):
                    if plotly_seen:
                        continue
                    plotly_seen = True
                chunks.append(raw_block(text, "html"))
            elif "image/png" in data:
                chunks.append(f"![](data:image/png;base64,{''.join(data['image/png']).strip()})")
    return chunks, plotly_seen


def book_markdown(chapters: list[Path], html: bool) -> str:
    """All chapters as one pandoc Markdown document (for HTML or for Typst)."""
    chunks, plotly_seen = [], False
    for p in chapters:
        if p.suffix == ".ipynb":
            more, plotly_seen = notebook_markdown(nbformat.read(p, as_version=4), html, plotly_seen)
            chunks += more
        else:  # .qmd / .md: plain Markdown (nothing to execute in it)
            meta, body = _strip_front_matter(p.read_text())
            if meta.get("title"):
                chunks.append(f"# {meta['title']}")
            chunks.append(body)
    return "\n\n".join(c.strip("\n") for c in chunks) + "\n"


DATA_URI = re.compile(r"data:image/(png|jpeg|jpg|gif|svg\+xml);base64,([A-Za-z0-9+/=\s]+?)(?=[)\"'\s])")


def extract_data_uris(markdown: str, media_dir: Path) -> str:
    """Write each data-URI image to a file in media_dir (Typst reads files,
    not data URIs) and point the Markdown at it, relative to media_dir's parent."""
    media_dir.mkdir(parents=True, exist_ok=True)

    def repl(m):
        ext = {"jpeg": "jpg", "svg+xml": "svg"}.get(m.group(1), m.group(1))
        data = base64.b64decode(re.sub(r"\s+", "", m.group(2)))
        path = media_dir / f"{hashlib.sha1(data).hexdigest()}.{ext}"
        if not path.exists():
            path.write_bytes(data)
        return f"{media_dir.name}/{path.name}"

    return DATA_URI.sub(repl, markdown)


def _pandoc(args: list[str], markdown: str, cwd: Path | None = None, filters: list[Path] = ()) -> str:
    import pypandoc

    proc = subprocess.run(
        [pypandoc.get_pandoc_path(), "--from=markdown", f"--lua-filter={FILTER}", *(f"--lua-filter={f.resolve()}" for f in filters), *args],
        input=markdown.encode("utf-8"),
        capture_output=True,
        cwd=cwd,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pandoc failed: {proc.stderr.decode('utf-8', 'replace')[-2000:]}")
    return proc.stdout.decode("utf-8")


def render_html(chapters: list[Path], out_html: Path, title: str, filters: list[Path] = ()) -> Path:
    md = book_markdown(chapters, html=True)
    html = _pandoc(
        ["--to=html5", "--standalone", "--toc", "--toc-depth=2", f"--metadata=title:{title}", "--metadata=lang:en"], md,
        filters=filters,
    )
    html = html.replace("</head>", REPORT_CSS + "\n</head>", 1)
    write_text(out_html, html)
    return out_html


TYPST_PREAMBLE = "#show figure: set block(breakable: true)\n"
"""Long tables (the params table) continue on the next page instead of overflowing
it; _quarto.yml's typst include-in-header carries the same rule for Quarto."""


def render_pdf(chapters: list[Path], out_pdf: Path, title: str, papersize: str | None = None, filters: list[Path] = ()) -> Path:
    """Markdown -> pandoc Typst writer -> typst (python package) -> PDF. Images
    go to files next to the .typ in a temporary directory (Typst's root)."""
    import typst

    md = book_markdown(chapters, html=False)
    with tempfile.TemporaryDirectory(prefix="render-typst-") as tmp:
        tmp = Path(tmp)
        md = extract_data_uris(md, tmp / "media")
        typ = _pandoc(
            ["--to=typst", "--standalone", "--toc", "--toc-depth=2", f"--metadata=title:{title}", "--metadata=lang:en"]
            + ([f"--variable=papersize:{papersize}"] if papersize else []),
            md,
            cwd=tmp,
            filters=filters,
        )
        typ = TYPST_PREAMBLE + typ
        (tmp / "report.typ").write_text(typ, encoding="utf-8")
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))  # fixed date: same input, same PDF
        pdf = typst.compile(str(tmp / "report.typ"), root=str(tmp), ignore_system_fonts=True, font_paths=[str(d) for d in font_dirs()], timestamp=epoch)
    write_bytes(out_pdf, pdf)
    return out_pdf


def render_with_pandoc(report_dir: Path, out_html: Path, out_pdf: Path | None = None, title: str | None = None) -> Rendered:
    cfg = project_config(report_dir)
    book_title, chapters = _book_chapters(report_dir, cfg)
    title = title or book_title
    out_pdf = out_pdf or out_html.with_suffix(".pdf")
    typst_fmt = (cfg.get("format") or {}).get("typst")
    papersize = typst_fmt.get("papersize") if isinstance(typst_fmt, dict) else None
    filters = cfg.get("filters") or []
    filters = [report_dir / f for f in ([filters] if isinstance(filters, str) else filters)]
    render_html(chapters, out_html, title, filters)
    render_pdf(chapters, out_pdf, title, papersize, filters)
    return Rendered(out_html, out_pdf)


class RenderError(ValueError):
    """A render failed; the message is one line naming the chapter and the cause."""


QUARTO_LEFTOVERS = ("_output", ".quarto", "*.quarto_ipynb", "*.typ", "screenshots", CHAPTERS_FILE, "browser")
"""What a Quarto render leaves in a book directory, and the feature browser (linked in after the render):
not copied into the scratch copy."""


def link_tree(src: Path, dst: Path) -> None:
    """Copy a directory tree, hard-linking files where the file system allows (the feature browser
    beside the rendered report costs no second copy on disk)."""

    def link_or_copy(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_or_copy)


def _chapter_title(path: Path) -> str:
    """A chapter's title: its first level-1 Markdown heading, else its file name."""
    try:
        if path.suffix == ".ipynb":
            texts = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
        else:
            texts = [path.read_text(encoding="utf-8")]
    except (OSError, ValueError):
        return path.name
    for text in texts:
        m = re.search(r"^# +(.+?)\s*(\{[^}]*\})?\s*$", text, re.M)
        if m:
            return m.group(1).replace("`", "")
    return path.name


def _typst_chapter(typ: Path, line: int) -> str | None:
    """Title of the level-1 heading at or before `line` of a Typst book file."""
    try:
        lines = typ.read_text(encoding="utf-8").splitlines()[:line]
    except OSError:
        return None
    for text in reversed(lines):
        m = re.match(r"^= (.+?)\s*(<[^>]*>)?\s*$", text) or re.match(r"^#heading\(.*?\)\[(.+)\]", text)
        if m:
            title = re.sub(r'#\w+\("((?:[^"\\]|\\.)*)"\);?', r"\1", m.group(1))  # #NormalTok("x"); -> x
            return re.sub(r"\\(.)", r"\1", re.sub(r"[`*]|#\w+\[|\]", "", title)).strip()
    return None


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def quarto_error_line(log: str, work: Path) -> str:
    """One line out of Quarto's output: which chapter failed and why.

    The chapter is the file of the last progress line (`[ 3/9] executed/x.ipynb`)
    for the HTML pass, or the level-1 heading above the failing line of the
    merged Typst file for the PDF."""
    log = ANSI.sub("", log)
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    cause = next((ln for ln in lines if re.match(r"(ERROR|error)\b", ln)), None) or (lines[-1] if lines else "no output")
    cause = re.sub(r"^((ERROR|error):?\s*)+", "", cause)
    chapter = None
    m = re.search(r"[┌╭]─\s*(\S+?\.typ):(\d+)", log)
    if m:
        typ = Path(m.group(1))
        typ = typ if typ.is_absolute() else Path.cwd() / typ  # Typst names it relative to Quarto's working directory
        where = _typst_chapter(typ, int(m.group(2)))
        place = f"PDF, {typ.name} line {m.group(2)}"
        chapter = f"{where!r} ({place})" if where else f"? ({place})"
    else:
        files = re.findall(r"^\[\s*\d+/\d+\]\s+(\S+)", log, re.M)
        if files:
            chapter = f"{_chapter_title(work / files[-1])!r} ({files[-1]})"
    return f"quarto render failed in chapter {chapter}: {cause}" if chapter else f"quarto render failed: {cause}"


def render_with_quarto(work: Path, quarto: str) -> None:
    """`quarto render` of the book in `work` (every format of _quarto.yml: HTML
    and Typst PDF); RenderError with one line if it fails or writes no output."""
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.setdefault("SOURCE_DATE_EPOCH", "0")  # Typst's PDF date: same input, same PDF
    proc = subprocess.run([quarto, "render", str(work)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RenderError(quarto_error_line(proc.stderr + "\n" + proc.stdout, work))
    for f in ("index.html", "report.pdf"):
        if not (work / "_output" / f).is_file():
            raise RenderError(f"quarto render wrote no _output/{f} (exit 0): check report/_quarto.yml's formats")


def render(report_dir: str | Path = "report", force_fallback: bool = False) -> Rendered:
    """Render with Quarto where installed, else with the pandoc fallback;
    returns the paths of the HTML (the book's index.html) and the PDF.

    Either renders a scratch copy of report/ (without Quarto's leftovers);
    only a successful render touches report/: its _output replaces
    report/_output and its _pipeline.yml is written, so a failed one leaves
    report/ exactly as it was and Quarto's own files (.quarto/, index.typ)
    never reach it."""
    report_dir = Path(report_dir)
    quarto = None if force_fallback else shutil.which("quarto")
    hooks = _params_hooks(report_dir)
    check_chapters(report_dir, hooks)  # errors name report/, not the scratch copy
    with tempfile.TemporaryDirectory(prefix="render-") as tmp:
        work = Path(tmp) / report_dir.name
        shutil.copytree(report_dir, work, ignore=shutil.ignore_patterns(*QUARTO_LEFTOVERS))
        write_chapters(work, hooks)
        if quarto:
            render_with_quarto(work, quarto)
        else:
            render_with_pandoc(work, work / "_output" / "index.html", work / "_output" / "report.pdf")
        with atomic_dir(report_dir / "_output") as new:  # a reader sees the old report or the new one
            shutil.copytree(work / "_output", new, dirs_exist_ok=True)
            if (report_dir / "browser").is_dir():  # the browser stage's pages, linked from the hook chapters
                link_tree(report_dir / "browser", new / "browser")
        write_chapters(report_dir, hooks)
    return Rendered(report_dir / "_output" / "index.html", report_dir / "_output" / "report.pdf")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Render the executed report notebooks to HTML and PDF.")
    ap.add_argument("report_dir", nargs="?", default="report")
    ap.add_argument("--fallback", action="store_true", help="use pandoc even where Quarto is installed")
    a = ap.parse_args(argv)
    try:
        paths = render(a.report_dir, a.fallback)
        if not a.fallback and not shutil.which("quarto"):
            print("render: Quarto is not installed, so the pandoc fallback rendered the report (https://quarto.org/docs/get-started/)")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"render: {paths.html}")
    print(f"render: {paths.pdf}")


if __name__ == "__main__":
    main()
