"""The package's shape, as README.md's "Library" table states it: every module
sits in one layer, imports nothing from a higher layer, and the modules'
imports (deferred ones inside functions included) form no cycle."""

from __future__ import annotations

from pathlib import Path

import pytest

from sae_workbench.deps import _imported_modules, _module_file

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sae_workbench"

LAYERS = [
    ("base", ["config", "atomic", "offline", "determinism", "cli", "__init__"]),
    ("data", ["data"]),
    ("models", ["model_cache", "models", "decode", "edits"]),
    ("activations", ["activations", "extraction"]),
    ("sae", ["sae"]),
    ("kinds", ["kinds", "measure"]),
    ("validation", ["validate"]),
    ("features", ["features"]),
    ("analysis", ["analysis", "model_run", "control", "cross_model"]),
    ("steer", ["steer"]),
    ("explain", ["explain"]),
    ("report and commands", ["report_kit", "claims", "viz", "browser", "render", "fonts", "expdiff", "deps", "concept", "determinism_probe"]),
    ("app", ["app", "__main__"]),
]
"""Bottom to top; a top-level module or subpackage of sae_workbench per name."""
LEVEL = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}


def modules() -> dict[str, Path]:
    """sae_workbench.x.y -> file, for every module of the package."""
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def imports(name: str, path: Path) -> set[str]:
    """The package modules that module `name` imports (its own package __init__s left out)."""
    found = set()
    for imp in _imported_modules(path.read_text(encoding="utf-8"), name, path.name == "__init__.py"):
        if imp.split(".")[0] == "sae_workbench" and _module_file(ROOT, imp) is not None and imp != name:
            found.add(imp)
    return found


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    assert top in LEVEL, f"{module} is in no layer of tests/test_layers.py (and README.md's Library table)"
    return LEVEL[top]


def test_every_module_has_a_layer():
    for name in modules():
        layer(name)


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_imports_a_higher_layer(name):
    path = modules()[name]
    higher = [m for m in imports(name, path) if layer(m) > layer(name) and m != "sae_workbench"]
    assert not higher, f"{name} (layer {LAYERS[layer(name)][0]}) imports {higher}"


def test_sae_imports_nothing_about_models_or_steering():
    banned = ("sae_workbench.models", "sae_workbench.model_cache", "sae_workbench.kinds", "sae_workbench.steer",
              "sae_workbench.edits", "sae_workbench.extraction")
    for name, path in modules().items():
        if name.startswith("sae_workbench.sae"):
            assert not [m for m in imports(name, path) if m.startswith(banned)], name


def test_no_import_cycle():
    # edges to a module's own ancestor packages left out: Python has loaded those first
    graph = {name: {m for m in imports(name, path) if m in modules() and not name.startswith(m + ".")}
             for name, path in modules().items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n):
        state[n] = 1
        path.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                visit(m)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
