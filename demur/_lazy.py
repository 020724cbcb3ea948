"""Lazy exports for package `__init__` modules: a name is imported on first access.

__getattr__, __dir__ = lazy_exports(__name__, globals(), {"ChromaStore": "demur.retrieval.chroma"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], names: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module `__getattr__` that imports `names[name]` on first use (and keeps the value in
    `namespace`, so the next access is a plain lookup), and the matching `__dir__`."""

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
