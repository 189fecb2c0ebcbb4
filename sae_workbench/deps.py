"""Which project files each DVC stage runs, so dvc.yaml's deps cannot rot.

    python -m sae_workbench.deps          # list (stage, file) pairs missing from dvc.yaml

A stage runs its command's entry point (`python stages/x.py`, `python -m
sae_workbench.render`), the notebook it executes (`--notebook report/x.ipynb`,
whose code cells are read too) and every project module these import,
directly or through other modules, with the `__init__.py` of each package on
the way (importing `sae_workbench.viz` runs `sae_workbench/__init__.py`).
Editing any of them can change the stage's outputs, so each must be among the
stage's deps in dvc.yaml (itself or a directory holding it).
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import sys
from pathlib import Path

PACKAGE = "sae_workbench"


def _module_file(root: Path, module: str) -> Path | None:
    base = root / Path(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _package_inits(root: Path, module: str) -> list[Path]:
    parts = module.split(".")
    return [p for i in range(1, len(parts) + 1) if (p := root / Path(*parts[:i]) / "__init__.py").is_file()]


def _imported_modules(source: str, module: str | None, is_package: bool) -> set[str]:
    """Absolute names of the modules `source` imports (from X import Y adds X.Y, which may be a module)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:
                    continue
                parts = module.split(".")
                base_parts = parts if is_package else parts[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def import_closure(root: Path, sources: list[tuple[str, str | None, bool]]) -> set[Path]:
    """Project files reached from `sources` ((code, its module name or None, is_package) each)."""
    seen: set[Path] = set()
    todo = list(sources)
    while todo:
        code, module, is_pkg = todo.pop()
        for name in _imported_modules(code, module, is_pkg):
            if name.split(".")[0] != PACKAGE:
                continue
            for f in _package_inits(root, name) + [f for f in [_module_file(root, name)] if f]:
                if f not in seen:
                    seen.add(f)
                    mod = ".".join(f.relative_to(root).with_suffix("").parts)
                    is_init = f.name == "__init__.py"
                    todo.append((f.read_text(encoding="utf-8"), mod.removesuffix(".__init__") if is_init else mod, is_init))
    return seen


def notebook_code(path: Path) -> str:
    """The code cells of a notebook, as one source (magics and shell lines dropped)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = []
    for c in cells:
        if c["cell_type"] == "code":
            src = "".join(c["source"])
            lines += [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def stage_files(root: Path, cmd: str) -> set[Path]:
    """Every project file a stage command runs: entry point, notebook, their import closure."""
    argv = shlex.split(cmd)
    files: set[Path] = set()
    sources = []
    for i, a in enumerate(argv):
        if a.endswith(".py") and (root / a).is_file():
            files.add(root / a)
            sources.append(((root / a).read_text(encoding="utf-8"), None, False))
        elif a == "-m" and i + 1 < len(argv):
            sources.append((f"import {argv[i + 1]}", None, False))
        elif a.endswith(".ipynb") and argv[i - 1] == "--notebook" and (root / a).is_file():
            files.add(root / a)
            sources.append((notebook_code(root / a), None, False))
    files |= import_closure(root, sources)
    # data files a module reads beside itself (render's pandoc filter)
    for f in list(files):
        if f.suffix == ".py":
            for m in re.finditer(r'with_name\("([^"]+)"\)', f.read_text(encoding="utf-8")):
                if (f.parent / m.group(1)).is_file():
                    files.add(f.parent / m.group(1))
    return files


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == d or d in path.parents for d in deps)


def missing_deps(root: Path) -> list[tuple[str, str]]:
    """(stage, file) for every file a stage runs that is not among its deps, from DVC's own view of dvc.yaml."""
    from dvc.repo import Repo

    out = []
    with Repo(str(root)) as repo:
        for st in repo.index.stages:
            if not st.cmd:
                continue
            cmd = st.cmd if isinstance(st.cmd, str) else " && ".join(st.cmd)
            deps = [Path(d.fs_path) for d in st.deps]
            for f in sorted(stage_files(root, cmd)):
                if not covered(f.resolve(), [d.resolve() for d in deps]):
                    out.append((st.name, f.relative_to(root).as_posix()))
    return out


def main() -> None:
    root = Path.cwd()
    missing = missing_deps(root)
    for stage, f in missing:
        print(f"{stage}: {f} is run by the stage but not among its deps in dvc.yaml")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
