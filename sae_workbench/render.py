"""Render the executed report notebooks to HTML, with Quarto or without it.

    python -m sae_workbench.render report          # what the render stage runs

With `quarto` on PATH this is `quarto render report` (report/_quarto.yml lists
the executed notebooks; Quarto does not execute .ipynb again). Without it, the
same executed notebooks become one standalone HTML file through pandoc
(pypandoc-binary): code cells are dropped, their Markdown outputs become
Markdown cells, their HTML outputs raw HTML, and the inline plotly.js bundle is
kept once. Output: report/_output/report.html in both cases (Quarto's chapter
pages sit beside it, under executed/).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from .data import atomic_write_text
from .viz import PLOTLY_MARKER

REPORT_CSS = """<style>
body{max-width:60em;margin:2em auto;padding:0 1em;font-family:Georgia,serif;line-height:1.5;color:#222}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}th,td{border-bottom:1px solid #ddd;padding:0.2em 0.6em}
code{font-size:0.9em}h1{font-size:1.8em}h2{border-bottom:1px solid #eee;padding-bottom:0.2em}
</style>"""


def notebook_order(executed: Path) -> list[Path]:
    """summary.ipynb first, then the per-hook chapters in file-name order."""
    nbs = sorted(executed.glob("*.ipynb"))
    return sorted(nbs, key=lambda p: (p.name != "summary.ipynb", p.name))


def outputs_as_cells(nb: nbformat.NotebookNode, plotly_seen: bool) -> tuple[list, bool]:
    """Turn a notebook's code-cell outputs into Markdown / raw-HTML cells pandoc renders."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cells.append(copy.deepcopy(cell))
            continue
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if out.get("output_type") == "stream":
                if out.get("name") == "stdout":  # stderr holds warnings and progress bars, not findings
                    cells.append(nbformat.v4.new_markdown_cell("```\n" + "".join(out.get("text", "")) + "\n```"))
            elif out.get("output_type") == "error":
                raise ValueError(f"an executed notebook holds an error ({out.get('ename')}): re-run dvc repro")
            elif "text/markdown" in data:
                cells.append(nbformat.v4.new_markdown_cell("".join(data["text/markdown"])))
            elif "text/html" in data:
                html = "".join(data["text/html"])
                if html.startswith(PLOTLY_MARKER):
                    if plotly_seen:
                        continue
                    plotly_seen = True
                cells.append(nbformat.v4.new_raw_cell(html, metadata={"format": "text/html"}))
            elif "image/png" in data:
                cells.append(nbformat.v4.new_markdown_cell(f"![](data:image/png;base64,{data['image/png']})"))
    return cells, plotly_seen


def render_with_pandoc(report_dir: Path, out_html: Path, title: str = "SAE workbench report") -> Path:
    import pypandoc

    executed = report_dir / "executed"
    nbs = notebook_order(executed)
    if not nbs:
        raise ValueError(f"no executed notebooks in {executed}: run dvc repro first")
    merged = nbformat.v4.new_notebook()
    merged.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    plotly_seen = False
    for p in nbs:
        cells, plotly_seen = outputs_as_cells(nbformat.read(p, as_version=4), plotly_seen)
        merged.cells.extend(cells)
    for i, cell in enumerate(merged.cells):
        cell.id = f"c{i}"  # nbformat draws random ids; fixed ones keep the HTML byte-identical
    out_html.parent.mkdir(parents=True, exist_ok=True)
    tmp_nb = out_html.with_name(".merged.ipynb")
    nbformat.write(merged, tmp_nb)
    try:
        html = pypandoc.convert_file(
            str(tmp_nb),
            "html5",
            format="ipynb",
            extra_args=["--standalone", "--toc", "--toc-depth=2", f"--metadata=title:{title}", "--metadata=lang:en"],
        )
    finally:
        tmp_nb.unlink(missing_ok=True)
    html = html.replace("</head>", REPORT_CSS + "\n</head>", 1)
    atomic_write_text(out_html, html)
    return out_html


def render(report_dir: str | Path = "report", force_fallback: bool = False) -> Path:
    """Render with Quarto where installed, else with the pandoc fallback."""
    report_dir = Path(report_dir)
    out_html = report_dir / "_output" / "report.html"
    quarto = shutil.which("quarto")
    if quarto and not force_fallback:
        subprocess.run([quarto, "render", str(report_dir)], check=True)  # report.qmd -> _output/report.html
        return out_html
    return render_with_pandoc(report_dir, out_html)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Render the executed report notebooks to HTML.")
    ap.add_argument("report_dir", nargs="?", default="report")
    ap.add_argument("--fallback", action="store_true", help="use pandoc even where Quarto is installed")
    a = ap.parse_args(argv)
    try:
        path = render(a.report_dir, a.fallback)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"render: {path}")


if __name__ == "__main__":
    main()
