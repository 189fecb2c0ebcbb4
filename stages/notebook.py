"""Execute one parameterised report notebook with papermill.

$ python stages/notebook.py --notebook report/hook.ipynb --out report/executed/hook-blocks.3.hook_resid_pre.ipynb -p hook blocks.3.hook_resid_pre
The executed copy keeps every output, so renderers never run code again.
Markdown cells may name a parameter as {{name}} (a chapter title such as
"# Hook `{{hook}}`"): the executed copy has its value there, so the title is
a Markdown heading, which Quarto reads for the sidebar and the PDF outline.
"""

import sae_workbench  # noqa: F401  first: pins the numerics before torch and numpy load (determinism.py)

import os
from pathlib import Path

import nbformat

from sae_workbench.atomic import atomic_file
from sae_workbench.cli import stage


def args(p):
    p.add_argument("--notebook", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="notebook parameter")


def finish(path: Path, values: dict, out: Path) -> None:
    """Fill {{name}} in Markdown cells with the parameter values; remove
    execution timestamps, durations and random cell ids, so the same inputs
    give the same executed notebook (and DVC sees nothing new). papermill's
    output_path becomes `out` (it wrote to a temporary)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for name, value in values.items():
                cell.source = cell.source.replace("{{" + name + "}}", str(value))
    for key in ("start_time", "end_time", "duration"):
        nb.metadata.get("papermill", {}).pop(key, None)
    if "papermill" in nb.metadata:
        nb.metadata.papermill["output_path"] = str(out)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"  # papermill gives its injected cell a random id
        cell.metadata.pop("execution", None)
        for key in ("start_time", "end_time", "duration", "exception", "status"):
            cell.metadata.get("papermill", {}).pop(key, None)
    nbformat.write(nb, path)


@stage(args)
def main(args, params):
    """Run the notebook from the repository root with the given parameters, atomically."""
    import papermill as pm

    out = Path(args.out)
    values = dict(args.p)
    values["params_path"] = args.params
    try:
        with atomic_file(out, suffix=".ipynb") as tmp:
            pm.execute_notebook(
                args.notebook, str(tmp), parameters=values, cwd=os.getcwd(), kernel_name="python3", progress_bar=False,
                extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not its "running over TCP without encryption" warning
            )
            finish(tmp, values, out)
    except pm.PapermillExecutionError as e:
        raise ValueError(f"{args.notebook} failed in cell {e.exec_count}: {e.ename}: {e.evalue}") from None
    print(f"notebook {args.notebook} -> {out}")


if __name__ == "__main__":
    main()
