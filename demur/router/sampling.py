"""Extra sampled answers for black-box estimators: drawn once per attempt, shared by all.

With `adaptive=True` samples come in small batches, and drawing stops as soon as the answer
is settled: every sample so far agrees with the answer, or the share that agrees can no
longer land on the other side of the policy's threshold whatever the remaining samples say.
"""

from __future__ import annotations

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
) -> bool:
    """Whether drawing the rest of the `planned` samples could still change the outcome."""
    drawn = len(samples)
    if drawn >= planned:
        return True
    if drawn < min_samples:
        return False
    agree = agreement(answer, samples)
    if agree == drawn:
        return True
    if threshold is None:
        return False
    lowest, highest = agree / planned, (agree + planned - drawn) / planned
    return highest < threshold or lowest >= threshold
