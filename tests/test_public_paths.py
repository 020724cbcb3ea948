"""Code outside the package imports demur only through its public face: `demur` and the public
subpackages below, each with a sorted `__all__` whose names all resolve."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from demur.errors import MissingDependencyError

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = (
    "demur",
    "demur.adapters.embeddings",
    "demur.adapters.models",
    "demur.calibration",
    "demur.config",
    "demur.demo",
    "demur.drift",
    "demur.estimators",
    "demur.evaluation",
    "demur.grounding",
    "demur.integrations.langchain",
    "demur.integrations.llamaindex",
    "demur.policies",
    "demur.pregen",
    "demur.queue",
    "demur.retrieval",
    "demur.review",
    "demur.routelog",
    "demur.router",
    "demur.server",
    "demur.telemetry",
    "demur.testing",
)
# Importing these must not import numpy, chromadb, llama.cpp, scikit-learn, httpx or starlette.
LIGHT = tuple(
    m
    for m in PUBLIC
    if m not in ("demur.integrations.langchain", "demur.integrations.llamaindex")
    and m not in ("demur.review", "demur.server")
)
HEAVY = ("numpy", "chromadb", "llama_cpp", "sklearn", "httpx", "starlette")

FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def sources() -> Iterator[tuple[str, str]]:
    """(where, code) for every script in examples/ and benchmarks/ and every Python block of
    the README and docs/."""
    for folder in ("examples", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            yield f"{path.relative_to(ROOT)}:{line}", match.group(1)


@cache
def declared_all(module: str) -> tuple[str, ...]:
    """The module's `__all__`, read from its source without importing it."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        ) or (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "__all__"
        ):
            assert node.value is not None
            names: tuple[str, ...] = tuple(ast.literal_eval(node.value))
            return names
    raise AssertionError(f"{module} has no __all__")


def problems(where: str, code: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(code, filename=where)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "demur" and alias.name not in PUBLIC:
                    found.append(f"{where}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "demur":
                continue
            for alias in node.names:
                if f"{node.module}.{alias.name}" in PUBLIC:
                    continue  # `from demur.integrations import langchain`: a public package
                if node.module not in PUBLIC:
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
                elif alias.name not in declared_all(node.module):
                    found.append(
                        f"{where}:{node.lineno}: {alias.name} is not in {node.module}.__all__"
                    )
    return found


def test_examples_benchmarks_and_docs_import_only_public_paths():
    checked = list(sources())
    assert any(where.startswith("examples/") for where, _ in checked)
    assert any(where.startswith("benchmarks/") for where, _ in checked)
    found = [problem for where, code in checked for problem in problems(where, code)]
    assert not found, "deep or non-exported imports:\n" + "\n".join(found)


def test_the_check_catches_deep_paths_and_unexported_names():
    code = (
        "import demur.router.router\n"
        "from demur.cli import main\n"
        "from demur.router import Router, Ladder\n"
        "from demur import Router\n"
        "from demur.integrations import langchain\n"
    )
    assert problems("x.py", code) == [
        "x.py:1: import demur.router.router",
        "x.py:2: from demur.cli import main",
        "x.py:3: Ladder is not in demur.router.__all__",
    ]


def _ruff_order(name: str) -> tuple[int, list[int | str]]:
    """ruff's `__all__` order (RUF022): SCREAMING_CASE, then CamelCase, then the rest, each in
    natural order."""
    group = 0 if len(name) > 1 and name.isupper() else 1 if name[:1].isupper() else 2
    return group, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _import(module: str) -> object:
    try:
        return importlib.import_module(module)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("module", PUBLIC)
def test_public_all_is_sorted_and_resolves(module: str):
    imported = _import(module)
    names = list(imported.__all__)  # type: ignore[attr-defined]
    assert names == sorted(names, key=_ruff_order)
    assert len(set(names)) == len(names)
    assert tuple(names) == declared_all(module)
    missing = [name for name in names if not hasattr(imported, name)]
    assert not missing, f"{module}.__all__ names that do not resolve: {missing}"


def test_light_public_packages_import_no_heavy_dependency():
    code = (
        "import importlib, sys\n"
        f"for m in {LIGHT!r}: importlib.import_module(m)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
