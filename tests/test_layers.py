"""The package's layers import downwards only: the core layers and helpers, then models, datasets, the
training engine, the scikit-learn estimators built on it, analysis of trained models, experiments (one of
which compares the estimators), figures, and the entry points (browser checks, the command line). Every
import counts, including those inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nslviz"
LAYERS = [
    {"models"}, {"datasets"}, {"training"}, {"estimators"}, {"analysis"}, {"experiments"}, {"viz"},
    {"browser", "cli", "__main__"},
]


def layer(part: str) -> int:
    """0 for the core modules at the top of the package (layers, similarity, helpers, paper numbers),
    then the rank of the first LAYERS entry that names the subpackage or module."""
    return next((rank for rank, names in enumerate(LAYERS, start=1) if part in names), 0)


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported nslviz module, line) for every import in one file, relative ones resolved."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = module[:-1] if module[-1] != "__init__" else module[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            names = [target + [alias.name] for alias in node.names] if not node.module else [target]
            found += [(".".join(name), node.lineno) for name in names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name.split(".")[0] == "nslviz"]


def part_of(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_module_imports_from_a_higher_layer():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = part_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for name, line in imports(path):
            if layer(part_of(name)) > layer(here):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name} "
                             f"(layer {layer(part_of(name))} above its own {layer(here)})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("source, expected", [
    ("from ..training.rundir import atomic_torch_save\n", "nslviz.training.rundir"),
    ("from . import glyphs\n", "nslviz.datasets.glyphs"),
    ("import nslviz.viz\n", "nslviz.viz"),
])
def test_relative_imports_are_resolved(tmp_path, monkeypatch, source, expected):
    """The walk sees an import as the module it names (the check above is only as good as this)."""
    folder = tmp_path / "nslviz" / "datasets"
    folder.mkdir(parents=True)
    (folder / "example.py").write_text(source)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "nslviz")
    assert [name for name, _ in imports(folder / "example.py")] == [expected]
