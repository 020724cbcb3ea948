"""An estimator as data: its registry kind and every constructor option, and back again.

    spec = estimator_spec(NumSets(similarity="jaccard", samples=19))
    # EstimatorSpec(name='num_sets', kind='num_sets',
    #               options={'similarity': 'jaccard', 'samples': 19, 'embedder': None,
    #                        'threshold': 0.5})
    build_from_spec(spec)  # NumSets(similarity='jaccard', samples=19)

A saved ensemble keeps its members this way, and an eval run can record how its estimators
were built, so that what is fitted on their scores is rebuilt with the same options. Options
are read back from the estimator's attributes of the same names. An embedder is written as the
name `demur.embedders` knows it by ("minilm-l6"), and a model as its name (a router model of
that name is asked); any other option that is not a JSON value cannot be written, and the
error says what to do instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from demur.errors import ConfigError
from demur.estimators.registry import ESTIMATORS, build_estimator
from demur.protocols import Embedder, Estimator, Model

# Estimators that ask a model keep `model`/`judge` and `style` on their ModelAsker.
_ASKER_OPTIONS = {"model": "model", "judge": "model", "style": "style"}


class EstimatorSpec(BaseModel):
    """How to rebuild one estimator: its name, its registry kind (None when it has none) and
    every constructor option as a JSON value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


def registry_kind(estimator: Estimator) -> str | None:
    """The registry name whose class `estimator` is an instance of (exactly), or None."""
    path = f"{type(estimator).__module__}:{type(estimator).__qualname__}"
    return next((kind for kind, target in ESTIMATORS.items() if target == path), None)


def _embedder_name(owner: str, embedder: Embedder) -> str:
    """The name an embedder is rebuilt from: one `demur.embedders` resolves (a built-in, a
    plugin's, or one registered with `register_embedder`)."""
    from demur.embedders import embedder_names

    name = getattr(embedder, "name", None)
    known = embedder_names()
    if isinstance(name, str) and name in known:
        return name
    raise ConfigError(
        f"cannot save estimator {owner}: its embedder {name or type(embedder).__name__!r} has "
        f"no name demur can rebuild it from (known: {', '.join(known) or 'none'}). Build the "
        "estimator with an embedder by name (embedder='minilm-l6'), or register yours first "
        "with demur.embedders.register_embedder(name, factory) (in every process that loads it)"
    )


def _json_value(owner: str, option: str, value: Any) -> Any:
    """`value` as a JSON value: scalars as they are, embedders and models by name."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Embedder):
        return _embedder_name(owner, value)
    if isinstance(value, Model):
        return value.name
    raise ConfigError(
        f"cannot save estimator {owner}: its option {option}={value!r} is not a JSON value, "
        "an embedder or a model; build the estimator with options a file can hold"
    )


def _read_option(estimator: Estimator, parameter: inspect.Parameter) -> Any:
    """The option's value on the estimator, or its ModelAsker, or `inspect.Parameter.empty`."""
    if hasattr(estimator, parameter.name):
        return getattr(estimator, parameter.name)
    asker = getattr(estimator, "asker", None)
    held = _ASKER_OPTIONS.get(parameter.name)
    if asker is not None and held is not None and hasattr(asker, held):
        return getattr(asker, held)
    return parameter.empty


def estimator_options(estimator: Estimator) -> dict[str, Any]:
    """Every constructor option of `estimator`, read back from its attributes, as JSON values.

    ConfigError when an option cannot be read back or written, naming the option and the fix.
    """
    options: dict[str, Any] = {}
    for parameter in inspect.signature(type(estimator)).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = _read_option(estimator, parameter)
        if value is parameter.empty:
            if parameter.default is parameter.empty:
                raise ConfigError(
                    f"cannot save estimator {estimator.name}: its required option "
                    f"{parameter.name!r} is not kept as an attribute of the same name, so it "
                    f"cannot be read back; keep it as self.{parameter.name} in "
                    f"{type(estimator).__name__}.__init__"
                )
            value = parameter.default
        options[parameter.name] = _json_value(estimator.name, parameter.name, value)
    return options


def estimator_spec(estimator: Estimator) -> EstimatorSpec:
    """How to rebuild `estimator`; ConfigError when a registered one has an option that
    cannot be written. An estimator of no registered class gets `kind=None` and no options."""
    kind = registry_kind(estimator)
    if kind is None:
        return EstimatorSpec(name=estimator.name)
    return EstimatorSpec(name=estimator.name, kind=kind, options=estimator_options(estimator))


def estimator_specs(estimators: list[Estimator]) -> dict[str, EstimatorSpec | None]:
    """{name: spec}, None for an estimator that cannot be written: what an eval run records."""
    specs: dict[str, EstimatorSpec | None] = {}
    for estimator in estimators:
        try:
            specs[estimator.name] = estimator_spec(estimator)
        except ConfigError:
            specs[estimator.name] = None
    return specs


def build_from_spec(spec: EstimatorSpec | Mapping[str, Any]) -> Estimator:
    """The estimator a spec describes, under the spec's name (as `name=` in a spec sets it);
    ConfigError when it has no kind or cannot be built."""
    if not isinstance(spec, EstimatorSpec):
        spec = EstimatorSpec.model_validate(spec)
    if spec.kind is None:
        raise ConfigError(
            f"estimator {spec.name!r} is not of a registered class, so it cannot be rebuilt "
            "from its spec; pass the estimator object itself"
        )
    estimator = build_estimator(spec.kind, spec.options)
    if estimator.name != spec.name:
        estimator.name = spec.name
    return estimator


__all__ = [
    "EstimatorSpec",
    "build_from_spec",
    "estimator_options",
    "estimator_spec",
    "estimator_specs",
    "registry_kind",
]
