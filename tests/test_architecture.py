"""The package layering of `demur/` (docs/architecture.md), checked on the source with `ast`.

Every `import` and `from ... import` in every module counts, including those inside functions and
under `if TYPE_CHECKING:`, and so does `importlib.import_module("demur....")` with a literal name.
A package is `demur.<first component>`, or the module itself for a top-level module. The rules:

(a) a package never imports a package in a higher layer;
(b) two packages in the same layer import each other only through a pair in ALLOWED_SAME_LAYER;
(c) there are no import cycles between packages.

KNOWN_VIOLATIONS lists the edges that break (a) or (b) today. It can only shrink: a new violation
fails `test_layering`, and an entry that no longer occurs fails `test_known_violations_still_occur`.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = "demur"
GUIDE = "see docs/architecture.md"

# Lower layers never import higher ones. Some of these packages may not exist yet.
LAYERS: dict[str, int] = {
    "demur._version": 0,
    "demur._lazy": 0,
    "demur._construct": 0,
    "demur._loop_guard": 0,
    "demur.errors": 0,
    "demur.types": 1,
    "demur.prompts": 1,
    "demur.text": 1,
    "demur.correctness": 1,
    "demur.protocols": 2,
    "demur.bases": 2,
    "demur.scoring": 2,
    "demur.embedders": 2,
    "demur.estimators": 3,
    "demur.policies": 3,
    "demur.grounding": 3,
    "demur.calibration": 3,
    "demur.queue": 3,
    "demur.routelog": 3,
    "demur.pregen": 3,
    "demur.router": 4,
    "demur.drift": 4,
    "demur.adapters": 5,
    "demur.retrieval": 5,
    "demur.web": 5,
    "demur.config": 5,
    "demur.evaluation": 5,
    "demur.telemetry": 5,
    "demur.demo": 5,
    "demur.testing": 5,
    "demur.integrations": 6,
    "demur.server": 6,
    "demur.review": 6,
    "demur.cli": 7,
}
# The package root (it re-exports the public API) and `python -m demur` are not checked as
# importers. As an import target the root counts as above every layer: it imports everything.
EXEMPT = {"demur", "demur.__main__"}
ROOT_LAYER = max(LAYERS.values()) + 1

# Same-layer package pairs (importer, imported) that may depend on each other, each with its reason.
ALLOWED_SAME_LAYER: set[tuple[str, str]] = {
    # Prompts render queries and documents, which are core types.
    ("demur.prompts", "demur.types"),
    # The base classes implement the protocols and reuse their constants (FREE, NOTHING).
    ("demur.bases", "demur.protocols"),
    # The shared, cached embedder wraps any object of the Embedder protocol.
    ("demur.embedders", "demur.protocols"),
    # Scoring runs estimators and combines their scores through the Estimator protocol.
    ("demur.scoring", "demur.protocols"),
    # A grounding may score its branches with estimator helpers (token entropy, agreement).
    ("demur.grounding", "demur.estimators"),
    # The ensemble estimator fits its weights with calibration's metrics and file format.
    ("demur.estimators", "demur.calibration"),
    # The pre-generation predictor saves its file with calibration's JSON helpers.
    ("demur.pregen", "demur.calibration"),
    # The chroma store indexes and retrieves with the built-in embedders.
    ("demur.retrieval", "demur.adapters"),
    # Config builds Model objects from their config sections.
    ("demur.config", "demur.adapters"),
    # Config builds retrievers (a chroma store) from its retrieval section.
    ("demur.config", "demur.retrieval"),
    # load_router applies the config's tracing section, as the CLI does.
    ("demur.config", "demur.telemetry"),
    # The eval runner replays recorded answers (ReplayModel) when it is given no model.
    ("demur.evaluation", "demur.adapters"),
    # demur.testing re-exports the scripted and replay models for tests of user code.
    ("demur.testing", "demur.adapters"),
}

# Edges that break (a) or (b) today, as (importing module, imported module), with file:line.
# Remove an entry when its edge is gone; do not add new ones.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


@dataclass(frozen=True, order=True)
class Edge:
    path: str  # the importing file, relative to the repository
    line: int
    source: str  # the importing module, e.g. "demur.calibration.bundle"
    target: str  # the imported module, e.g. "demur.router.combine"

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def module_name(path: Path, repo: Path) -> str:
    """The dotted name: `demur/router/combine.py` -> `demur.router.combine`; a package's
    `__init__.py` -> the package."""
    parts = list(path.relative_to(repo).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    """`demur.router.combine` -> `demur.router`; `demur.config` -> `demur.config`."""
    return ".".join(module.split(".")[:2])


def layer_of(package: str) -> int:
    if package == ROOT:
        return ROOT_LAYER
    if package not in LAYERS:
        pytest.fail(
            f"{package} is in no layer: add it to LAYERS in tests/test_architecture.py "
            "and to docs/architecture.md"
        )
    return LAYERS[package]


def _imported(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """The modules that one AST node imports, relative imports resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = module.split(".") if is_package else module.split(".")[:-1]
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join([*parts, node.module] if node.module else parts)
        # `from demur.router import combine` imports the module demur.router.combine.
        return [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
            for alias in node.names
        ]
    if (  # importlib.import_module("demur.x"): an import all the same
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [node.args[0].value]
    return []


@functools.cache
def import_edges(repo: Path = REPO) -> tuple[Edge, ...]:
    """Every import of a `demur` module by a module under `demur/`, wherever it appears."""
    files = sorted((repo / ROOT).rglob("*.py"))
    modules = {module_name(path, repo) for path in files}
    edges = set()
    for path in files:
        module = module_name(path, repo)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for target in _imported(node, module, path.name == "__init__.py", modules):
                if target == ROOT or target.startswith(ROOT + "."):
                    rel = path.relative_to(repo).as_posix()
                    edges.add(Edge(rel, node.lineno, module, target))
    return tuple(sorted(edges))


def rule_broken(edge: Edge) -> str | None:
    """Why `edge` breaks the layering, or None when it does not."""
    source, target = package_of(edge.source), package_of(edge.target)
    if edge.source in EXEMPT or source == target:
        return None
    low, high = layer_of(source), layer_of(target)
    imports = f"{edge.where()} imports {target} (L{high}) from {source} (L{low})"
    if target == ROOT:
        return (
            f"{edge.where()} imports the package root {ROOT} from {source}: the root re-exports "
            f"everything, so import from the module that defines the name ({GUIDE})"
        )
    if low < high:
        return (
            f"{imports}: lower layers must not import higher ones; move the shared code down "
            f"({GUIDE})"
        )
    if low == high and (source, target) not in ALLOWED_SAME_LAYER:
        return (
            f"{imports}: packages in one layer must not import each other unless the pair is "
            f"in ALLOWED_SAME_LAYER with a reason; move the shared code down ({GUIDE})"
        )
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_package_has_a_layer():
    modules = {module_name(path, REPO) for path in (REPO / ROOT).rglob("*.py")}
    for package in sorted({package_of(module) for module in modules - EXEMPT}):
        layer_of(package)


def test_layering():
    broken = [
        message
        for edge in import_edges()
        if (edge.source, edge.target) not in KNOWN_VIOLATIONS and (message := rule_broken(edge))
    ]
    assert not broken, "import edges that break the layering:\n" + "\n".join(broken)


def test_known_violations_still_occur():
    current = {(e.source, e.target) for e in import_edges() if rule_broken(e)}
    gone = sorted(KNOWN_VIOLATIONS - current)
    assert not gone, (
        "these KNOWN_VIOLATIONS no longer occur; remove them from tests/test_architecture.py:\n"
        + "\n".join(f"{source} -> {target}" for source, target in gone)
    )


def test_no_package_cycles():
    # Known violations are left out: each cycle they close is already listed above.
    graph: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for edge in import_edges():
        source, target = package_of(edge.source), package_of(edge.target)
        if ROOT in (source, target) or source == target or edge.source in EXEMPT:
            continue
        if (edge.source, edge.target) not in KNOWN_VIOLATIONS:
            graph[source].add(target)
            where.setdefault((source, target), edge.where())
    lines = []
    for component in cycles(graph):
        lines.append("cycle: " + ", ".join(component))
        lines += [
            f"  {where[s, t]}: {s} -> {t}"
            for s in component
            for t in sorted(graph[s] & set(component))
        ]
    assert not lines, f"import cycles between packages ({GUIDE}):\n" + "\n".join(lines)


def test_import_edges_sees_every_kind_of_import(tmp_path):
    files = {
        "demur/__init__.py": "",
        "demur/types.py": "",
        "demur/router/__init__.py": "from . import combine\n",
        "demur/router/combine.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from ..types import Score\n"
            "def load():\n"
            "    import demur.cli\n"
            "    importlib.import_module('demur.adapters.catalog')\n"
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = {(e.where(), e.target) for e in import_edges(tmp_path)}
    assert found == {
        ("demur/router/__init__.py:1", "demur.router.combine"),
        ("demur/router/combine.py:3", "demur.types"),
        ("demur/router/combine.py:5", "demur.cli"),
        ("demur/router/combine.py:6", "demur.adapters.catalog"),
    }
    assert cycles({"a": {"b"}, "b": {"c", "a"}, "c": set()}) == [["a", "b"]]
