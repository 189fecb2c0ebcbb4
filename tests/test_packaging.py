"""The package as pip builds it from pyproject.toml alone: a wheel that holds
every module (and the data files beside them) and imports each of them outside
the repository, where the editable install cannot help."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # pip builds a wheel (about 20 s)


def test_a_wheel_built_from_pyproject_imports_every_module(tmp_path):
    src = tmp_path / "src"  # a fresh copy: a build/ directory left in the repository would hide a missing package
    shutil.copytree(ROOT / "sae_workbench", src / "sae_workbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", src)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("sae_workbench-*.whl")
    in_repo = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "sae_workbench").rglob("*") if p.suffix in (".py", ".lua", ".html"))
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert [f for f in in_repo if f not in in_wheel] == []
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    modules = [f.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for f in in_repo if f.endswith(".py")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n"
            "    mod = importlib.import_module(m)\n"
            f"    assert mod.__file__.startswith({str(target)!r}), (m, mod.__file__)\n"
            "print(len(sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(target), "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
