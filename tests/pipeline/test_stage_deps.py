"""dvc.yaml's deps against what each stage really runs (sae_workbench.deps),
with real DVC: nothing a stage imports is missing from its deps, and editing a
module marks exactly the stages that import it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sae_workbench import deps

from helpers import ROOT


def test_every_stage_lists_every_project_file_it_runs():
    missing = deps.missing_deps(ROOT)
    assert missing == [], "\n".join(f"{s}: {f}" for s, f in missing)


def test_closure_follows_imports_notebooks_and_package_inits(tmp_path):
    pkg = tmp_path / "sae_workbench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("import json\n")
    (pkg / "a.py").write_text("from .sub import leaf\n")
    (pkg / "b.py").write_text("from sae_workbench import a\n")
    (pkg / "unused.py").write_text("")
    (tmp_path / "stage.py").write_text("import numpy\nfrom sae_workbench.b import x\n")
    nb = {"cells": [{"cell_type": "code", "source": ["%matplotlib inline\n", "import sae_workbench.unused"]}, {"cell_type": "markdown", "source": ["import sae_workbench.a"]}]}
    (tmp_path / "n.ipynb").write_text(json.dumps(nb))
    files = {p.relative_to(tmp_path).as_posix() for p in deps.stage_files(tmp_path, "python stage.py --notebook n.ipynb")}
    assert files == {"stage.py", "n.ipynb", "sae_workbench/__init__.py", "sae_workbench/a.py", "sae_workbench/b.py",
                     "sae_workbench/sub/__init__.py", "sae_workbench/sub/leaf.py", "sae_workbench/unused.py"}
    only_stage = {p.relative_to(tmp_path).as_posix() for p in deps.stage_files(tmp_path, "python stage.py")}
    assert "sae_workbench/unused.py" not in only_stage and "sae_workbench/sub/leaf.py" in only_stage


def _copy_tracked(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)


@pytest.mark.parametrize("module", ["sae_workbench/features.py", "sae_workbench/viz/highlight.py"])
def test_editing_a_module_marks_exactly_the_stages_that_run_it(tmp_path, module):
    _copy_tracked(tmp_path)
    from dvc.repo import Repo

    with Repo(str(tmp_path)) as repo:
        expected = {st.name for st in repo.index.stages if st.cmd and (tmp_path / module) in deps.stage_files(tmp_path, st.cmd)}
    assert expected, f"no stage runs {module}?"
    with (tmp_path / module).open("a") as f:
        f.write("\n# an edit\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    covers = lambda dep: module == dep or module.startswith(dep.rstrip("/") + "/")  # the file, or a directory dep holding it
    marked = {
        stage for stage, changes in status.items()
        for ch in changes if isinstance(ch, dict)
        for dep, how in ch.get("changed deps", {}).items() if how == "modified" and covers(dep)
    }
    assert marked == expected


def test_sae_param_deps_name_every_training_key():
    """train_sae lists its sae.* keys one by one (so sae.seeds or sae.seed_hooks re-run only the seeds stage):
    a new SAEConfig field must be added there, and to the seeds and control stages that train the same way."""
    import dataclasses

    import yaml

    from sae_workbench.config import SAEConfig

    training = {f"sae.{f.name}" for f in dataclasses.fields(SAEConfig)} - {"sae.seeds", "sae.seed_hooks"}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    listed = lambda st: {p for p in st["params"] if isinstance(p, str) and p.startswith("sae")}
    assert listed(stages["train_sae"]["do"]) == training
    assert listed(stages["seeds"]) == training | {"sae.seeds", "sae.seed_hooks"}
    assert listed(stages["control"]) == training - {"sae.fidelity_texts"}
