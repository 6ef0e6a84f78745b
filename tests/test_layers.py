"""The architecture, checked over the source tree: every import points down the layers, no import
hides inside a function (but heavy optional ones, which say so), no private name crosses files."""

from __future__ import annotations

import ast
from pathlib import Path

import avdistill

SRC = Path(avdistill.__file__).parent
# Bottom to top: a module may import only from its own layer or the layers before it.
LAYERS = ["version", "errors", "config", "searchspace", "seeding", "spread", "files", "run_folder", "factor", "data",
          "models", "augment", "synthetic", "cache", "memory", "training", "distributed", "methods", "evaluation", "reporting",
          "grid", "tuning", "demo", "cli", "__init__", "__main__"]


def modules():
    for path in sorted(SRC.rglob("*.py")):
        yield path, path.relative_to(SRC).parts[0].removesuffix(".py"), ast.parse(path.read_text())


def test_every_import_points_down_the_layers():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for path, layer, tree in modules():
        assert layer in rank, f"{path}: add its layer to LAYERS"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("avdistill."):
                target = node.module.split(".")[1]
                if rank[target] > rank[layer]:
                    upward.append(f"{path.relative_to(SRC)}:{node.lineno} ({layer}) imports {node.module}")
    assert upward == []


def test_no_import_inside_a_function_but_heavy_optional_ones():
    hidden = []
    for path, _, tree in modules():
        lines = path.read_text().splitlines()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and "#" not in lines[node.lineno - 1]:
                        hidden.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert hidden == []


def test_no_private_name_is_imported_across_files():
    private = [f"{path.relative_to(SRC)}:{node.lineno} {alias.name}" for path, _, tree in modules()
               for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"]
    assert private == []
