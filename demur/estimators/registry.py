"""Estimators by name, for configs and the command line: `estimators: [mean_logprob, ...]`.

Entries point at classes by import path, so naming an estimator costs no import until it is
built. Options given in a config become keyword arguments of the class.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
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


def parse_estimators(spec: str) -> list[Estimator]:
    """Estimators from a spec such as 'mean_logprob,agreement:similarity=rougeL:samples=5':
    comma-separated names, each with optional `:key=value` options (true/false and numbers
    are converted)."""
    estimators = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, *pairs = item.split(":")
        options: dict[str, Any] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ConfigError(f"estimator option '{pair}' in '{item}' needs key=value")
            options[key] = _option_value(value)
        estimators.append(build_estimator(name, options))
    if not estimators:
        raise ConfigError(f"no estimator named in {spec!r}; name at least one, e.g. mean_logprob")
    return estimators
