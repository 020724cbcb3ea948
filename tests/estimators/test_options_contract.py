"""Every registered estimator refuses an obviously bad numeric option with a ConfigError.

Options are found from the constructors' signatures, so a numeric option added without a check
fails here. Each bad value must be refused with a ConfigError that names the option.
"""

from __future__ import annotations

import inspect
import math

import pytest

from demur.errors import ConfigError
from demur.estimators.registry import ESTIMATORS, estimator_class

# Arguments an estimator cannot be built without.
REQUIRED: dict[str, dict[str, object]] = {"judge": {"judge": "strong"}}
BAD: dict[str, tuple[object, ...]] = {
    "int": (-1, 2.5, True, "many"),
    "float": (-1.0, -math.inf, math.nan, "high"),
}


def numeric_kind(annotation: object) -> str | None:
    """'int' or 'float' for an option annotated so (optionally `| None`), else None."""
    kinds = {part.strip() for part in str(annotation).split("|")} - {"None"}
    return kinds.pop() if len(kinds) == 1 and kinds <= set(BAD) else None


def cases() -> list[tuple[str, str, object]]:
    found = []
    for name in ESTIMATORS:
        for option, parameter in inspect.signature(estimator_class(name)).parameters.items():
            kind = numeric_kind(parameter.annotation)
            if kind is not None:
                found.extend((name, option, value) for value in BAD[kind])
    return found


CASES = cases()


def test_the_numeric_options_are_found() -> None:
    options = {(name, option) for name, option, _ in CASES}
    assert {
        ("entropy", "top_k"),
        ("agreement", "samples"),
        ("num_sets", "threshold"),
        ("eccentricity", "eigenvalue_threshold"),
        ("semantic_entropy", "samples"),
        ("verbal", "max_tokens"),
        ("judge", "max_tokens"),
        ("retrieval", "k"),
    } <= options


@pytest.mark.parametrize(("name", "option", "value"), CASES)
def test_a_bad_numeric_option_is_a_config_error_naming_it(
    name: str, option: str, value: object
) -> None:
    options = {**REQUIRED.get(name, {}), option: value}
    with pytest.raises(ConfigError, match=option):
        estimator_class(name)(**options)
