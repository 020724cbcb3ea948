"""Estimators by name, for configs and the command line: `estimators: [mean_logprob, ...]`.

Entries point at classes by import path, so naming an estimator costs no import until it is
built. Options given in a config become keyword arguments of the class.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from demur.errors import ConfigError, unknown_name
from demur.protocols import Estimator

ESTIMATORS: dict[str, str] = {
    "mean_logprob": "demur.estimators.logprob:MeanTokenLogprob",
    "min_prob": "demur.estimators.logprob:MinTokenProb",
    "gnll": "demur.estimators.logprob:GreedyNLL",
    "entropy": "demur.estimators.logprob:MeanTokenEntropy",
    "agreement": "demur.estimators.consistency:SampleAgreement",
    "num_sets": "demur.estimators.semantic:NumSets",
    "degree": "demur.estimators.semantic:Degree",
    "eccentricity": "demur.estimators.semantic:Eccentricity",
    "eigv": "demur.estimators.semantic:EigV",
    "semantic_entropy": "demur.estimators.semantic:SemanticEntropy",
    "sar": "demur.estimators.sar:RelevanceWeightedNLL",
    "verbal": "demur.estimators.verbal:VerbalizedConfidence",
    "ptrue": "demur.estimators.ptrue:PTrue",
    "judge": "demur.estimators.judge:LLMJudge",
    "retrieval": "demur.estimators.retrieval:RetrievalSimilarity",
    "groundedness": "demur.estimators.groundedness:Groundedness",
    "ensemble": "demur.estimators.ensemble:load_ensemble",
}


def estimator_class(name: str) -> type[Any]:
    """The class registered under `name`; ConfigError with a hint when there is none."""
    if name not in ESTIMATORS:
        raise unknown_name("estimator", name, ESTIMATORS)
    module, _, attribute = ESTIMATORS[name].partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), attribute)
    return cls


def build_estimator(name: str, options: Mapping[str, Any] | None = None) -> Estimator:
    """Construct the estimator `name` with keyword `options`, explaining bad options."""
    cls = estimator_class(name)
    options = dict(options or {})
    parameters = inspect.signature(cls).parameters
    accepted = [p for p in parameters if p != "self"]
    unknown = [key for key in options if key not in parameters]
    if unknown:
        raise ConfigError(
            f"estimator '{name}' has no option {', '.join(repr(k) for k in unknown)}; "
            f"it accepts: {', '.join(accepted) or 'no options'}"
        )
    try:
        estimator: Estimator = cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"estimator '{name}' rejected its options {options}: {exc}") from None
    return estimator


_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# Options that name a router model for an estimator to ask (a judge, a verbaliser).
_MODEL_OPTIONS = ("model", "judge")


@dataclass(frozen=True)
class SpecEntry:
    """One estimator of a spec: its registry `kind`, its options, and the name its scores take.

    `name` (the spec's `name=` option) lets one kind run twice with different options, e.g.
    `agreement:similarity=jaccard:name=agreement_j`; without it the estimator names itself.
    """

    kind: str
    options: Mapping[str, Any]
    name: str | None = None
    text: str = ""

    def accepts(self, option: str) -> bool:
        """Whether the estimator class takes `option` as a keyword argument."""
        return option in inspect.signature(estimator_class(self.kind)).parameters

    def asked_models(self) -> list[str]:
        """Router models the estimator asks by name: its `model` or `judge` option."""
        return [v for k, v in self.options.items() if k in _MODEL_OPTIONS and isinstance(v, str)]

    def build(self, defaults: Mapping[str, Any] | None = None) -> Estimator:
        """The estimator, with `defaults` filling the options it takes and the spec leaves out."""
        options = {
            key: value
            for key, value in (defaults or {}).items()
            if key not in self.options and self.accepts(key)
        }
        estimator = build_estimator(self.kind, {**options, **self.options})
        if self.name is not None:
            estimator.name = self.name
        return estimator


def _option_value(text: str) -> bool | int | float | str:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _is_option(part: str) -> bool:
    """`key=value` with no estimator name in front (an option continuing the last estimator)."""
    equals, colon = part.find("="), part.find(":")
    return equals >= 0 and (colon < 0 or equals < colon)


def _add_options(entry: SpecEntry, pairs: list[str], item: str) -> SpecEntry:
    options, name = dict(entry.options), entry.name
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"estimator option '{pair}' in '{item}' needs key=value")
        if key in options or (key == "name" and name is not None):
            raise ConfigError(f"estimator option '{key}' is given twice in '{item}'; keep one")
        if key == "name":
            name = value.strip()
            if not _NAME.fullmatch(name):
                raise ConfigError(
                    f"estimator name {name!r} in '{item}' must be letters, digits, '_', '-' "
                    "or '.', e.g. name=agreement_jaccard"
                )
        else:
            options[key] = _option_value(value.strip())
    return SpecEntry(entry.kind, options, name, item)


def parse_spec_entries(spec: str) -> list[SpecEntry]:
    """The estimators a spec names, checked but not built.

    `spec` is comma-separated estimators, each a registry name with `:key=value` options
    (true/false and numbers are converted): 'mean_logprob,agreement:similarity=rougeL:samples=5'.
    An option may also follow after a comma ('agreement:similarity=jaccard,name=agreement_j').
    `name=` sets the name the estimator's scores go under.
    """
    entries: list[SpecEntry] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if _is_option(part):
            if not entries:
                raise ConfigError(
                    f"option '{part}' in {spec!r} comes before any estimator; "
                    "write it after one, e.g. agreement:samples=5"
                )
            last = entries[-1]
            entries[-1] = _add_options(last, part.split(":"), f"{last.text},{part}")
            continue
        kind, *pairs = (p.strip() for p in part.split(":"))
        if kind not in ESTIMATORS:
            raise unknown_name("estimator", kind, ESTIMATORS)
        entries.append(_add_options(SpecEntry(kind, {}, None, part), pairs, part))
    if not entries:
        raise ConfigError(f"no estimator named in {spec!r}; name at least one, e.g. mean_logprob")
    return entries


def check_unique_names(estimators: Sequence[Estimator]) -> None:
    """ConfigError when two estimators would write their scores under the same name."""
    names = [e.name for e in estimators]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"two estimators are named {', '.join(repr(n) for n in repeated)}; scores are kept "
            "by name, so give each its own with name=..., e.g. "
            "agreement:similarity=rougeL:name=agreement_rougeL_10"
        )


def parse_estimators(spec: str, *, defaults: Mapping[str, Any] | None = None) -> list[Estimator]:
    """Estimators built from a spec (see `parse_spec_entries`), with unique names.

    `defaults` fill options an estimator takes and its spec leaves out: `{"samples": 20}`
    gives every sample-based estimator 20 samples unless its spec says `samples=`.
    """
    estimators = [item.build(defaults) for item in parse_spec_entries(spec)]
    check_unique_names(estimators)
    return estimators
