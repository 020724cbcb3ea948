"""Labelled rows for the pre-generation predictor: one question, and how each model did on it.

    RoutingRow("Who wrote Emma?", context=("Emma is a novel by Jane Austen.",),
               outcomes={"weak": Outcome(correct=False, seconds=1.2),
                         "strong": Outcome(correct=True, seconds=3.4)})

A model's answer succeeds when it is correct and was not refused by the post-generation check
(`accepted` is None when that was not recorded, e.g. in an eval run that accepts everything).
A row may lack some models: each model is fitted on the rows that have it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from demur.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class Outcome:
    """How one model's answer to one question went."""

    correct: bool
    accepted: bool | None = None
    seconds: float | None = None

    @property
    def success(self) -> bool:
        """Correct, and not refused by the check (an unrecorded check counts as passed)."""
        return self.correct and self.accepted is not False


@dataclass(frozen=True)
class RoutingRow:
    """A question (with its passages, if any) and each model's outcome on it."""

    question: str
    context: tuple[str, ...] = ()
    outcomes: Mapping[str, Outcome] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise ConfigError(
                f"RoutingRow(question={self.question!r}): question must be non-empty text"
            )
        if isinstance(self.context, str):
            raise ConfigError(
                "RoutingRow(context=...) takes a tuple of passages, not one string: "
                "wrap it as (passage,)"
            )


def row_models(rows: Sequence[RoutingRow]) -> list[str]:
    """Every model some row has an outcome for, in order of first appearance."""
    return list(dict.fromkeys(model for row in rows for model in row.outcomes))


def success_labels(rows: Sequence[RoutingRow], model: str) -> npt.NDArray[np.float64]:
    """1.0 where `model` succeeded, 0.0 where it failed, NaN where the row lacks it."""
    import numpy as np

    return np.array(
        [float(row.outcomes[model].success) if model in row.outcomes else math.nan for row in rows]
    )


def mean_seconds(rows: Sequence[RoutingRow], model: str) -> float | None:
    """The model's mean recorded seconds per answer (None when none were recorded)."""
    seconds = [
        row.outcomes[model].seconds
        for row in rows
        if model in row.outcomes and row.outcomes[model].seconds is not None
    ]
    return sum(s for s in seconds if s is not None) / len(seconds) if seconds else None


def check_rows(rows: Sequence[RoutingRow], who: str) -> None:
    """DataError unless there are rows and each has at least one model's outcome."""
    if not rows:
        raise DataError(
            f"{who} got no rows; load labelled rows first (demur.evaluation.pregen_rows)"
        )
    bare = [i for i, row in enumerate(rows) if not row.outcomes]
    if bare:
        raise DataError(
            f"{who}: {len(bare)} row(s) (first: row {bare[0]}) have no model outcome; "
            "give each row at least one model's correct/accepted result"
        )


def fingerprint(rows: Sequence[RoutingRow]) -> str:
    """sha256 over the rows in order: question, passages and each model's outcome."""
    digest = hashlib.sha256()
    for row in rows:
        outcomes = {
            model: [o.correct, o.accepted, o.seconds] for model, o in sorted(row.outcomes.items())
        }
        line = json.dumps([row.question, list(row.context), outcomes], separators=(",", ":"))
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


__all__ = [
    "Outcome",
    "RoutingRow",
    "check_rows",
    "fingerprint",
    "mean_seconds",
    "row_models",
    "success_labels",
]
