"""The tree drawn in `demur.errors`' docstring is the real exception hierarchy.

Every `DemurError` subclass is drawn exactly once, under its first parent, with its other parents
(demur's or the builtins') as `(also X, Y)`; and every one is defined in `demur.errors`, which
subpackages may only re-export.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

from demur import errors
from demur.errors import DemurError

PACKAGE = Path(errors.__file__).resolve().parent
# The modules that re-export an error; importing them makes sure no class hides in one. Those
# that need an optional extra are skipped when it is missing (the ast check still covers them).
REEXPORTERS = (
    "demur",
    "demur.queue.errors",
    "demur.calibration.metrics",
    "demur.calibration.conformal",
    "demur.adapters.models.catalog",
    "demur.adapters.embeddings",
    "demur.adapters.embeddings._common",
    "demur.integrations.langchain.errors",
    "demur.integrations.langchain.middleware",
    "demur.integrations.llamaindex.query_engine",
)
LINE = re.compile(
    r"(?P<indent>(?:│   |    )*)(?:├── |└── )(?P<name>\w+)"
    r"(?: \(also (?P<also>\w+(?:, \w+)*)\))?(?:\s|$)"
)


def drawing() -> dict[str, tuple[str, ...]]:
    """Each drawn class's name -> its parents' names: the one it hangs under, then the 'also's."""
    assert errors.__doc__ is not None
    lines = errors.__doc__.splitlines()
    roots = [i for i, line in enumerate(lines) if line.split()[:1] == ["DemurError"]]
    assert len(roots) == 1, "the drawing starts with one line that names DemurError"
    tree: dict[str, tuple[str, ...]] = {"DemurError": ("Exception",)}
    path = ["DemurError"]
    for line in lines[roots[0] + 1 :]:
        if not line.strip():
            break
        match = LINE.match(line)
        assert match is not None, f"cannot read this line of the drawing: {line!r}"
        depth = len(match["indent"]) // 4 + 1
        assert depth <= len(path), f"{line!r} hangs under no class"
        del path[depth:]
        name = match["name"]
        assert name not in tree, f"{name} is drawn twice"
        also = tuple(match["also"].split(", ")) if match["also"] else ()
        tree[name] = (path[-1], *also)
        path.append(name)
    return tree


def subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


def demur_errors() -> set[type]:
    """Every DemurError subclass the package defines (not those a test defines)."""
    for module in REEXPORTERS:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
    return {cls for cls in subclasses(DemurError) if cls.__module__.split(".")[0] == "demur"}


def test_the_drawing_names_exactly_the_error_classes() -> None:
    drawn = set(drawing())
    real = {cls.__name__ for cls in demur_errors()} | {"DemurError"}
    assert not real - drawn, f"draw these in demur/errors.py's docstring: {sorted(real - drawn)}"
    assert not drawn - real, f"the drawing names classes that do not exist: {sorted(drawn - real)}"


def test_each_class_has_the_parents_drawn() -> None:
    tree = drawing()
    for cls in [DemurError, *demur_errors()]:
        bases = tuple(base.__name__ for base in cls.__bases__)
        drawn = tree.get(cls.__name__, ("nothing: it is not drawn",))
        assert bases == drawn, (
            f"{cls.__name__} derives from {', '.join(bases)}, but the drawing shows "
            f"{', '.join(drawn)}"
        )


def test_every_error_class_is_defined_in_demur_errors() -> None:
    elsewhere = sorted(
        f"{cls.__module__}.{cls.__name__}"
        for cls in demur_errors()
        if cls.__module__ != errors.__name__
    )
    assert not elsewhere, f"define these in demur/errors.py and re-export them: {elsewhere}"


def test_no_module_defines_an_error_class_outside_demur_errors() -> None:
    """The same rule on the source, so modules whose extra is missing are checked too."""
    names = set(drawing())
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == Path(errors.__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {
                base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                for base in node.bases
            }
            if bases & names:
                found.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    assert not found, f"define these in demur/errors.py and re-export them: {found}"
