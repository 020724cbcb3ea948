"""Building and updating pydantic models from values already validated, at hot-path cost.

`BaseModel.model_construct` resolves every missing field's default on each call (a deep copy
check per field) and `model_copy(update=...)` goes through `copy.copy`: fine once, but a route
builds and updates several Steps, Branches, Candidates and Verdicts. These two do the same
work from a table of defaults made once per class. Use them only with values that are already
valid: nothing is checked.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

M = TypeVar("M", bound=BaseModel)

# Per class: the plain defaults, and the fields whose default comes from a factory.
_DEFAULTS: dict[type[BaseModel], tuple[dict[str, Any], tuple[tuple[str, Any], ...]]] = {}


def _defaults(cls: type[BaseModel]) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
    plain: dict[str, Any] = {}
    factories: list[tuple[str, Any]] = []
    for name, field in cls.model_fields.items():
        if field.default_factory is not None:
            factories.append((name, field.default_factory))
        elif field.default is not PydanticUndefined:
            plain[name] = field.default
    table = (plain, tuple(factories))
    _DEFAULTS[cls] = table
    return table


def construct(cls: type[M], /, **values: Any) -> M:
    """`cls.model_construct(**values)`: missing fields take their defaults; nothing is validated."""
    plain, factories = _DEFAULTS.get(cls) or _defaults(cls)
    fields = plain.copy()
    for name, factory in factories:
        if name not in values:
            fields[name] = factory()
    fields.update(values)
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", fields)
    object.__setattr__(model, "__pydantic_fields_set__", set(values))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def replace(model: M, /, **changes: Any) -> M:
    """`model.model_copy(update=changes)` for a model without extra fields or private state."""
    copied = type(model).__new__(type(model))
    fields = model.__dict__.copy()
    fields.update(changes)
    object.__setattr__(copied, "__dict__", fields)
    object.__setattr__(
        copied, "__pydantic_fields_set__", model.__pydantic_fields_set__ | changes.keys()
    )
    object.__setattr__(copied, "__pydantic_extra__", None)
    object.__setattr__(copied, "__pydantic_private__", None)
    return copied


__all__ = ["construct", "replace"]
