"""Extra sampled answers for black-box estimators: drawn once per attempt, shared by all.

With `adaptive=True` samples come in small batches, and drawing stops as soon as the answer
is settled: every sample so far agrees with the answer, or the share that agrees can no
longer land on the other side of the policy's threshold whatever the remaining samples say.

How many agreeing samples are enough? By default `min_samples` (2). With `unanimity_level`,
the fewest k whose agreement would be unlikely (chance <= the level) were the model's
agreement rate only at the threshold (0.5 without one): p0 ** k <= level, so k grows with the
threshold. A couple of agreeing samples happen often enough to wrong answers too that stopping
on them ranks those answers among the surest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from demur.correctness import normalize_answer


class Sampling(BaseModel):
    """How the router draws the samples estimators ask for (see `Needs.samples`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    temperature: float = Field(default=1.0, gt=0.0, le=2.0)
    adaptive: bool = False
    batch_size: int = Field(default=2, ge=1, le=50)
    min_samples: int = Field(default=2, ge=1, le=100)
    unanimity_level: float | None = Field(default=None, gt=0.0, lt=1.0)


# More than any planned sample count: unanimity never ends the drawing.
_NEVER = 1_000_000


def agreeing_needed(min_samples: int, threshold: float | None, level: float | None) -> int:
    """How many samples, all agreeing with the answer, end the drawing (see the module doc)."""
    if level is None:
        return min_samples
    p0 = 0.5 if threshold is None else threshold
    if p0 <= 0.0:
        return min_samples
    if p0 >= 1.0:
        return _NEVER
    return max(min_samples, math.ceil(math.log(level) / math.log(p0) - 1e-9))


def agreement(answer: str, samples: Sequence[str]) -> int:
    """How many samples say the same as the answer, after normalisation."""
    target = normalize_answer(answer)
    return sum(1 for s in samples if normalize_answer(s) == target)


def settled(
    answer: str,
    samples: Sequence[str],
    planned: int,
    min_samples: int,
    threshold: float | None,
    unanimity_level: float | None = None,
) -> bool:
    """Whether drawing the rest of the `planned` samples could still change the outcome."""
    drawn = len(samples)
    if drawn >= planned:
        return True
    if drawn < min_samples:
        return False
    agree = agreement(answer, samples)
    if agree == drawn and drawn >= agreeing_needed(min_samples, threshold, unanimity_level):
        return True
    if threshold is None:
        return False
    lowest, highest = agree / planned, (agree + planned - drawn) / planned
    return highest < threshold or lowest >= threshold
