"""The layers import downwards only (DESIGN.md's layout): a test that fails when one reaches up.

Read from the source with `ast`, so it checks every import, also those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imports_of(folder: Path) -> list[tuple[str, str]]:
    """(file, imported module) for every import in every .py under `folder`."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(REPO)), a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(REPO)), node.module))
    return found


def reaching(folder: str, banned: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(f, m) for f, m in imports_of(REPO / folder)
            if any(m == b or m.startswith(b + ".") for b in banned)]


@pytest.mark.parametrize(("folder", "banned"), [
    ("libra", ("handlers",)),
    ("libra/core", ("libra.serving", "libra.runtime", "libra.training", "simulator", "fastapi",
                    "onnxruntime", "torch", "redis", "boto3", "time", "asyncio")),
    ("libra/runtime", ("libra.serving", "libra.training", "simulator", "torch", "fastapi")),
    ("libra/serving", ("libra.training", "torch")),
    ("handlers", ("libra.training", "torch")),
])
def test_layers_import_downwards_only(folder: str, banned: tuple[str, ...]) -> None:
    assert reaching(folder, banned) == []


def test_serving_reaches_the_simulator_only_through_its_public_api() -> None:
    deep = [(f, m) for f, m in imports_of(REPO / "libra") if m.startswith("simulator.")]
    assert deep == []


def test_no_loose_modules_of_one_layer_at_the_top_of_libra() -> None:
    top = sorted(p.name for p in (REPO / "libra").glob("*.py"))
    assert top == ["__init__.py", "forked.py"]
